package events

import (
	"fmt"
	"strings"
)

// Default names: the stream that holds the log and the prefix of every
// subject. Both can be changed per deployment; every process of one
// deployment must agree on them.
const (
	DefaultStream = "WFP"
	DefaultPrefix = "wfp"
)

// NoCallout is the callout token in the subject of a filter whose action
// names no callout.
const NoCallout = "_"

// Subjects builds and parses the subjects of one stream prefix. The layout
// is <prefix>.filter.<calloutKey|_>.<filterKey> and
// <prefix>.callout.<calloutKey>: one subject per filter, under its callout,
// so an agent's consumer has a single filter subject that permissions can
// scope, and "last message per subject" is the current state.
type Subjects struct{ Prefix string }

// Filter returns the subject of filter f's events.
func (s Subjects) Filter(f *Filter) string {
	return s.Prefix + ".filter." + CalloutToken(f.CalloutKey) + "." + f.Key
}

// Callout returns the subject of callout key's events.
func (s Subjects) Callout(key string) string { return s.Prefix + ".callout." + key }

// CalloutFilters returns the subject that matches every filter naming
// callout key: what an agent for that callout consumes.
func (s Subjects) CalloutFilters(key string) string {
	return s.Prefix + ".filter." + CalloutToken(key) + ".*"
}

// Live filter events. The stream republishes every filter event it
// stores, as it stores it, from <prefix>.filter.<C>.<key> to
// <prefix>.live.filter.<C>.<key> (the stream's RePublish, with the
// original subject and stream sequence in headers): a live agent reads
// its callout's events there, on a core subscription that permissions can
// confine to its callout, without a consumer on the server. The live
// subjects are outside the stream.

// LiveFilters returns the live subject of every filter event naming
// callout key: what a live agent subscribes to.
func (s Subjects) LiveFilters(key string) string {
	return s.Prefix + ".live.filter." + CalloutToken(key) + ".*"
}

// LiveSource and LiveDestination are the stream's RePublish mapping.
func (s Subjects) LiveSource() string      { return s.Prefix + ".filter.>" }
func (s Subjects) LiveDestination() string { return s.Prefix + ".live.filter.>" }

// Stream returns the subjects the event-log stream captures:
// "<prefix>.filter.>", "<prefix>.callout.>" and "<prefix>.session.*". Not
// "<prefix>.>": the engine's API, the agent protocol and session heartbeats
// live under the same prefix, and a stream capturing them would store every
// request and answer it.
func (s Subjects) Stream() []string {
	return []string{s.Prefix + ".filter.>", s.Prefix + ".callout.>", s.AllSessions()}
}

// CalloutOfFilters is the inverse of CalloutFilters: the callout token
// (a key, or NoCallout) of a subject of that form.
func (s Subjects) CalloutOfFilters(subject string) (string, bool) {
	rest, ok := strings.CutPrefix(subject, s.Prefix+".filter.")
	if !ok {
		return "", false
	}
	tok, wild, ok := strings.Cut(rest, ".")
	if !ok || wild != "*" || tok == "" || strings.ContainsAny(tok, "*>") {
		return "", false
	}
	return tok, true
}

// AllFilters matches every filter subject.
func (s Subjects) AllFilters() string { return s.Prefix + ".filter.>" }

// FilterKeyAnyCallout matches filter key's subject whichever callout it names.
func (s Subjects) FilterKeyAnyCallout(key string) string { return s.Prefix + ".filter.*." + key }

// Gap returns the subject of gap fillers: empty messages an engine writes
// after an operator accepted the loss of the log's end, so that the
// stream's sequence, and with it filter ids, goes on past the lost
// sequences. Readers skip them; they carry no event.
func (s Subjects) Gap() string { return s.Prefix + ".callout._gap" }

// API returns the subject of a management API endpoint.
func (s Subjects) API(endpoint string) string { return s.Prefix + ".api." + endpoint }

// CalloutToken is the subject token for a callout key ("_" for none).
func CalloutToken(key string) string {
	if key == "" {
		return NoCallout
	}
	return key
}

// ValidPrefix checks that p can head our subjects: non-empty tokens with no
// wildcard characters or white space anywhere. NATS would take "a*b" as a
// literal token, but permissions and operators reading subjects would
// not, so it is refused too.
func ValidPrefix(p string) error {
	if p == "" {
		return fmt.Errorf("subject prefix is empty")
	}
	for _, tok := range strings.Split(p, ".") {
		if tok == "" || strings.ContainsAny(tok, "*> \t\r\n") {
			return fmt.Errorf("subject prefix %q: tokens must be non-empty with no wildcards or spaces", p)
		}
	}
	return nil
}

// ValidStreamName checks that name can name a JetStream stream: non-empty,
// no dots, wildcards, path separators or white space (the server puts it
// in API subjects and in a directory name).
func ValidStreamName(name string) error {
	if name == "" || strings.ContainsAny(name, " \t\r\n.*>/\\") {
		return fmt.Errorf("stream name %q: want non-empty, with no dots, wildcards, slashes or spaces", name)
	}
	return nil
}
