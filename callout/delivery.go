package callout

import (
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/wfpnats/wfp/events"
)

// delivery is one message of the callout's filter subjects, read and
// decoded by a feed (a consumer's pump or the live subscription) before
// the notify goroutine gets it: decoding on the feed's goroutine lets it
// overlap with the handler, and the filter is decoded straight into the
// Filter the agent will hold.
type delivery struct {
	msg     natsjs.Msg // from a consumer (acks, in-progress acks); nil from the live subscription
	subject string     // the filter subject the event is stored on
	header  nats.Header
	seq     uint64    // stream sequence
	stored  time.Time // when the stream stored it
	// From a consumer: which consumer of its reader delivered it (gen),
	// its delivery sequence, and how many messages the consumer had left
	// after it. pending 0 means the consumer had delivered all there was.
	gen, dseq, pending uint64
	// prev is the previous filter event of the callout (events.HeaderPrev),
	// when hasPrev: a live agent's gap check.
	prev    uint64
	hasPrev bool
	live    bool // from the live subscription

	ev  events.Event // decoded; ev.Filter is &f.Filter when the event has a filter
	f   *Filter      // the filter, ready for the table
	err error        // the payload did not decode (or the message had no metadata)

	// kept: something holds the delivery past its dispatch (the parts of
	// a transaction, a live message held back for a catch-up), so it is
	// not recycled.
	kept bool
}

// deliveries recycles deliveries: a replay reads one per filter, and
// each would otherwise be garbage as soon as it is handled. The Filter a
// delivery carries is not recycled: the agent holds it.
var deliveries = sync.Pool{New: func() any { return new(delivery) }}

func newDelivery() *delivery { return deliveries.Get().(*delivery) }

// recycle hands d back once the notify goroutine is done with it, unless
// something keeps it.
func (d *delivery) recycle() {
	if d.kept {
		return
	}
	*d = delivery{}
	deliveries.Put(d)
}

var errNoMetadata = errors.New("message without JetStream metadata")

// consumed makes a delivery of a consumer's message: its reply subject
// says where it is in the stream. It reads the subject without allocating
// (natsjs.Msg.Metadata splits it into a fresh slice each time).
func consumed(m natsjs.Msg, gen uint64) *delivery {
	d := newDelivery()
	d.msg, d.subject, d.header, d.gen = m, m.Subject(), m.Headers(), gen
	var ok bool
	d.seq, d.dseq, d.stored, d.pending, ok = ackMeta(m.Reply())
	if !ok {
		d.err = errNoMetadata
		return d
	}
	d.prev, d.hasPrev = prevOf(d.header)
	d.decode(m.Data())
	return d
}

// ackMeta reads a JetStream ack subject:
//
//	$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<dseq>.<ns>.<pending>
//	$JS.ACK.<domain>.<hash>.<stream>.<consumer>.<delivered>.<sseq>.<dseq>.<ns>.<pending>.<token>
func ackMeta(reply string) (seq, dseq uint64, stored time.Time, pending uint64, ok bool) {
	var tok [12]string
	n := 0
	for rest := reply; n < len(tok); n++ {
		i := strings.IndexByte(rest, '.')
		if i < 0 {
			tok[n] = rest
			n++
			break
		}
		tok[n], rest = rest[:i], rest[i+1:]
	}
	if tok[0] != "$JS" || tok[1] != "ACK" {
		return 0, 0, time.Time{}, 0, false
	}
	at := 5 // the stream sequence's token, in the short form
	switch {
	case n == 9:
	case n >= 11:
		at = 7
	default:
		return 0, 0, time.Time{}, 0, false
	}
	var err [4]error
	seq, err[0] = strconv.ParseUint(tok[at], 10, 64)
	dseq, err[1] = strconv.ParseUint(tok[at+1], 10, 64)
	ns, e := strconv.ParseInt(tok[at+2], 10, 64)
	err[2] = e
	pending, err[3] = strconv.ParseUint(tok[at+3], 10, 64)
	for _, e := range err {
		if e != nil {
			return 0, 0, time.Time{}, 0, false
		}
	}
	return seq, dseq, time.Unix(0, ns), pending, true
}

// published makes a delivery of a message of the live subscription: the
// stream's RePublish puts where it is in headers.
func published(m *nats.Msg) *delivery {
	d := newDelivery()
	d.subject, d.header, d.live = m.Header.Get(natsjs.SubjectHeader), m.Header, true
	seq, err := strconv.ParseUint(m.Header.Get(natsjs.SequenceHeader), 10, 64)
	if err != nil || d.subject == "" {
		d.subject = m.Subject
		d.err = errNoMetadata
		return d
	}
	d.seq = seq
	d.stored, _ = time.Parse(time.RFC3339Nano, m.Header.Get(natsjs.TimeStampHeaer))
	d.prev, d.hasPrev = prevOf(d.header)
	d.decode(m.Data)
	return d
}

func prevOf(h nats.Header) (uint64, bool) {
	v := h.Get(events.HeaderPrev)
	if v == "" {
		return 0, false
	}
	p, err := strconv.ParseUint(v, 10, 64)
	return p, err == nil
}

// decode decodes the payload; the filter, if any, lands in a fresh
// Filter the agent can hold as it is.
func (d *delivery) decode(data []byte) {
	f := new(Filter)
	if err := events.DecodeFilterInto(data, &d.ev, &f.Filter); err != nil {
		d.err = err
		return
	}
	if d.ev.Filter == &f.Filter {
		d.f = f
	}
}
