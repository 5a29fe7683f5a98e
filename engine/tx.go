package engine

import (
	"bytes"
	"errors"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/wfpnats/wfp/events"
	"github.com/wfpnats/wfp/jetstream"
	"github.com/wfpnats/wfp/projection"
)

// Transaction operations.
const (
	OpCalloutAdd    = "callout.add"
	OpCalloutDelete = "callout.delete"
	OpFilterAdd     = "filter.add"
	OpFilterDelete  = "filter.delete"
)

// TxOp is one operation of a transaction: Op names it; Callout or Filter
// carries an add; CalloutKey, or FilterKey or FilterID, names a delete.
type TxOp struct {
	Op         string          `json:"op"`
	Callout    *events.Callout `json:"callout,omitempty"`
	Filter     *events.Filter  `json:"filter,omitempty"`
	CalloutKey string          `json:"calloutKey,omitempty"`
	FilterKey  string          `json:"filterKey,omitempty"`
	FilterID   uint64          `json:"filterId,omitempty"`
}

// TxRequest is a transaction: its operations are validated as a whole, in
// order (a delete may name a filter added earlier in it), and written as
// one atomic batch, all or nothing.
type TxRequest struct {
	Ops []TxOp `json:"ops"`
	// NotifyTimeoutMs bounds the wait for callout agents' answers to the
	// transaction's adds (R7); 0 means DefaultNotifyTimeout.
	NotifyTimeoutMs int64 `json:"notifyTimeoutMs,omitempty"`
	// Brief asks for an answer without the events (Count says how many
	// were written): for bulk loads, whose caller knows what it sent.
	Brief bool `json:"brief,omitempty"`
	// SessionID, if set, puts every add that names no session of its own
	// in that dynamic session (R8).
	SessionID string `json:"sessionId,omitempty"`
}

// TxResponse reports a committed transaction: the events it wrote, from
// sequence FirstSeq on, and the filters callout agents refused (R7), which
// the engine deleted again; the rest stands.
type TxResponse struct {
	FirstSeq uint64          `json:"firstSeq"`
	Count    int             `json:"count"`            // events written, from FirstSeq on
	Events   []*events.Event `json:"events,omitempty"` // absent when the request was Brief
	Rejected []Rejection     `json:"rejected"`
}

// MaxTxOps is the most operations one transaction may hold: one event each,
// in one atomic batch, whose size the server limits
// (jetstream.limits.batch.max_size, 1000 by default).
const MaxTxOps = jetstream.MaxBatch

// ParseTx reads a transaction in either of its two forms, the API's
// {"ops":[...]} object or a bare array of operations, strictly (see
// DecodeStrict): an unknown field anywhere, or data after the JSON, is
// refused.
func ParseTx(data []byte) (TxRequest, error) {
	var req TxRequest
	if trimmed := bytes.TrimSpace(data); len(trimmed) > 0 && trimmed[0] == '[' {
		err := DecodeStrict(data, &req.Ops)
		return req, err
	}
	err := DecodeStrict(data, &req)
	return req, err
}

type transaction struct {
	ops           []TxOp
	notifyTimeout time.Duration
	brief         bool
}

func (transaction) batched() {}

// events validates the operations in order, each against the state as the
// ones before it leave it, and refuses the whole transaction at the first
// invalid one, naming it.
func (tx transaction) events(v projection.View, seq uint64) ([]*events.Event, error) {
	switch {
	case len(tx.ops) == 0:
		return nil, errorf(CodeInvalidParameter, "ops: a transaction needs at least one operation")
	case len(tx.ops) > MaxTxOps:
		return nil, errorf(CodeInvalidParameter,
			"ops: %d operations, but a transaction is one atomic batch and the server's batch limit is %d messages (jetstream.limits.batch.max_size)",
			len(tx.ops), MaxTxOps)
	}
	ov := projection.NewOverlay(v)
	out := make([]*events.Event, 0, len(tx.ops))
	for i, op := range tx.ops {
		cmd, err := op.command()
		var evs []*events.Event
		if err == nil {
			evs, err = cmd.events(ov, seq+uint64(len(out)))
		}
		if err != nil {
			var we *Error
			if !errors.As(err, &we) {
				we = &Error{Code: CodeInternal, Message: err.Error()}
			}
			return nil, errorf(we.Code, "ops[%d] (%s): %s; nothing was written", i, op.Op, we.Message)
		}
		for _, ev := range evs {
			ov.Apply(seq+uint64(len(out)), ev)
			out = append(out, ev)
		}
	}
	return out, nil
}

func (op TxOp) command() (command, error) {
	switch op.Op {
	case OpCalloutAdd:
		if op.Callout == nil {
			return nil, errorf(CodeInvalidParameter, "callout is required")
		}
		return addCallout{*op.Callout}, nil
	case OpCalloutDelete:
		return deleteCallout{op.CalloutKey}, nil
	case OpFilterAdd:
		if op.Filter == nil {
			return nil, errorf(CodeInvalidParameter, "filter is required")
		}
		return addFilter{f: *op.Filter}, nil
	case OpFilterDelete:
		return deleteFilter{ref: FilterRef{FilterKey: op.FilterKey, FilterID: op.FilterID}}, nil
	}
	return nil, errorf(CodeInvalidParameter, "op: %q is not one of %s, %s, %s, %s",
		op.Op, OpCalloutAdd, OpCalloutDelete, OpFilterAdd, OpFilterDelete)
}

// stampTx marks the filter messages of a transaction with its id and, per
// callout, each message's place among that callout's messages of it
// (events.HeaderTxPart): an agent sees only its callout's subjects, and
// holds the parts until it has them all.
func stampTx(msgs []*nats.Msg, evs []*events.Event) {
	id := evs[0].ID
	total := map[string]int{}
	for _, ev := range evs {
		if ev.Filter != nil {
			total[events.CalloutToken(ev.Filter.CalloutKey)]++
		}
	}
	seen := map[string]int{}
	for i, ev := range evs {
		if ev.Filter == nil {
			continue
		}
		tok := events.CalloutToken(ev.Filter.CalloutKey)
		seen[tok]++
		msgs[i].Header.Set(events.HeaderTxID, id)
		msgs[i].Header.Set(events.HeaderTxPart, events.TxPart(seen[tok], total[tok]))
	}
}

// confirmTx runs R7 for every filter a committed transaction added, all at
// once, and returns the ones that were refused and taken back.
func (e *Engine) confirmTx(evs []*events.Event, timeout time.Duration) []Rejection {
	type result struct{ rej *Rejection }
	ch := make(chan result)
	deletedLater := map[string]bool{} // added and deleted in the same transaction: nothing to confirm
	for _, ev := range evs {
		if ev.Type == events.FilterDeleted {
			deletedLater[ev.Filter.Key] = true
		}
	}
	n := 0
	for _, ev := range evs {
		if ev.Type == events.FilterAdded && !deletedLater[ev.Filter.Key] {
			n++
			go func(f *events.Filter) { ch <- result{e.confirm(f, timeout)} }(ev.Filter)
		}
	}
	rejected := []Rejection{}
	for range n {
		if r := <-ch; r.rej != nil {
			rejected = append(rejected, *r.rej)
		}
	}
	return rejected
}
