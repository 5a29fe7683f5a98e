package engine

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/nats-io/nuid"
)

// The engine speaks the NATS micro protocol itself rather than through
// micro.AddService. micro counts an endpoint's requests, errors and
// processing time around the handler call, and reads a handler's error
// when it returns; but the engine's handlers return at once and answer
// later from other goroutines (a write after its group commit, an add
// after its callout's agents answered, a read after its barrier), so that
// one request never holds up the next and group commit has many in
// flight. micro would count every such refusal as a success and every add
// as a few microseconds. Here a request is counted when its answer is
// sent: its processing time runs from its arrival to its answer, and an
// answer carrying an error code counts as an error. Discovery
// ($SRV.PING, $SRV.INFO, $SRV.STATS, each also .<name> and .<name>.<id>)
// answers with micro's own JSON types, so `nats micro ls`, `info` and
// `stats` see a micro service like any other.

// apiService is the engine's micro service: its endpoints, their
// counters, and the discovery subscriptions.
type apiService struct {
	nc          *nats.Conn
	id          micro.ServiceIdentity
	description string
	started     time.Time
	// publish sends an answer; when it cannot, it calls failed and then
	// sends an error instead, and reports false (Engine.publishReply).
	publish func(subject string, m *nats.Msg, failed func()) bool
	// answered is told of every answer sent, for the metrics.
	answered func(endpoint, code string, took time.Duration)

	mu        sync.Mutex
	endpoints []*apiEndpoint
	subs      []*nats.Subscription
	stopped   bool
}

// apiEndpoint is one endpoint and its counters.
type apiEndpoint struct {
	name, subject string
	handler       micro.Handler

	mu         sync.Mutex
	requests   int
	errors     int
	lastError  string
	processing time.Duration
	byCode     map[string]uint64 // refusals by error code
}

func newAPIService(nc *nats.Conn, cfg micro.Config, publish func(string, *nats.Msg, func()) bool, answered func(endpoint, code string, took time.Duration)) *apiService {
	md := maps.Clone(cfg.Metadata)
	if md == nil {
		md = map[string]string{}
	}
	return &apiService{
		nc:          nc,
		id:          micro.ServiceIdentity{Name: cfg.Name, ID: nuid.Next(), Version: cfg.Version, Metadata: md},
		description: cfg.Description,
		started:     time.Now().UTC(),
		publish:     publish,
		answered:    answered,
	}
}

// addEndpoint serves h on subject, in micro's queue group, so that the
// engines sharing a stream share its requests.
func (s *apiService) addEndpoint(name, subject string, h micro.Handler) error {
	ep := &apiEndpoint{name: name, subject: subject, handler: h, byCode: map[string]uint64{}}
	sub, err := s.nc.QueueSubscribe(subject, micro.DefaultQueueGroup, func(m *nats.Msg) {
		ep.handler.Handle(&apiRequest{msg: m, ep: ep, svc: s, start: time.Now()})
	})
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.endpoints = append(s.endpoints, ep)
	s.subs = append(s.subs, sub)
	return nil
}

// serveDiscovery subscribes to the micro protocol's PING, INFO and STATS
// subjects: for all services, for this service's name and for its id.
func (s *apiService) serveDiscovery() error {
	for verb, answer := range map[micro.Verb]func() any{
		micro.PingVerb:  func() any { return micro.Ping{ServiceIdentity: s.identity(), Type: micro.PingResponseType} },
		micro.InfoVerb:  func() any { return s.info() },
		micro.StatsVerb: func() any { return s.stats() },
	} {
		for _, scope := range [][2]string{{"", ""}, {s.id.Name, ""}, {s.id.Name, s.id.ID}} {
			subj, err := micro.ControlSubject(verb, scope[0], scope[1])
			if err != nil {
				return err
			}
			sub, err := s.nc.Subscribe(subj, func(m *nats.Msg) {
				data, err := json.Marshal(answer())
				if err == nil {
					err = m.Respond(data)
				}
				_ = err // the asker times out, as with any lost answer
			})
			if err != nil {
				return err
			}
			s.mu.Lock()
			s.subs = append(s.subs, sub)
			s.mu.Unlock()
		}
	}
	return nil
}

func (s *apiService) identity() micro.ServiceIdentity {
	id := s.id
	id.Metadata = maps.Clone(id.Metadata)
	return id
}

func (s *apiService) info() micro.Info {
	s.mu.Lock()
	defer s.mu.Unlock()
	eps := make([]micro.EndpointInfo, 0, len(s.endpoints))
	for _, ep := range s.endpoints {
		eps = append(eps, micro.EndpointInfo{Name: ep.name, Subject: ep.subject, QueueGroup: micro.DefaultQueueGroup})
	}
	return micro.Info{ServiceIdentity: s.identity(), Type: micro.InfoResponseType, Description: s.description, Endpoints: eps}
}

