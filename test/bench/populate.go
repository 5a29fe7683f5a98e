package main

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"runtime/debug"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/wfpnats/wfp/events"
	"github.com/wfpnats/wfp/jetstream"
)

// populator writes events straight to a stream, bypassing the engine, to
// build large logs quickly. It writes what the engine writes (the same
// events.Subjects.Message: subject, payload, headers) and predicts each
// FilterAdded's sequence, because the filter id is that sequence: it is the
// stream's only writer and publishes in order on one connection, so the
// k-th publish lands at last+k. finish checks that it did.
//
// A FilterDeleted is compacted as the engine compacts it: it rolls up the
// filter's subject (the add leaves the stream) and expires after the
// stream's horizon (ttl).
//
// One difference, on purpose: the Nats-Msg-Id header is renamed to
// standInMsgIDHeader, a header of the same length the server ignores. Written
// in seconds instead of months, millions of ids would sit in the server's
// two-minute duplicate table while the readers are timed, a cost no real
// log has; the readers still get messages of exactly the engine's size.
// The harness also lets the garbage collector run less often while it
// populates (populating is not timed).
//
// Encoding runs on the caller's goroutine and publishing on another, in
// order through a channel, so the two overlap.
type populator struct {
	js     natsjs.JetStream
	stream natsjs.Stream
	subj   events.Subjects
	failed *atomic.Int64
	first  uint64 // sequence of the first publish
	next   uint64 // sequence the next publish gets
	ttl    time.Duration
	lastOn map[string]uint64 // per callout, the last filter event (events.HeaderPrev)

	out     chan *nats.Msg
	pubDone chan struct{}
	pubErr  error // set by the publishing goroutine before pubDone closes
	gc      int   // GC percent to restore
}

// standInMsgIDHeader replaces Nats-Msg-Id in populated logs (same length).
const standInMsgIDHeader = "Bnch-Msg-Id"

func (b *bench) newPopulator(ctx context.Context, cfg jetstream.StreamConfig) (*populator, error) {
	failed := new(atomic.Int64)
	jc, err := b.jsConnect("populate-"+cfg.Name,
		natsjs.WithPublishAsyncErrHandler(func(natsjs.JetStream, *nats.Msg, error) { failed.Add(1) }),
		natsjs.WithPublishAsyncMaxPending(8192))
	if err != nil {
		return nil, err
	}
	s, err := jc.js.Stream(ctx, cfg.Name)
	if err != nil {
		return nil, err
	}
	last := s.CachedInfo().State.LastSeq
	p := &populator{js: jc.js, stream: s, subj: events.Subjects{Prefix: cfg.Prefix}, failed: failed, ttl: cfg.Horizon,
		first: last + 1, next: last + 1, lastOn: map[string]uint64{}, out: make(chan *nats.Msg, 4096), pubDone: make(chan struct{}),
		gc: debug.SetGCPercent(400)}
	go p.publisher()
	return p, nil
}

// publisher publishes what publish encodes, in order, until out closes.
func (p *populator) publisher() {
	defer close(p.pubDone)
	for msg := range p.out {
		if p.pubErr != nil {
			continue // drain
		}
		for {
			_, err := p.js.PublishMsgAsync(msg)
			if err == nil {
				break
			}
			if !errors.Is(err, natsjs.ErrTooManyStalledMsgs) {
				p.pubErr = fmt.Errorf("populate: publish: %w", err)
				break
			}
		}
	}
}

// publish encodes ev and queues it; the k-th event queued lands at first+k-1.
func (p *populator) publish(ev *events.Event) error {
	var prev uint64
	if ev.Filter != nil {
		prev = p.lastOn[ev.Filter.CalloutKey]
		p.lastOn[ev.Filter.CalloutKey] = p.next
	}
	m, err := populated(p.subj, ev, p.ttl, prev)
	if err != nil {
		return err
	}
	p.out <- m
	p.next++
	return nil
}

// populated is the message the populator writes for ev: the engine's,
// compacted as the engine compacts a delete with horizon ttl, a filter
// event naming prev as its callout's previous one, with Nats-Msg-Id
// renamed.
func populated(subj events.Subjects, ev *events.Event, ttl time.Duration, prev uint64) (*nats.Msg, error) {
	m, err := subj.Message(ev)
	if err != nil {
		return nil, err
	}
	if ev.Filter != nil {
		if ttl > 0 {
			m.Header[events.HeaderHorizon] = []string{events.FormatTTL(ttl)}
		}
		m.Header[events.HeaderPrev] = []string{strconv.FormatUint(prev, 10)}
	}
	if events.IsTombstone(ev.Type) {
		m.Compact(ttl)
	}
	h := nats.Header(m.Header)
	h[standInMsgIDHeader] = h[events.HeaderMsgID]
	delete(h, events.HeaderMsgID)
	return &nats.Msg{Subject: m.Subject, Data: m.Data, Header: h}, nil
}

// addCallout writes the CalloutAdded every filter event needs before it.
func (p *populator) addCallout(key string) error {
	return p.publish(events.NewCalloutEvent(events.CalloutAdded, &events.Callout{Key: key, Name: "bench callout"}))
}

// addFilters writes n FilterAdded events naming calloutKey, with ids
// predicted from the sequence. Names are numbered from base.
func (p *populator) addFilters(calloutKey string, base, n int) error {
	for i := range n {
		f := benchFilter(base+i, calloutKey)
		f.Key, f.ID = newKey(), p.next
		if err := p.publish(events.NewFilterEvent(events.FilterAdded, &f)); err != nil {
			return err
		}
	}
	return nil
}

// churn writes n filters that are added and then deleted, in blocks: a
// block of adds, then the deletes of that block (each FilterDeleted carries
// the whole filter with its id, as the engine writes it).
func (p *populator) churn(calloutKey string, base, n int) error {
	const blockSize = 1000
	block := make([]events.Filter, 0, blockSize)
	for done := 0; done < n; done += len(block) {
		block = block[:0]
		for i := 0; i < blockSize && done+i < n; i++ {
			f := benchFilter(base+done+i, calloutKey)
			f.Key, f.ID = newKey(), p.next
			block = append(block, f)
			if err := p.publish(events.NewFilterEvent(events.FilterAdded, &f)); err != nil {
				return err
			}
		}
		for i := range block {
			if err := p.publish(events.NewFilterEvent(events.FilterDeleted, &block[i])); err != nil {
				return err
			}
		}
	}
	return nil
}

// finish waits for every ack and checks that each publish landed where it
// was predicted: nothing failed and the stream ends at the last one.
func (p *populator) finish(ctx context.Context) (int, error) {
	defer func() {
		debug.SetGCPercent(p.gc)
		runtime.GC()
	}()
	close(p.out)
	<-p.pubDone
	if p.pubErr != nil {
		return 0, p.pubErr
	}
	select {
	case <-p.js.PublishAsyncComplete():
	case <-time.After(2 * time.Minute):
		return 0, fmt.Errorf("populate: %d acks still pending after 2 minutes", p.js.PublishAsyncPending())
	}
	if n := p.failed.Load(); n > 0 {
		return 0, fmt.Errorf("populate: %d publishes failed, filter ids would be wrong", n)
	}
	info, err := p.stream.Info(ctx)
	if err != nil {
		return 0, err
	}
	if want := p.next - 1; info.State.LastSeq != want {
		return 0, fmt.Errorf("populate: stream ends at %d, predicted %d: filter ids would be wrong", info.State.LastSeq, want)
	}
	return int(p.next - p.first), nil
}
