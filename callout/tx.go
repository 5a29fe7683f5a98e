package callout

import (
	"cmp"
	"errors"
	"slices"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/wfpnats/wfp/events"
)

// txHoldTimeout bounds how long the agent holds an incomplete
// transaction. The engine writes a transaction as one atomic batch, so
// its parts are in the stream together and arrive back to back; when the
// rest has not come after this long, it is not coming (a message removed
// from the stream, a consumer that started in the middle), and the agent
// delivers what it holds rather than stop.
var txHoldTimeout = 10 * time.Second

// item is one message the agent acts on.
type item struct {
	msg     natsjs.Msg
	seq     uint64
	initial bool
}

// pendingTx holds the parts of one transaction until all have arrived.
type pendingTx struct {
	id    string
	n     int          // parts in all (Wfp-Tx-Part "i/n")
	first int          // lowest part index seen (see dispatch)
	parts map[int]item // by part index; a map, so a bogus n allocates nothing
}

func newPendingTx(id string, first, n int) *pendingTx {
	return &pendingTx{id: id, n: n, first: first, parts: make(map[int]item, min(n, 1024))}
}

type putResult int

const (
	putOK        putResult = iota
	putDuplicate           // this part is held already (a redelivery)
	putMismatch            // the part contradicts what is held
)

func (p *pendingTx) put(i, n int, it item) putResult {
	if n != p.n {
		return putMismatch
	}
	if held, ok := p.parts[i]; ok {
		if held.seq == it.seq {
			return putDuplicate
		}
		return putMismatch
	}
	p.parts[i] = it
	p.first = min(p.first, i)
	return putOK
}

// complete reports whether every part from first to n is held.
func (p *pendingTx) complete() bool { return len(p.parts) == p.n-p.first+1 }

// items returns the held parts in log order.
func (p *pendingTx) items() []item {
	out := make([]item, 0, len(p.parts))
	for _, it := range p.parts {
		out = append(out, it)
	}
	slices.SortFunc(out, func(a, b item) int { return cmp.Compare(a.seq, b.seq) })
	return out
}

var errNoTxID = errors.New("no " + events.HeaderTxID)

// txHeaders reads a message's transaction headers. ok is false for a
// message outside a transaction and for malformed headers, which are
// logged (when warn) and make it a plain message.
func (a *Agent) txHeaders(msg natsjs.Msg, seq uint64, warn bool) (id string, i, n int, ok bool) {
	h := msg.Headers()
	id, part := h.Get(events.HeaderTxID), h.Get(events.HeaderTxPart)
	if id == "" && part == "" {
		return "", 0, 0, false
	}
	i, n, err := events.ParseTxPart(part)
	if id == "" || err != nil {
		if warn {
			if err == nil {
				err = errNoTxID
			}
			a.log.Warn("malformed transaction headers; treating the message as outside any transaction",
				"subject", msg.Subject(), "seq", seq, "txId", id, "txPart", part, "err", err)
		}
		return "", 0, 0, false
	}
	return id, i, n, true
}

// hold adds a live transaction part; once the transaction is complete it
// delivers it. It reports false when Close interrupted a delivery.
func (a *Agent) hold(it item, id string, i, n int) bool {
	if a.tx != nil && a.tx.id != id {
		if !a.flushHeld("a message of another transaction arrived first") {
			return false
		}
	}
	if a.tx == nil {
		if i != 1 {
			// Delivery is in log order, so parts before i lie before where
			// this agent started reading (a live agent registered, or a
			// durable was created, while the batch was being stored): they
			// are not coming. Deliver the rest together.
			a.log.Info("transaction began before this agent's first message; holding the parts from here on",
				"txId", id, "from", i, "of", n, "seq", it.seq)
		}
		a.tx = newPendingTx(id, i, n)
	}
	switch a.tx.put(i, n, it) {
	case putDuplicate:
		// Redelivered (a durable consumer recreated under us): held already.
		// Not acked: with AckAll its ack would cover the held parts too.
		a.n.duplicates.Add(1)
		return true
	case putMismatch:
		a.log.Warn("transaction part does not fit the parts held; treating it as outside any transaction",
			"txId", id, "txPart", events.TxPart(i, n), "seq", it.seq, "heldOf", a.tx.n)
		if !a.flushHeld("a part that does not fit arrived") {
			return false
		}
		return a.deliver([]item{it}, false)
	}
	a.n.heldTxParts.Store(int64(len(a.tx.parts)))
	if !a.tx.complete() {
		return true
	}
	p := a.tx
	a.tx = nil
	a.n.heldTxParts.Store(0)
	return a.deliver(p.items(), true)
}

// flushHeld delivers the parts of an incomplete transaction, so that the
// agent never waits for good; the transaction's later parts, if any come,
// are delivered as they come. It reports false when Close interrupted it.
func (a *Agent) flushHeld(why string) bool {
	p := a.tx
	if p == nil {
		return true
	}
	a.tx = nil
	a.n.heldTxParts.Store(0)
	a.brokenTx = p.id
	a.log.Warn("transaction incomplete: delivering the parts held so far, because "+why,
		"txId", p.id, "held", len(p.parts), "of", p.n)
	return a.deliver(p.items(), false)
}
