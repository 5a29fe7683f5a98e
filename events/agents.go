package events

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// The agent protocol: how callout agents tell engines they exist and how
// they answer ADD notifications (R7). It runs on core NATS subjects beside
// the stream, never in it: registrations are liveness, not history.
//
//	<prefix>.agent.<calloutKey>.<agentId>  Announcement, published by an agent when it
//	                                       registers, every AnnounceInterval, and with
//	                                       Status "bye" when it closes
//	<prefix>.agent.probe                   published by an engine on start; every agent
//	                                       answers with an Announcement at once
//	<prefix>.result.<calloutKey>           NotifyResult, published by an agent after its
//	                                       handler returned for a live AddFilter

// AnnounceInterval is how often a live agent announces itself. An engine
// forgets an agent it has not heard from for AgentTTL: three missed
// announcements and a half, so a killed agent is gone well within 10 s.
const (
	AnnounceInterval = 2 * time.Second
	AgentTTL         = 3*AnnounceInterval + AnnounceInterval/2
)

// Announcement statuses.
const (
	AgentAlive = "alive"
	AgentBye   = "bye"
)

// Announcement says an agent serves a callout.
type Announcement struct {
	AgentID    string `json:"agentId"`
	CalloutKey string `json:"calloutKey"`
	Mode       string `json:"mode"`              // "live" or "replay"
	Durable    string `json:"durable,omitempty"` // durable consumer name, if any
	PostCommit bool   `json:"postCommit"`        // wants AddFilterPostCommit
	Status     string `json:"status"`            // AgentAlive or AgentBye
}

// NotifyResult is an agent's answer to one AddFilter: empty Error means it
// took the filter.
type NotifyResult struct {
	AgentID    string `json:"agentId"`
	CalloutKey string `json:"calloutKey"`
	FilterKey  string `json:"filterKey"`
	FilterID   uint64 `json:"filterId"`
	Error      string `json:"error,omitempty"`
}

// Agent returns the subject an agent announces itself on.
func (s Subjects) Agent(calloutKey, agentID string) string {
	return s.Prefix + ".agent." + calloutKey + "." + agentID
}

// AllAgents matches every announcement (and not the probe).
func (s Subjects) AllAgents() string { return s.Prefix + ".agent.*.*" }

// AgentProbe is where engines ask agents to announce themselves.
func (s Subjects) AgentProbe() string { return s.Prefix + ".agent.probe" }

// Result returns the subject agents of a callout publish NotifyResults on.
func (s Subjects) Result(calloutKey string) string { return s.Prefix + ".result." + calloutKey }

// AllResults matches every NotifyResult.
func (s Subjects) AllResults() string { return s.Prefix + ".result.*" }

// Transaction headers. A transaction is written as one atomic batch, but an
// agent reads only its own callout's subjects, so it may never see the
// batch's commit message. Each filter message of a transaction therefore
// says which transaction it belongs to and where it stands among that
// transaction's messages on the same callout's subjects: an agent holds
// parts until it has all n, then acts on them together.
const (
	HeaderTxID   = "Wfp-Tx-Id"
	HeaderTxPart = "Wfp-Tx-Part" // "i/n", 1-based, counted per callout
)

// TxPart formats a Wfp-Tx-Part value.
func TxPart(i, n int) string { return strconv.Itoa(i) + "/" + strconv.Itoa(n) }

// ParseTxPart parses a Wfp-Tx-Part value.
func ParseTxPart(v string) (i, n int, err error) {
	a, b, ok := strings.Cut(v, "/")
	if ok {
		i, err = strconv.Atoi(a)
		if err == nil {
			n, err = strconv.Atoi(b)
		}
	}
	if !ok || err != nil || i < 1 || n < i {
		return 0, 0, fmt.Errorf("bad %s %q", HeaderTxPart, v)
	}
	return i, n, nil
}
