package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/wfpnats/wfp/events"
)

// serve registers the micro service. Reads answer from the state under a
// read lock, after a read barrier (read.go); writes are queued for the
// writer loop and answered from it, so a handler never blocks the
// subscription and concurrent writes reach the loop together, to be
// written as one group.
func (e *Engine) serve() error {
	e.svc = newAPIService(e.nc, micro.Config{
		Name:        ServiceName,
		Version:     Version,
		Description: "WFP-style filter engine; events on stream " + e.cfg.Stream,
		Metadata:    map[string]string{"stream": e.cfg.Stream, "prefix": e.cfg.Prefix},
	}, e.publishReply, e.metrics.answered)
	endpoints := []struct {
		name, subject string
		h             micro.HandlerFunc
	}{
		{"callout-add", EndpointCalloutAdd, e.write(func(data []byte) (command, error) {
			var c events.Callout
			err := decode(data, &c)
			return addCallout{c}, err
		})},
		{"callout-delete", EndpointCalloutDelete, e.write(func(data []byte) (command, error) {
			var r CalloutRef
			err := decode(data, &r)
			return deleteCallout{r.CalloutKey}, err
		})},
		{"filter-add", EndpointFilterAdd, e.write(func(data []byte) (command, error) {
			var r AddFilterRequest
			if err := decode(data, &r); err != nil {
				return nil, err
			}
			d, err := notifyTimeout(r.NotifyTimeoutMs)
			return addFilter{f: r.Filter, notifyTimeout: d}, err
		})},
		{"filter-delete", EndpointFilterDelete, e.write(func(data []byte) (command, error) {
			var r FilterRef
			err := decode(data, &r)
			return deleteFilter{ref: r}, err
		})},
		{"tx-apply", EndpointTxApply, e.write(func(data []byte) (command, error) {
			r, err := ParseTx(data)
			if err != nil {
				return nil, errorf(CodeInvalidParameter, "request: %v", err)
			}
			d, err := notifyTimeout(r.NotifyTimeoutMs)
			return transaction{ops: inSession(r.Ops, r.SessionID), notifyTimeout: d, brief: r.Brief}, err
		})},
		{"classify", EndpointClassify, e.classifyHandler},
		{"session-open", EndpointSessionOpen, e.sessionOpen},
		{"session-close", EndpointSessionClose, e.sessionClose},
		{"session-list", EndpointSessionList, e.read(e.sessionList)},
		{"callout-get", EndpointCalloutGet, e.read(e.getCallout)},
		{"callout-list", EndpointCalloutList, e.read(e.listCallouts)},
		{"filter-get", EndpointFilterGet, e.read(e.getFilter)},
		{"filter-list", EndpointFilterList, e.read(e.listFilters)},
	}
	for _, ep := range endpoints {
		if err := e.svc.addEndpoint(ep.name, e.subj.API(ep.subject), ep.h); err != nil {
			return fmt.Errorf("engine: endpoint %s: %w", ep.name, err)
		}
	}
	if err := e.svc.serveDiscovery(); err != nil {
		return fmt.Errorf("engine: micro service discovery: %w", err)
	}
	return nil
}

// decode parses a JSON request body strictly (DecodeStrict), naming what
// was wrong.
func decode(data []byte, v any) error {
	if err := DecodeStrict(data, v); err != nil {
		return errorf(CodeInvalidParameter, "request: %v", err)
	}
	return nil
}

// notifyTimeout reads a request's notifyTimeoutMs: 0 is the default, a
// negative one a mistake.
func notifyTimeout(ms int64) (time.Duration, error) {
	if ms < 0 {
		return 0, errorf(CodeInvalidParameter, "notifyTimeoutMs: %d is negative", ms)
	}
	return time.Duration(ms) * time.Millisecond, nil
}

// write adapts a command parser into a handler that queues the command and
// answers when the writer loop has written (or refused) it.
func (e *Engine) write(parse func([]byte) (command, error)) micro.HandlerFunc {
	return func(req micro.Request) {
		start := time.Now()
		cmd, err := parse(req.Data())
		if err != nil {
			respondError(req, err)
			return
		}
		// The answer comes from the writer loop after this handler has
		// returned (micro.go: the request is counted then).
		e.taken.add()
		answer := func(m *nats.Msg) {
			respondMsg(req, m)
			e.taken.done()
		}
		ctx, cancel := context.WithTimeout(context.Background(), e.cfg.WriteTimeout)
		defer cancel()
		err = e.enqueue(ctx, cmd, func(evs []*events.Event, seq uint64, err error) {
			if err != nil {
				answer(errorMsg(err))
				return
			}
			e.metrics.writes.Observe(time.Since(start).Seconds())
			switch cmd := cmd.(type) {
			case addFilter:
				f := evs[0].Filter
				if f.CalloutKey == "" || len(e.agents.forCallout(f.CalloutKey)) == 0 {
					answer(jsonMsg(FilterResponse{Filter: f, Seq: seq}))
					return
				}
				// R7: wait for the callout's agents off the writer loop.
				go func() {
					if rej := e.confirm(evs[0].Filter, cmd.notifyTimeout); rej != nil {
						answer(errorMsg(rej.err()))
						return
					}
					answer(jsonMsg(FilterResponse{Filter: evs[0].Filter, Seq: seq}))
				}()
			case transaction:
				go func() {
					rejected := e.confirmTx(evs, cmd.notifyTimeout)
					resp := TxResponse{FirstSeq: seq, Count: len(evs), Events: evs, Rejected: rejected}
					if cmd.brief {
						resp.Events = nil
					}
					answer(jsonMsg(resp))
				}()
			case addCallout:
				answer(jsonMsg(CalloutResponse{Callout: evs[0].Callout, Seq: seq}))
			default:
				answer(jsonMsg(DeleteResponse{Seq: seq}))
			}
		})
		if err != nil {
			e.taken.done()
			respondError(req, err)
		}
	}
}

// respondError sends err with its WFP code in the micro error headers and
// as a JSON body, so both `nats req` users and the Go client can read it.
func respondError(req micro.Request, err error) {
	m := errorMsg(err)
	_ = req.Error(m.Header.Get(micro.ErrorCodeHeader), m.Header.Get(micro.ErrorHeader), m.Data)
}

// errorMsg is the answer for a refused request: the code and message in
// micro's error headers (as req.Error sets them) and {"error":{...}} as body.
func errorMsg(err error) *nats.Msg {
	var we *Error
	if !errors.As(err, &we) {
		we = &Error{Code: CodeInternal, Message: err.Error()}
	}
	body, _ := json.Marshal(struct {
		Error *Error `json:"error"`
	}{we})
	m := nats.NewMsg("")
	m.Header.Set(micro.ErrorHeader, we.Message)
	m.Header.Set(micro.ErrorCodeHeader, string(we.Code))
	m.Data = body
	return m
}

func jsonMsg(v any) *nats.Msg {
	m := nats.NewMsg("")
	var err error
	if m.Data, err = json.Marshal(v); err != nil {
		return errorMsg(err)
	}
	return m
}
