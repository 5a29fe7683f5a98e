package engine

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/micro"

	"github.com/wfpnats/wfp/classify"
	"github.com/wfpnats/wfp/events"
)

// EndpointClassify answers what a layer's filters do with one input.
const EndpointClassify = "classify"

// DefaultClassifyTimeout bounds one classify, callouts included.
const DefaultClassifyTimeout = 5 * time.Second

// ClassifyRequest is one input to classify: a layer and the values of the
// condition fields the traffic has (names with or without FWPM_CONDITION_,
// values written as in conditions, one value each).
type ClassifyRequest struct {
	Layer  string            `json:"layer"`
	Fields map[string]string `json:"fields"`
}

// ClassifyResponse is the decision and every matched filter in WFP's
// evaluation order, as of log position Seq.
type ClassifyResponse struct {
	Seq      uint64           `json:"seq"`
	Layer    string           `json:"layer"` // canonical name
	Decision classify.Verdict `json:"decision"`
	// DecidedBy is the id of the filter whose verdict stands; 0 when no
	// filter decided and the traffic is permitted by default.
	DecidedBy uint64         `json:"decidedBy,omitempty"`
	Reason    string         `json:"reason"`
	Filters   []ClassifyStep `json:"filters"`
}

// ClassifyStep is one matched filter: the filter, its sublayer, whether it
// was evaluated, what it (or its callout) said and why.
type ClassifyStep struct {
	Filter    *events.Filter   `json:"filter"`
	SubLayer  string           `json:"subLayer"`
	Evaluated bool             `json:"evaluated"`
	Verdict   classify.Verdict `json:"verdict"`
	Reason    string           `json:"reason"`
	Error     string           `json:"error,omitempty"` // the callout's error, if it returned one
	// AgentID is the agent that answered for the filter's callout; Note,
	// what it said beside its verdict (or why the engine answered itself).
	AgentID string `json:"agentId,omitempty"`
	Note    string `json:"note,omitempty"`
}

// CalloutClassifier asks a registered callout about traffic that matched
// one of its filters: the classify half of a callout (its classifyFn),
// where notify is the other. agents are the callout's live agents as this
// engine knows them, never empty: a callout without agents is unregistered
// and never asked (R8). Config.Classifier plugs one in; the default asks
// the agents themselves (agentclassify.go).
type CalloutClassifier interface {
	ClassifyCallout(ctx context.Context, agents []AgentInfo, f *events.Filter, in classify.Values) (CalloutAnswer, error)
}

// CalloutAnswer is what a callout said about one filter's traffic.
type CalloutAnswer struct {
	Verdict classify.Verdict
	// AgentID is the agent that answered; empty when the engine answered
	// for the callout (InterimClassifier).
	AgentID string
	// Note is said beside the verdict: the agent's own note
	// (callout.Verdict.WithNote), or why the engine answered itself.
	Note string
}

// CalloutClassifierFunc adapts a function to CalloutClassifier.
type CalloutClassifierFunc func(ctx context.Context, agents []AgentInfo, f *events.Filter, in classify.Values) (CalloutAnswer, error)

// ClassifyCallout calls fn.
func (fn CalloutClassifierFunc) ClassifyCallout(ctx context.Context, agents []AgentInfo, f *events.Filter, in classify.Values) (CalloutAnswer, error) {
	return fn(ctx, agents, f, in)
}

// InterimClassifier is the engine's own answer for a registered callout
// none of whose agents serves classify (they announce whether they do):
// it does not ask the agents. An inspection callout says continue (it
// would only look); a terminating callout, which must decide, says permit
// (its agent accepted the filter when it was added, R7); an unknown-action
// callout says continue, which lets evaluation go on. The verdict is the
// engine's, not the agent's, and the answer's note says so.
var InterimClassifier CalloutClassifier = CalloutClassifierFunc(interim)

// InterimNote is the note of InterimClassifier's answers.
const InterimNote = "answered by the engine: no agent of the callout serves classify"

func interim(_ context.Context, _ []AgentInfo, f *events.Filter, _ classify.Values) (CalloutAnswer, error) {
	if f.Action == events.ActionCalloutTerminating {
		return CalloutAnswer{Verdict: classify.Permit, Note: InterimNote}, nil
	}
	return CalloutAnswer{Verdict: classify.Continue, Note: InterimNote}, nil
}

// registered is the classify.Registry of one classify: a callout is
// registered (FWPM_CALLOUT_FLAG_REGISTERED) while this engine knows live
// agents for it, and then it is asked through the engine's
// CalloutClassifier; answers keeps what each callout said beside its
// verdict, for the response.
type registered struct {
	agents  *registry
	ask     CalloutClassifier
	asked   *atomic.Uint64
	answers *calloutAnswers
}

// calloutAnswers are the answers of one classify's callouts, by filter
// id. Package classify asks callouts one at a time, in evaluation order.
type calloutAnswers struct{ byFilter map[uint64]CalloutAnswer }

func (r registered) Lookup(key string) (classify.Callout, bool) {
	agents := r.agents.forCallout(key)
	if len(agents) == 0 {
		return nil, false
	}
	return classify.CalloutFunc(func(ctx context.Context, f *events.Filter, in classify.Values) (classify.Verdict, error) {
		r.asked.Add(1)
		a, err := r.ask.ClassifyCallout(ctx, agents, f, in)
		if err == nil && r.answers != nil {
			if r.answers.byFilter == nil {
				r.answers.byFilter = make(map[uint64]CalloutAnswer)
			}
			r.answers.byFilter[f.ID] = a
		}
		return a.Verdict, err
	}), true
}

