package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/wfpnats/wfp/classify"
	"github.com/wfpnats/wfp/events"
)

// agentClassifier is the engine's default CalloutClassifier: it asks the
// callout's agents themselves, over request/reply on each agent's own
// subject (events' agent classify protocol), so the verdict is the
// callout's, made with the context its notify set up (R6).
//
// Which agent: one at a time, in the order of their agent ids, among
// those that announce they serve classify, each agent id once (its
// subject reaches every instance of the id; the SDK runs one). An agent
// that does not hold the filter (it answers events.NoSuchFilter: a live
// agent registered after the add, R2), or that nobody answers for (its
// connection is gone), passes the filter to the next. Any other answer
// stands: a verdict; an error; or no answer within wait, which is the
// callout failing for that filter, and package classify's rules apply (an
// inspection filter goes on, a terminating or unknown one blocks). So a
// classify waits for at most one silent agent per callout filter. When
// none of the agents serves classify, fallback answers.
type agentClassifier struct {
	e        *Engine
	wait     time.Duration
	fallback CalloutClassifier
}

func (c *agentClassifier) ClassifyCallout(ctx context.Context, agents []AgentInfo, f *events.Filter, in classify.Values) (CalloutAnswer, error) {
	var ids []string
	for _, a := range agents { // sorted by agent id
		if a.Classify && (len(ids) == 0 || ids[len(ids)-1] != a.AgentID) {
			ids = append(ids, a.AgentID)
		}
	}
	if len(ids) == 0 {
		return c.fallback.ClassifyCallout(ctx, agents, f, in)
	}
	call, err := json.Marshal(events.ClassifyCall{FilterID: f.ID, FilterKey: f.Key, Fields: in})
	if err != nil {
		return CalloutAnswer{}, err
	}
	var passed []string
	for _, id := range ids {
		a, pass, err := c.ask(ctx, agents, f, id, call)
		if pass == "" {
			return a, err
		}
		passed = append(passed, id+": "+pass)
	}
	return CalloutAnswer{}, fmt.Errorf("no agent of the callout could answer for filter %d (%s)", f.ID, strings.Join(passed, "; "))
}

// ask asks agent id about f. pass, when not empty, says why the agent
// passes the filter on to the next one.
func (c *agentClassifier) ask(ctx context.Context, agents []AgentInfo, f *events.Filter, id string, call []byte) (_ CalloutAnswer, pass string, _ error) {
	subject := c.e.subj.Classify(f.CalloutKey, id)
	wait, cancel := context.WithTimeout(ctx, c.wait)
	defer cancel()
	m, err := c.e.nc.RequestWithContext(wait, subject, call)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		// Its connection is gone, or it does not serve what it announced:
		// find out which, as an add waiting for it would.
		for _, a := range agents {
			if a.AgentID == id {
				c.e.checkAgent(keyOf(a.Announcement))
			}
		}
		return CalloutAnswer{}, "no responders", nil
	case err != nil && ctx.Err() != nil:
		return CalloutAnswer{}, "", ctx.Err() // the classify's own deadline: it stops
	case err != nil:
		return CalloutAnswer{}, "", fmt.Errorf("agent %s did not answer within %v", id, c.wait)
	}
	var a events.ClassifyAnswer
	if err := json.Unmarshal(m.Data, &a); err != nil {
		c.e.dropAgentMsg("malformed classify answer", subject)
		return CalloutAnswer{}, "", fmt.Errorf("agent %s: malformed classify answer", id)
	}
	// Only agent id can answer on this subject under the printed
	// permissions; the body must agree all the same, as announcements and
	// results must.
	if a.AgentID != id || a.CalloutKey != f.CalloutKey || a.FilterID != f.ID {
		c.e.dropAgentMsg("classify answer disagrees with its call", subject,
			"bodyAgentId", a.AgentID, "bodyCallout", a.CalloutKey, "bodyFilterId", a.FilterID)
		return CalloutAnswer{}, "", fmt.Errorf("agent %s: the answer names agent %q of callout %q about filter %d",
			id, a.AgentID, a.CalloutKey, a.FilterID)
	}
	switch {
	case a.Error == events.NoSuchFilter:
		return CalloutAnswer{}, events.NoSuchFilter, nil
	case a.Error != "":
		return CalloutAnswer{}, "", fmt.Errorf("agent %s: %s", id, agentWords(a.Error))
	}
	v, ok := agentVerdicts[a.Verdict]
	if !ok {
		c.e.dropAgentMsg("classify answer without a valid verdict", subject, "verdict", a.Verdict)
		return CalloutAnswer{}, "", fmt.Errorf("agent %s answered verdict %q, not %s, %s or %s",
			id, a.Verdict, events.VerdictContinue, events.VerdictPermit, events.VerdictBlock)
	}
	if err := checkText("note", a.Note, false, events.MaxNoteLen); err != nil {
		c.e.dropAgentMsg("classify answer with an invalid note", subject)
		return CalloutAnswer{}, "", fmt.Errorf("agent %s: %s", id, err.(*Error).Message)
	}
	return CalloutAnswer{Verdict: v, AgentID: id, Note: a.Note}, "", nil
}

var agentVerdicts = map[string]classify.Verdict{
	events.VerdictContinue: classify.Continue,
	events.VerdictPermit:   classify.Permit,
	events.VerdictBlock:    classify.Block,
}

// maxAgentWords bounds an agent's error text in a classify answer.
const maxAgentWords = 512

// agentWords makes an agent's error text fit to show: bounded, and quoted
// when it has characters a terminal would act on.
func agentWords(s string) string {
	if len(s) > maxAgentWords {
		s = s[:maxAgentWords] + "…"
	}
	if unprintable(s) != "" || strings.ContainsAny(s, "\r\n") {
		return strconv.Quote(s)
	}
	return s
}
