package engine

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/wfpnats/wfp/events"
	"github.com/wfpnats/wfp/internal/testkit"
)

// microStats asks the engines on nc for their micro stats, as `nats micro
// stats wfp-engine` does, and returns the one engine's stats by endpoint.
func microStats(t *testing.T, nc *nats.Conn) map[string]*micro.EndpointStats {
	t.Helper()
	subj, err := micro.ControlSubject(micro.StatsVerb, ServiceName, "")
	if err != nil {
		t.Fatal(err)
	}
	m, err := nc.Request(subj, nil, defaultWait)
	if err != nil {
		t.Fatal(err)
	}
	var st micro.Stats
	if err := json.Unmarshal(m.Data, &st); err != nil || st.Type != micro.StatsResponseType || st.Name != ServiceName {
		t.Fatalf("stats answer %s (%v)", m.Data, err)
	}
	out := map[string]*micro.EndpointStats{}
	for _, ep := range st.Endpoints {
		out[ep.Name] = ep
	}
	return out
}

// The micro stats count a request when it is answered, not when its
// handler returns: an add waiting for its agent is not counted yet, and
// once answered its processing time covers the wait; refusals answered
// from the writer loop, from a read's goroutine or by the handler itself
// all count as errors, with the last one's code.
func TestMicroStatsCountAnswers(t *testing.T) {
	e, c, added, gate := addWaitingForAgent(t)
	nc := e.nc

	held := time.Now()
	if st := microStats(t, nc)["filter-add"]; st.NumRequests != 0 || st.ProcessingTime != 0 {
		t.Fatalf("filter-add counted before its answer: %+v", st)
	}
	waited := time.Since(held)
	close(gate)
	if err := <-added; err != nil {
		t.Fatal(err)
	}
	st := microStats(t, nc)["filter-add"]
	if st.NumRequests != 1 || st.NumErrors != 0 || st.ProcessingTime < waited || st.AverageProcessingTime != st.ProcessingTime {
		t.Fatalf("filter-add after its answer: %+v; the add waited at least %v for its agent", st, waited)
	}

	// A refusal from the writer loop (no such callout), one from a read
	// (no such filter) and one from the handler (bad JSON).
	ctx := context.Background()
	if _, err := c.AddFilter(ctx, events.Filter{Name: "x", Layer: "ALE_AUTH_CONNECT_V4", Action: events.ActionCalloutInspection,
		CalloutKey: "5b1f0c0e-8a43-4b8e-9d7c-3c2f2d1a0b01"}); !errors.Is(err, ErrCalloutNotFound) {
		t.Fatalf("add naming no callout: %v", err)
	}
	if _, err := c.GetFilter(ctx, FilterRef{FilterID: 999}); !errors.Is(err, ErrFilterNotFound) {
		t.Fatalf("get of no filter: %v", err)
	}
	if _, err := nc.Request(e.subj.API(EndpointFilterDelete), []byte("{"), defaultWait); err != nil {
		t.Fatal(err)
	}
	stats := microStats(t, nc)
	for name, code := range map[string]Code{"filter-add": CodeCalloutNotFound, "filter-get": CodeFilterNotFound,
		"filter-delete": CodeInvalidParameter} {
		st := stats[name]
		if st.NumErrors != 1 || !strings.HasPrefix(st.LastError, string(code)+":") {
			t.Errorf("%s: %d errors, last %q; want 1, %s", name, st.NumErrors, st.LastError, code)
		}
	}
	if got := stats["filter-add"].NumRequests; got != 2 {
		t.Errorf("filter-add: %d requests, want 2", got)
	}
	// The refusals by code, as the metrics show them.
	for _, ep := range e.svc.endpoints {
		if ep.name == "filter-add" {
			if n := ep.refusals()[string(CodeCalloutNotFound)]; n != 1 {
				t.Errorf("filter-add refusals by code: %v", ep.refusals())
			}
		}
	}
}