func (s *apiService) stats() micro.Stats {
	s.mu.Lock()
	eps := append([]*apiEndpoint(nil), s.endpoints...)
	s.mu.Unlock()
	st := micro.Stats{ServiceIdentity: s.identity(), Type: micro.StatsResponseType, Started: s.started,
		Endpoints: make([]*micro.EndpointStats, 0, len(eps))}
	for _, ep := range eps {
		st.Endpoints = append(st.Endpoints, ep.stats())
	}
	return st
}

func (ep *apiEndpoint) stats() *micro.EndpointStats {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	st := &micro.EndpointStats{Name: ep.name, Subject: ep.subject, QueueGroup: micro.DefaultQueueGroup,
		NumRequests: ep.requests, NumErrors: ep.errors, LastError: ep.lastError, ProcessingTime: ep.processing}
	if ep.requests > 0 {
		st.AverageProcessingTime = ep.processing / time.Duration(ep.requests)
	}
	return st
}

// refusals returns the endpoint's refusals by error code.
func (ep *apiEndpoint) refusals() map[string]uint64 {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	return maps.Clone(ep.byCode)
}

// count records one answer.
func (ep *apiEndpoint) count(code, description string, took time.Duration) {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	ep.requests++
	ep.processing += took
	if code != "" {
		ep.errors++
		ep.lastError = code + ":" + description // as micro writes it
		ep.byCode[code]++
	}
}

// recount makes an answer counted under code from one that counts under
// code to: it was replaced by an error before it went out.
func (ep *apiEndpoint) recount(from, to, description string) {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	if from == "" {
		ep.errors++
	} else {
		ep.byCode[from]--
	}
	ep.byCode[to]++
	ep.lastError = to + ":" + description
}

// stop drains the subscriptions: requests already delivered are still
// handled, no new one arrives.
func (s *apiService) stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return nil
	}
	s.stopped = true
	var errs []error
	for _, sub := range s.subs {
		if err := sub.Drain(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
			errs = append(errs, fmt.Errorf("draining %s: %w", sub.Subject, err))
		}
	}
	return errors.Join(errs...)
}

// apiRequest is a micro.Request whose answer may be sent from any
// goroutine, once, at any time after the handler returned; sending it
// counts the request.
type apiRequest struct {
	msg   *nats.Msg
	ep    *apiEndpoint
	svc   *apiService
	start time.Time
	sent  atomic.Bool
}

var errAnswered = errors.New("engine: request answered already")

// answer sends m as the answer and counts the request, before it goes
// out: whoever got the answer finds it counted.
func (r *apiRequest) answer(m *nats.Msg) error {
	if !r.sent.CompareAndSwap(false, true) {
		return errAnswered
	}
	code, desc := m.Header.Get(micro.ErrorCodeHeader), m.Header.Get(micro.ErrorHeader)
	took := time.Since(r.start)
	r.ep.count(code, desc, took)
	if r.svc.answered != nil {
		r.svc.answered(r.ep.name, code, took)
	}
	ok := r.svc.publish(r.msg.Reply, m, func() {
		// Nothing went out: an error answer will, and counts instead.
		r.ep.recount(code, string(CodeInternal), "the answer could not be sent")
	})
	if !ok {
		return errors.New("engine: the answer could not be sent")
	}
	return nil
}

func (r *apiRequest) Respond(data []byte, opts ...micro.RespondOpt) error {
	m := nats.NewMsg("")
	m.Data = data
	for _, o := range opts {
		o(m)
	}
	return r.answer(m)
}

func (r *apiRequest) RespondJSON(v any, opts ...micro.RespondOpt) error {
	data, err := json.Marshal(v)
	if err != nil {
		return micro.ErrMarshalResponse
	}
	return r.Respond(data, opts...)
}

func (r *apiRequest) Error(code, description string, data []byte, opts ...micro.RespondOpt) error {
	if code == "" || description == "" {
		return fmt.Errorf("%w: error code and description", micro.ErrArgRequired)
	}
	m := nats.NewMsg("")
	for _, o := range opts {
		o(m)
	}
	m.Header.Set(micro.ErrorHeader, description)
	m.Header.Set(micro.ErrorCodeHeader, code)
	m.Data = data
	return r.answer(m)
}

func (r *apiRequest) Data() []byte           { return r.msg.Data }
func (r *apiRequest) Headers() micro.Headers { return micro.Headers(r.msg.Header) }
func (r *apiRequest) Subject() string        { return r.msg.Subject }
func (r *apiRequest) Reply() string          { return r.msg.Reply }

// respondMsg sends m as the answer to req, which the engine's service
// made, from any goroutine.
func respondMsg(req micro.Request, m *nats.Msg) { _ = req.(*apiRequest).answer(m) }
