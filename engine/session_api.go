package engine

import (
	"context"

	"github.com/nats-io/nats.go/micro"

	"github.com/wfpnats/wfp/events"
	"github.com/wfpnats/wfp/projection"
)

// The session endpoints and how a session's end is submitted.

// endSessionFully submits endSession until the session is closed, and
// returns the sequence of its SessionClosed and what it deleted.
func (e *Engine) endSessionFully(ctx context.Context, id, reason string) (*CloseSessionResponse, error) {
	resp := &CloseSessionResponse{}
	for {
		evs, seq, err := e.submit(ctx, endSession{id: id, reason: reason})
		if err != nil {
			return resp, err
		}
		for i, ev := range evs {
			switch ev.Type {
			case events.FilterDeleted:
				resp.DeletedFilters++
			case events.CalloutDeleted:
				resp.DeletedCallouts++
			case events.SessionClosed:
				resp.Seq = seq + uint64(i)
				return resp, nil
			}
		}
	}
}

func (e *Engine) sessionOpen(req micro.Request) {
	var r OpenSessionRequest
	if err := decode(req.Data(), &r); err != nil {
		respondError(req, err)
		return
	}
	e.answerAsync(req, func(ctx context.Context) any {
		evs, seq, err := e.submit(ctx, openSession{r})
		if err != nil {
			return err
		}
		return SessionResponse{Session: evs[0].Session, Seq: seq}
	})
}

func (e *Engine) sessionClose(req micro.Request) {
	var r SessionRef
	if err := decode(req.Data(), &r); err != nil {
		respondError(req, err)
		return
	}
	e.answerAsync(req, func(ctx context.Context) any {
		resp, err := e.endSessionFully(ctx, r.SessionID, "session "+r.SessionID+" closed")
		if err != nil {
			return err
		}
		return resp
	})
}

func (e *Engine) sessionList(ctx context.Context, data []byte) (any, error) {
	if len(data) > 0 {
		var none struct{}
		if err := decode(data, &none); err != nil {
			return nil, err
		}
	}
	if err := e.readBarrier(ctx); err != nil {
		return nil, err
	}
	var resp ListSessionsResponse
	e.View(func(s *projection.State) {
		resp.Seq = s.Seq()
		for _, ss := range s.Sessions() {
			fs, cs := s.SessionObjects(ss.ID)
			resp.Sessions = append(resp.Sessions, SessionInfo{Session: *ss, FilterCount: len(fs), CalloutCount: len(cs),
				LastHeartbeat: e.leases.last(ss.ID)})
		}
	})
	if resp.Sessions == nil {
		resp.Sessions = []SessionInfo{}
	}
	return resp, nil
}

// answerAsync answers req from a goroutine with what do returns (an error
// or a value to send as JSON), so the subscription is not held while the
// writer loop works. The answer goes straight to the reply subject (see
// write).
func (e *Engine) answerAsync(req micro.Request, do func(ctx context.Context) any) {
	e.taken.add()
	go func() {
		defer e.taken.done()
		ctx, cancel := context.WithTimeout(context.Background(), 2*e.cfg.WriteTimeout)
		defer cancel()
		switch v := do(ctx).(type) {
		case error:
			respondMsg(req, errorMsg(v))
		default:
			respondMsg(req, jsonMsg(v))
		}
	}()
}
