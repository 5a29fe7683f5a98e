package events

import "time"

// The agent classify protocol: an engine asks one agent of a callout what
// the callout says about traffic that matched one of its filters (the
// callout's classifyFn, where the notify results are its notifyFn's). It
// runs on core NATS request/reply, on a subject pinned to the callout and
// the agent id, so that NATS permissions let an agent hear its own
// questions only:
//
//	<prefix>.classify.<C>.<id>   ClassifyCall, requested by engines; agent <id> of
//	                             callout <C> answers with a ClassifyAnswer
//
// An agent says in its announcements whether it serves classify
// (Announcement.Classify); engines ask no other.

// AgentClassifyTimeout is how long an engine waits for one agent's answer
// to a ClassifyCall, and how long the Go SDK gives a callout's Classify.
// An agent that does not answer in time counts as a callout error for
// that filter, and the classify goes on.
const AgentClassifyTimeout = time.Second

// The verdicts an agent may answer (FWP_ACTION_CONTINUE, PERMIT, BLOCK).
const (
	VerdictContinue = "continue"
	VerdictPermit   = "permit"
	VerdictBlock    = "block"
)

// NoSuchFilter is the error an agent answers about a filter it does not
// hold (a live agent never saw filters added before it registered, R2):
// the engine then asks the callout's next agent.
const NoSuchFilter = "no such filter"

// MaxNoteLen bounds the note of a ClassifyAnswer, in bytes.
const MaxNoteLen = 256

// ClassifyCall asks an agent about traffic that matched filter FilterID
// (whose key is FilterKey): Fields are the traffic's condition field
// values, as the classify request gave them.
type ClassifyCall struct {
	FilterID  uint64            `json:"filterId"`
	FilterKey string            `json:"filterKey"`
	Fields    map[string]string `json:"fields"`
}

// ClassifyAnswer is an agent's answer to a ClassifyCall: a Verdict, with
// an optional Note of the callout's own (a counter it keeps, say), or an
// Error. AgentID, CalloutKey and FilterID must be those asked.
type ClassifyAnswer struct {
	AgentID    string `json:"agentId"`
	CalloutKey string `json:"calloutKey"`
	Instance   string `json:"instance"`
	FilterID   uint64 `json:"filterId"`
	Verdict    string `json:"verdict,omitempty"`
	Note       string `json:"note,omitempty"`
	Error      string `json:"error,omitempty"`
}

// Classify is the subject agent agentID of a callout answers classify
// calls on.
func (s Subjects) Classify(calloutKey, agentID string) string {
	return s.Prefix + ".classify." + calloutKey + "." + agentID
}

// AllClassify matches every agent's classify subject: what engines
// publish to.
func (s Subjects) AllClassify() string { return s.Prefix + ".classify.*.*" }
