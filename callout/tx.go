package callout

import (
	"cmp"
	"errors"
	"log/slog"
	"slices"
	"time"

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
	d       *delivery
	seq     uint64
	initial bool
	last    bool // the server had nothing after it when it delivered it
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
func (a *Agent) txHeaders(d *delivery, seq uint64, warn bool) (id string, i, n int, ok bool) {
	h := d.header
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
				"subject", d.subject, "seq", seq, "txId", id, "txPart", part, "err", err)
		}
		return "", 0, 0, false
	}
	return id, i, n, true
}

// unit is what the handler gets in one go: one message, or the parts of a
// transaction (tx) with nothing between them.
type unit struct {
	items []item
	tx    bool // every part of a transaction: post-commit notifications follow
}

func single(it item) unit { return unit{items: []item{it}} }

// assembler groups live messages into units: a message outside any
// transaction is a unit of its own, the parts of a transaction are held
// until all n have come. It does no I/O; the agent delivers what it
// returns, in order.
type assembler struct {
	held *pendingTx // the transaction whose parts are being held
	// broken is a transaction whose parts are not all coming together:
	// its held parts were delivered early (another message came first, or
	// the rest did not come in time), or it was being written when the
	// replay snapshot was taken. Its stragglers are delivered as they come.
	broken string
	log    *slog.Logger
	n      *counters
}

// holding reports whether parts are held, so the reader waits for the
// rest only so long (txHoldTimeout).
func (as *assembler) holding() bool { return as.held != nil }

// push takes one live message; tx says whether it carried valid
// transaction headers (id, part i of n). It returns the units ready now.
func (as *assembler) push(it item, id string, i, n int, tx bool) []unit {
	if !tx || id == as.broken {
		// One server writes a transaction in one piece, so parts held
		// while something else arrives should not happen; never wait for
		// good on them.
		return append(as.flush("a message outside it arrived first"), single(it))
	}
	var out []unit
	if as.held != nil && as.held.id != id {
		out = as.flush("a message of another transaction arrived first")
	}
	if as.held == nil {
		if i != 1 {
			// Delivery is in log order, so parts before i lie before where
			// this agent started reading (a live agent registered, or a
			// durable was created, while the batch was being stored): they
			// are not coming. Deliver the rest together.
			as.log.Info("transaction began before this agent's first message; holding the parts from here on",
				"txId", id, "from", i, "of", n, "seq", it.seq)
		}
		as.held = newPendingTx(id, i, n)
	}
	it.d.kept = true // held with the transaction's parts, past its dispatch
	switch as.held.put(i, n, it) {
	case putDuplicate:
		// Redelivered (a durable consumer recreated under us): held already.
		// Not delivered again, nor acked: with AckAll its ack would cover
		// the held parts too.
		as.n.duplicates.Add(1)
		return out
	case putMismatch:
		as.log.Warn("transaction part does not fit the parts held; treating it as outside any transaction",
			"txId", id, "txPart", events.TxPart(i, n), "seq", it.seq, "heldOf", as.held.n)
		return append(append(out, as.flush("a part that does not fit arrived")...), single(it))
	}
	as.n.heldTxParts.Store(int64(len(as.held.parts)))
	if !as.held.complete() {
		return out
	}
	p := as.held
	as.held = nil
	as.n.heldTxParts.Store(0)
	return append(out, unit{items: p.items(), tx: true})
}

// flush gives up waiting for the rest of the held transaction and returns
// its parts as one unit, so that the agent never waits for good; the
// transaction's later parts, if any come, are delivered as they come.
func (as *assembler) flush(why string) []unit {
	p := as.held
	if p == nil {
		return nil
	}
	as.held = nil
	as.n.heldTxParts.Store(0)
	as.broken = p.id
	as.log.Warn("transaction incomplete: delivering the parts held so far, because "+why,
		"txId", p.id, "held", len(p.parts), "of", p.n)
	return []unit{{items: p.items()}}
}
