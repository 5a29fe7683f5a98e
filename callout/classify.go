package callout

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/nats-io/nats.go"

	"github.com/wfpnats/wfp/events"
)

// Fields are the values of the condition fields of the traffic being
// classified, by field name, as the classify request gave them (e.g.
// "IP_REMOTE_PORT": "22").
type Fields map[string]string

// Verdict is what a callout's Classify says about the traffic, as a
// classifyFn's action: Continue, Permit or Block, with an optional note
// of the callout's own. The zero Verdict is no answer: the engine takes
// it as the callout failing.
type Verdict struct{ action, note string }

// The verdicts. Continue lets evaluation go on (an inspection callout's
// answer; from a terminating callout, which must decide, it blocks);
// Permit and Block decide, as package classify describes.
var (
	Continue = Verdict{action: events.VerdictContinue}
	Permit   = Verdict{action: events.VerdictPermit}
	Block    = Verdict{action: events.VerdictBlock}
)

// WithNote returns v with a note the engine shows beside the verdict
// (engine classify's WHY column, ClassifyStep.Note): a counter the
// callout keeps, what it found. At most events.MaxNoteLen bytes, one
// line, printable; the engine refuses a verdict with another note.
func (v Verdict) WithNote(note string) Verdict {
	v.note = note
	return v
}

// Note is the note WithNote set.
func (v Verdict) Note() string { return v.note }

// String is the verdict's name: "continue", "permit", "block", or "none"
// for the zero Verdict.
func (v Verdict) String() string {
	if v.action == "" {
		return "none"
	}
	return v.action
}

// Classifier is a callout's classifyFn, beside the Handler (its
// notifyFn): asked by an engine about traffic that matched filter f, it
// says what the callout does with it. f is the filter as the agent holds
// it, with the Context its AddFilter left (R6); it is shared with
// Lookup and must not be changed: mutable state goes inside Context,
// with its own synchronisation.
//
// Classify is called from many goroutines at once, beside the Handler.
// ctx ends after events.AgentClassifyTimeout (the engine stops waiting
// then) or when the agent closes. An error, or a panic, is the callout
// failing: the engine then lets an inspection filter go on and a
// terminating or unknown one block (see package classify).
//
// An agent serves classify when it is registered WithClassifier, or when
// its Handler is a Classifier too. It is asked only about filters it
// holds; about any other it answers events.NoSuchFilter, and the engine
// asks the callout's next agent.
type Classifier interface {
	Classify(ctx context.Context, f *Filter, fields Fields) (Verdict, error)
}

// ClassifierFunc lets an ordinary function be a Classifier.
type ClassifierFunc func(ctx context.Context, f *Filter, fields Fields) (Verdict, error)

// Classify calls fn(ctx, f, fields).
func (fn ClassifierFunc) Classify(ctx context.Context, f *Filter, fields Fields) (Verdict, error) {
	return fn(ctx, f, fields)
}

// WithClassifier makes the agent serve classify with c (see Classifier);
// without it, the agent serves classify if its Handler is a Classifier.
// The agent says so in its announcements, and engines ask it.
func WithClassifier(c Classifier) Option {
	return func(o *options) error {
		if c == nil {
			return fmt.Errorf("%w: nil classifier", ErrInvalidOption)
		}
		o.classifier = c
		return nil
	}
}

// maxClassifying bounds the classify calls an agent answers at once; more
// wait in the subscription.
const maxClassifying = 64

// serveClassify subscribes to the agent's own classify subject. The
// subscription is the announcer's to end: it goes with the agent id, at
// the bye or a failed registration.
func (a *Agent) serveClassify() error {
	if a.classifier == nil {
		return nil
	}
	a.classifying = make(chan struct{}, maxClassifying)
	subject := a.subj.Classify(a.key, a.id)
	sub, err := a.nc.Subscribe(subject, a.onClassify)
	if err != nil {
		return fmt.Errorf("callout: subscribe to %s: %w", subject, err)
	}
	a.ann.hold(sub)
	return nil
}

// onClassify answers one classify call, off the subscription's goroutine.
func (a *Agent) onClassify(m *nats.Msg) {
	if m.Reply == "" {
		return // nobody to answer
	}
	a.classifying <- struct{}{}
	go func() {
		defer func() { <-a.classifying }()
		data, err := json.Marshal(a.classify(m.Data))
		if err == nil {
			err = m.Respond(data)
		}
		if err != nil {
			a.log.Warn("classify answer not sent", "err", err)
		}
	}()
}

// classify answers one call: the held filter's verdict, or why not.
func (a *Agent) classify(data []byte) events.ClassifyAnswer {
	ans := events.ClassifyAnswer{AgentID: a.id, CalloutKey: a.key, Instance: a.instance}
	var call events.ClassifyCall
	if err := json.Unmarshal(data, &call); err != nil {
		a.n.classifyErrors.Add(1)
		ans.Error = "malformed classify call: " + err.Error()
		return ans
	}
	ans.FilterID = call.FilterID
	f, ok := a.filters.get(call.FilterID)
	if !ok || f.Key != call.FilterKey {
		a.n.classifyErrors.Add(1)
		ans.Error = events.NoSuchFilter
		return ans
	}
	ctx, cancel := context.WithTimeout(a.ctx, events.AgentClassifyTimeout)
	defer cancel()
	v, err := a.callClassify(ctx, f, Fields(call.Fields))
	if err == nil && v.action == "" {
		err = fmt.Errorf("callout: classifier returned no verdict")
	}
	if err != nil {
		a.n.classifyErrors.Add(1)
		a.log.Debug("Classify failed", "filterKey", f.Key, "filterId", f.ID, "err", err)
		ans.Error = err.Error()
		return ans
	}
	a.n.classifies.Add(1)
	ans.Verdict, ans.Note = v.action, v.note
	return ans
}

// callClassify runs the classifier; a panic becomes an error, as in the
// handler.
func (a *Agent) callClassify(ctx context.Context, f *Filter, fields Fields) (v Verdict, err error) {
	defer func() {
		if r := recover(); r != nil {
			v, err = Verdict{}, fmt.Errorf("%w: Classify: %v", ErrHandlerPanic, r)
		}
	}()
	return a.classifier.Classify(ctx, f, fields)
}
