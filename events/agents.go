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
// Every subject an agent publishes on names its callout and agent id, so
// NATS permissions can pin an agent to its own, and engines drop any
// message whose body disagrees with its subject.
//
//	<prefix>.agent.<C>.<id>                  Announcement, published by an agent when it
//	                                         registers, every AnnounceInterval, and with
//	                                         Status "bye" when it closes
//	<prefix>.agent.<C>.<id>.ping             request answered by the instance that holds
//	                                         agent id <id> (an Announcement): a starting
//	                                         instance asks it to find out whether the id is taken
//	<prefix>.agent.<C>.<id>.ping.<instance>  request answered by that one instance: engines
//	                                         ask it whether it still runs ("no responders":
//	                                         it is gone)
//	<prefix>.agent.probe                     published by an engine on start; every agent
//	                                         answers with an Announcement at once
//	<prefix>.result.<C>.<id>                 NotifyResult, published by an agent after its
//	                                         handler returned for a live AddFilter
//	<prefix>.inbox.<C>.<id>                  the agent's inbox prefix (replies to its
//	                                         JetStream API calls and its deliveries)
//	<prefix>.classify.<C>.<id>               ClassifyCall, requested by engines and answered
//	                                         by the agent (classify.go)

// AnnounceInterval is how often a live agent announces itself. An engine
// forgets an agent it has not heard from for AgentTTL: three missed
// announcements and a half, so a killed agent is gone well within 10 s
// even when nobody asks it (an add that waits for it asks, see
// AgentGrace).
const (
	AnnounceInterval = 2 * time.Second
	AgentTTL         = 3*AnnounceInterval + AnnounceInterval/2
)

// AgentGrace is how long an engine waits for an agent's answer to an add
// before it asks the agent's instance directly whether it still runs:
// an instance that is gone ("no responders") is dropped and not waited
// for, one that answers gets the add's whole notify timeout.
const AgentGrace = 250 * time.Millisecond

// Announcement statuses.
const (
	AgentAlive = "alive"
	AgentBye   = "bye"
	// AgentStarting is an instance that is still making sure no other
	// instance holds its agent id: the status of the announcement it sends
	// as a ping, and of its answers to pings until it has registered.
	AgentStarting = "starting"
)

// Announcement says an agent serves a callout.
type Announcement struct {
	AgentID    string `json:"agentId"`
	CalloutKey string `json:"calloutKey"`
	// Instance is fresh at each registration: engines track instances,
	// so a second process with the same agent id (or a restarted one)
	// never stands for, or unregisters, another.
	Instance   string `json:"instance"`
	Mode       string `json:"mode"`              // "live" or "replay"
	Durable    string `json:"durable,omitempty"` // durable consumer name, if any
	PostCommit bool   `json:"postCommit"`        // wants AddFilterPostCommit
	Classify   bool   `json:"classify"`          // answers ClassifyCalls (classify.go)
	Status     string `json:"status"`            // AgentAlive, AgentBye or AgentStarting
}

// NotifyResult is an agent's answer to one AddFilter: empty Error means it
// took the filter.
type NotifyResult struct {
	AgentID    string `json:"agentId"`
	CalloutKey string `json:"calloutKey"`
	Instance   string `json:"instance"`
	FilterKey  string `json:"filterKey"`
	FilterID   uint64 `json:"filterId"`
	Error      string `json:"error,omitempty"`
}

// Agent returns the subject an agent announces itself on.
func (s Subjects) Agent(calloutKey, agentID string) string {
	return s.Prefix + ".agent." + calloutKey + "." + agentID
}

// AllAgents matches every announcement (and not the probe or pings).
func (s Subjects) AllAgents() string { return s.Prefix + ".agent.*.*" }

// AgentProbe is where engines ask agents to announce themselves.
func (s Subjects) AgentProbe() string { return s.Prefix + ".agent.probe" }

// AgentPing is answered by whichever instance holds agent id agentID.
func (s Subjects) AgentPing(calloutKey, agentID string) string {
	return s.Agent(calloutKey, agentID) + ".ping"
}

// AgentInstancePing is answered by one instance of an agent only.
func (s Subjects) AgentInstancePing(calloutKey, agentID, instance string) string {
	return s.AgentPing(calloutKey, agentID) + "." + instance
}

// AllAgentInstancePings matches every instance ping: what engines send.
func (s Subjects) AllAgentInstancePings() string { return s.Prefix + ".agent.*.*.ping.*" }

// Result returns the subject agent agentID of a callout publishes
// NotifyResults on.
func (s Subjects) Result(calloutKey, agentID string) string {
	return s.Prefix + ".result." + calloutKey + "." + agentID
}

// AllResults matches every NotifyResult.
func (s Subjects) AllResults() string { return s.Prefix + ".result.*.*" }

// AgentInbox is the inbox prefix of agent agentID of a callout
// (nats.CustomInboxPrefix): replies to it and its consumer's deliveries
// arrive under it, so permissions can give each agent its own.
func (s Subjects) AgentInbox(calloutKey, agentID string) string {
	return s.Prefix + ".inbox." + calloutKey + "." + agentID
}

// ParseAgent returns the callout key and agent id an announcement
// subject names; ok is false for any other subject.
func (s Subjects) ParseAgent(subject string) (calloutKey, agentID string, ok bool) {
	return s.parsePair(subject, ".agent.")
}

// ParseResult returns the callout key and agent id a result subject
// names; ok is false for any other subject.
func (s Subjects) ParseResult(subject string) (calloutKey, agentID string, ok bool) {
	return s.parsePair(subject, ".result.")
}

func (s Subjects) parsePair(subject, kind string) (string, string, bool) {
	rest, ok := strings.CutPrefix(subject, s.Prefix+kind)
	if !ok {
		return "", "", false
	}
	c, id, ok := strings.Cut(rest, ".")
	if !ok || c == "" || id == "" || strings.Contains(id, ".") {
		return "", "", false
	}
	return c, id, true
}

// AgentConsumerPrefix heads the name of the consumer an agent reads
// through (AgentConsumer); a durable agent's consumer has the name it was
// given instead.
const AgentConsumerPrefix = "agent_"

// AgentConsumer is the name of the consumer agent agentID of a callout
// reads through, when it is not durable: fixed, so that permissions can
// name it, and taken over by the next instance of the same agent id.
func AgentConsumer(calloutKey, agentID string) string {
	return AgentConsumerPrefix + calloutKey + "_" + agentID
}

// MaxNameLen is the longest agent id, instance or durable name.
const MaxNameLen = 64

// ValidName checks that an agent id, instance or durable consumer name
// can go anywhere it is used: a subject token, a consumer name, a
// permission, a file name. 1 to MaxNameLen ASCII letters, digits, '-'
// and '_'.
func ValidName(what, name string) error {
	if name == "" || len(name) > MaxNameLen {
		return fmt.Errorf("%s %q: want 1 to %d characters", what, name, MaxNameLen)
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return fmt.Errorf("%s %q: want only letters, digits, '-' and '_'", what, name)
		}
	}
	return nil
}

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