// The discovery subjects answer with micro's own types, for every
// service, for the engine's name and for its id.
func TestMicroDiscovery(t *testing.T) {
	srv := testkit.Server(t)
	nc := testkit.Conn(t, srv)
	e := startEngine(t, nc)
	id := e.svc.id.ID
	for _, verb := range []micro.Verb{micro.PingVerb, micro.InfoVerb, micro.StatsVerb} {
		for _, scope := range [][2]string{{"", ""}, {ServiceName, ""}, {ServiceName, id}} {
			subj, _ := micro.ControlSubject(verb, scope[0], scope[1])
			m, err := nc.Request(subj, nil, defaultWait)
			if err != nil {
				t.Fatalf("%s: %v", subj, err)
			}
			var got struct {
				micro.ServiceIdentity
				Type      string
				Endpoints []struct{ Name, Subject string }
			}
			if err := json.Unmarshal(m.Data, &got); err != nil || got.Name != ServiceName || got.ID != id ||
				got.Version != Version || got.Metadata["stream"] != events.DefaultStream {
				t.Fatalf("%s: %s (%v)", subj, m.Data, err)
			}
			want := map[micro.Verb]string{micro.PingVerb: micro.PingResponseType, micro.InfoVerb: micro.InfoResponseType,
				micro.StatsVerb: micro.StatsResponseType}[verb]
			if got.Type != want || (verb != micro.PingVerb && len(got.Endpoints) != len(e.svc.endpoints)) {
				t.Fatalf("%s: %s", subj, m.Data)
			}
		}
	}
	var info micro.Info
	m, _ := nc.Request("$SRV.INFO."+ServiceName, nil, defaultWait)
	if err := json.Unmarshal(m.Data, &info); err != nil {
		t.Fatal(err)
	}
	for _, ep := range info.Endpoints {
		if ep.Name == "callout-get" && ep.Subject == "wfp.api.callout.get" && ep.QueueGroup == micro.DefaultQueueGroup {
			return
		}
	}
	t.Fatalf("info lists no callout-get on wfp.api.callout.get: %s", m.Data)
}

// A request is answered, and counted, once: a second answer is refused.
func TestAPIRequestAnswersOnce(t *testing.T) {
	var sent int
	svc := &apiService{publish: func(string, *nats.Msg, func()) bool { sent++; return true }}
	ep := &apiEndpoint{name: "x", byCode: map[string]uint64{}}
	r := &apiRequest{msg: &nats.Msg{Reply: "_INBOX.x"}, ep: ep, svc: svc, start: time.Now()}
	if err := r.Error(string(CodeInUse), "in use", nil); err != nil {
		t.Fatal(err)
	}
	if err := r.Respond([]byte("{}")); !errors.Is(err, errAnswered) {
		t.Fatalf("second answer: %v", err)
	}
	if st := ep.stats(); sent != 1 || st.NumRequests != 1 || st.NumErrors != 1 || st.LastError != "FWP_E_IN_USE:in use" {
		t.Fatalf("sent %d, stats %+v", sent, st)
	}
}

// A request is counted before its answer goes out, so whoever got the
// answer and then asks for the stats finds it counted; an answer that
// cannot go out is counted as the error sent instead.
func TestAPIRequestCountedBeforeItsAnswerGoesOut(t *testing.T) {
	ep := &apiEndpoint{name: "x", byCode: map[string]uint64{}}
	var atPublish []*micro.EndpointStats
	svc := &apiService{publish: func(_ string, m *nats.Msg, failed func()) bool {
		atPublish = append(atPublish, ep.stats())
		if len(m.Data) > 3 { // too large: nothing goes out, an error does
			failed()
			atPublish = append(atPublish, ep.stats())
			return false
		}
		return true
	}}
	for _, data := range []string{"{}", "{\"big\":1}"} {
		r := &apiRequest{msg: &nats.Msg{Reply: "_INBOX.x"}, ep: ep, svc: svc, start: time.Now()}
		_ = r.Respond([]byte(data))
	}
	if len(atPublish) != 3 || atPublish[0].NumRequests != 1 || atPublish[0].NumErrors != 0 ||
		atPublish[1].NumRequests != 2 || atPublish[2].NumErrors != 1 || atPublish[2].LastError != "FWP_E_INTERNAL:the answer could not be sent" ||
		ep.refusals()[string(CodeInternal)] != 1 {
		t.Fatalf("stats as each answer went out: %+v %+v; refusals %v", atPublish[0], atPublish[len(atPublish)-1], ep.refusals())
	}
}
