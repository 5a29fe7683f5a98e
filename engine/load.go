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
)

// LoadResult reports a bulk load: how many operations were committed, in
// how many transactions, the log sequences they took (first to last), and
// the filters callout agents refused (R7), which the engine deleted again.
type LoadResult struct {
	Ops          int         `json:"ops"`
	Transactions int         `json:"transactions"`
	FirstSeq     uint64      `json:"firstSeq"`
	LastSeq      uint64      `json:"lastSeq"`
	Rejected     []Rejection `json:"rejected"`
}

// DefaultLoadInFlight is how many transactions Load keeps in flight.
const DefaultLoadInFlight = 4

// Load applies ops in transactions of at most MaxTxOps operations, in
// order, keeping up to inFlight of them (default DefaultLoadInFlight) sent
// and unanswered, so the engine always has the next one to validate while
// it writes the current one. The requests go out one after the other on
// the client's connection, and the engine takes them in that order, so an
// operation may depend on one in an earlier transaction (a delete of a
// filter added before it).
//
// Each transaction is atomic; the load as a whole is not. At the first
// refused transaction Load stops sending, collects the answers of those in
// flight, and returns what was committed with an error naming the first
// operation of the refused transaction (ops[i], counted over the whole
// load); transactions sent after it may have been committed too, and are
// counted.
func (c *Client) Load(ctx context.Context, ops []TxOp, inFlight int, opts ...CallOption) (*LoadResult, error) {
	o, err := collect(opts)
	if err != nil {
		return nil, err
	}
	if inFlight <= 0 {
		inFlight = DefaultLoadInFlight
	}
	res := &LoadResult{Rejected: []Rejection{}}
	if len(ops) == 0 {
		return res, nil
	}
	subject := c.subj.API(EndpointTxApply)
	inbox := c.nc.NewRespInbox()
	replies := make(chan *nats.Msg, inFlight)
	sub, err := c.nc.ChanSubscribe(inbox+".*", replies)
	if err != nil {
		return nil, fmt.Errorf("engine: load: %w", err)
	}
	defer sub.Unsubscribe()

	wait := c.timeout + o.notifyWait()
	sent, answered := 0, 0 // transactions
	var firstErr error
	next := 0 // the next op to send
	collectOne := func() error {
		timer := time.NewTimer(wait)
		defer timer.Stop()
		select {
		case m := <-replies:
			answered++
			i, _ := strconv.Atoi(m.Subject[strings.LastIndexByte(m.Subject, '.')+1:])
			if m.Header.Get("Status") == "503" {
				return errorf(CodeEngineNotResponding, "no engine answers on %s: is one running with prefix %q?", subject, c.subj.Prefix)
			}
			var resp TxResponse
			if err := decodeReply(subject, m, &resp); err != nil {
				return fmt.Errorf("transaction from ops[%d]: %w", i*MaxTxOps, err)
			}
			res.Transactions++
			res.Ops += resp.Count
			if res.FirstSeq == 0 || resp.FirstSeq < res.FirstSeq {
				res.FirstSeq = resp.FirstSeq
			}
			if last := resp.FirstSeq + uint64(resp.Count) - 1; last > res.LastSeq {
				res.LastSeq = last
			}
			res.Rejected = append(res.Rejected, resp.Rejected...)
			return nil
		case <-timer.C:
			return errorf(CodeTimeout, "no answer on %s within %v; %d of %d transactions answered, the outcome of the rest is unknown", subject, wait, answered, sent)
		case <-ctx.Done():
			return errorf(CodeTimeout, "%v; %d of %d transactions answered, the outcome of the rest is unknown", ctx.Err(), answered, sent)
		}
	}
	for next < len(ops) && firstErr == nil {
		if sent-answered >= inFlight {
			if err := collectOne(); err != nil {
				firstErr = err
				break
			}
		}
		end := min(next+MaxTxOps, len(ops))
		data, err := json.Marshal(TxRequest{Ops: ops[next:end], NotifyTimeoutMs: o.notifyTimeout.Milliseconds(), Brief: true})
		if err != nil {
			return res, err
		}
		if err := c.nc.PublishRequest(subject, inbox+"."+strconv.Itoa(next/MaxTxOps), data); err != nil {
			firstErr = fmt.Errorf("engine: load: %w", err)
			break
		}
		sent++
		next = end
	}
	for answered < sent {
		if err := collectOne(); err != nil {
			if firstErr == nil {
				firstErr = err
			}
			var we *Error
			if errors.As(err, &we) && (we.Code == CodeTimeout || we.Code == CodeEngineNotResponding) {
				break
			}
		}
	}
	return res, firstErr
}