// layerCache keeps one compiled classify.Layer per layer, rebuilt lazily:
// the first classify after the layer's filters changed (the fold moves the
// layer's version, projection.State.LayerVersion) compiles it again, once,
// while concurrent classifies of the same version wait for that compile.
// Compiling is O(n log n) in the layer's filters (about 12 ms for 10k on
// the project's machine) and classifying O(n) with a small constant
// (about 90 µs), so a layer that changes between every two classifies
// pays a compile each time; writes to other layers cost it nothing.
type layerCache struct {
	mu       sync.Mutex
	layers   map[string]*compiledLayer
	compiles atomic.Uint64
}

type compiledLayer struct {
	ver   uint64
	seq   uint64 // the log position its filters were taken at
	layer *classify.Layer
	ready chan struct{} // closed once layer is set
}

// reset forgets every compiled layer: a rebuilt state counts versions
// afresh.
func (c *layerCache) reset() {
	c.mu.Lock()
	c.layers = nil
	c.mu.Unlock()
}

// lookup returns the entry for layer at version ver and whether the caller
// must compile it. The caller holds the engine's read lock, so ver is the
// state's current version and no entry can be newer.
func (c *layerCache) lookup(layer string, ver, seq uint64) (*compiledLayer, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.layers == nil {
		c.layers = make(map[string]*compiledLayer)
	}
	if cl := c.layers[layer]; cl != nil && cl.ver == ver {
		return cl, false
	}
	cl := &compiledLayer{ver: ver, seq: seq, ready: make(chan struct{})}
	c.layers[layer] = cl
	c.compiles.Add(1)
	return cl, true
}

// Classify answers req from the engine's state: the filters of the layer
// that match, in evaluation order, and the decision (see package
// classify). Callout filters ask their callout through the engine's
// CalloutClassifier if agents are registered for it, and follow R8 if
// not. Bad input is FWP_E_INVALID_PARAMETER naming the field.
func (e *Engine) Classify(ctx context.Context, req ClassifyRequest) (*ClassifyResponse, error) {
	if req.Layer == "" {
		return nil, errorf(CodeInvalidParameter, "layer is required")
	}
	layer, err := layerName("layer", req.Layer)
	if err != nil {
		return nil, err
	}
	e.mu.RLock()
	seq := e.state.Seq()
	cl, build := e.classifiers.lookup(layer, e.state.LayerVersion(layer), seq)
	var filters []*events.Filter
	if build {
		filters = e.state.LayerFilters(layer) // folded filters are never changed, only replaced
	}
	e.mu.RUnlock()
	if build {
		cl.layer = classify.Compile(layer, filters)
		close(cl.ready)
	} else {
		select {
		case <-cl.ready:
		case <-ctx.Done():
			return nil, errorf(CodeTimeout, "classify: waiting for layer %s to compile: %v", layer, ctx.Err())
		}
	}
	reg := e.registered
	reg.answers = &calloutAnswers{}
	res, err := cl.layer.Classify(ctx, classify.Values(req.Fields), reg)
	if err != nil {
		var fe *classify.FieldError
		if errors.As(err, &fe) {
			return nil, errorf(CodeInvalidParameter, "fields.%s", fe.Error())
		}
		return nil, errorf(CodeTimeout, "classify: %v", err)
	}
	// The layer's filters are those of every position since it was
	// compiled, so the answer holds as of now.
	resp := &ClassifyResponse{Seq: seq, Layer: res.Layer, Decision: res.Decision, Reason: res.Reason,
		Filters: make([]ClassifyStep, len(res.Steps))}
	if res.DecidedBy != nil {
		resp.DecidedBy = res.DecidedBy.ID
	}
	for i, s := range res.Steps {
		resp.Filters[i] = ClassifyStep{Filter: s.Filter, SubLayer: s.SubLayer, Evaluated: s.Evaluated, Verdict: s.Verdict, Reason: s.Reason}
		if s.Err != nil {
			resp.Filters[i].Error = s.Err.Error()
		} else if a, ok := reg.answers.byFilter[s.Filter.ID]; ok && s.Evaluated {
			resp.Filters[i].AgentID, resp.Filters[i].Note = a.AgentID, a.Note
		}
	}
	return resp, nil
}

// maxClassifying bounds the classify requests answered at once; more wait
// in the subscription. A classify may wait on callouts, so requests are
// answered off the subscription's goroutine.
const maxClassifying = 256

// classifyHandler answers the classify endpoint.
func (e *Engine) classifyHandler(req micro.Request) {
	var r ClassifyRequest
	if err := decode(req.Data(), &r); err != nil {
		respondError(req, err)
		return
	}
	e.classifying <- struct{}{}
	e.taken.add()
	go func() {
		defer func() { <-e.classifying; e.taken.done() }()
		ctx, cancel := context.WithTimeout(context.Background(), DefaultClassifyTimeout)
		defer cancel()
		// A classify is a read: it reflects every write acknowledged before
		// it was asked, whichever engine answers (read.go).
		resp, err := (*ClassifyResponse)(nil), e.readBarrier(ctx)
		if err == nil {
			resp, err = e.Classify(ctx, r)
		}
		if err != nil {
			respondMsg(req, errorMsg(err))
			return
		}
		respondMsg(req, jsonMsg(resp))
	}()
}

var _ classify.Registry = registered{}
