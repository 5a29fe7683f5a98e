package engine

import (
	"container/heap"
	"context"
	"log/slog"
	"sync"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/wfpnats/wfp/jetstream"
)

// janitor purges the subjects of plain tombstones (see compact.go) once
// the horizon has passed since they were stored: the add and the
// tombstone go, as a rolled-up tombstone's TTL would have taken it. Its
// work list is derived from the log (every plain tombstone the engine
// writes or folds is scheduled), so a restarted engine picks it up again.
//
// A purge names the tombstone's sequence as its upper bound, so a filter
// added again on the same subject since is never touched; purging twice,
// or a subject another engine purged already, is harmless.
type janitor struct {
	stream  natsjs.Stream
	js      natsjs.JetStream
	archive string
	log     *slog.Logger
	timeout time.Duration
	purged  func() // counts a purge

	mu    sync.Mutex
	due   purgeHeap
	wake  chan struct{}
	quit  chan struct{}
	done  chan struct{}
	start sync.Once
}

type purge struct {
	subject string
	seq     uint64 // the tombstone: purge the subject up to it
	at      time.Time
}

func newJanitor(stream natsjs.Stream, js natsjs.JetStream, archive string, log *slog.Logger, timeout time.Duration, purged func()) *janitor {
	return &janitor{stream: stream, js: js, archive: archive, log: log, timeout: timeout, purged: purged,
		wake: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{})}
}

// schedule asks for subject to be purged up to seq at time at.
func (j *janitor) schedule(subject string, seq uint64, at time.Time) {
	j.mu.Lock()
	heap.Push(&j.due, purge{subject: subject, seq: seq, at: at})
	j.mu.Unlock()
	j.start.Do(func() { go j.run() })
	select {
	case j.wake <- struct{}{}:
	default:
	}
}

// pending is how many purges are waiting.
func (j *janitor) pending() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	return len(j.due)
}

// stop ends the janitor; purges not done yet are the next engine's.
func (j *janitor) stop() {
	close(j.quit)
	started := true
	j.start.Do(func() { started = false })
	if started {
		<-j.done
	}
}

// retryAfter is how long a purge that failed waits before the next try.
const retryAfter = 5 * time.Second

func (j *janitor) run() {
	defer close(j.done)
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		j.mu.Lock()
		var next purge
		ready := len(j.due) > 0
		if ready {
			next = j.due[0]
		}
		j.mu.Unlock()
		wait := time.Hour
		if ready {
			wait = time.Until(next.at)
		}
		if wait <= 0 {
			j.do(next) // done, or moved back by retryAfter
			continue
		}
		t.Reset(wait)
		select {
		case <-t.C:
		case <-j.wake:
		case <-j.quit:
			return
		}
		if !t.Stop() {
			select {
			case <-t.C:
			default:
			}
		}
	}
}

// do purges p's subject and drops p from the list, or moves it back to be
// tried again later (the archive has not got it yet, or the server did
// not answer).
func (j *janitor) do(p purge) {
	ctx, cancel := context.WithTimeout(context.Background(), j.timeout)
	defer cancel()
	if j.archive != "" {
		n, err := jetstream.ArchivedThrough(ctx, j.js, j.archive)
		if err != nil || n < p.seq {
			j.log.Warn("engine: the archive does not have a delete yet; its purge waits", "subject", p.subject, "seq", p.seq, "archivedThrough", n, "err", err)
			j.reschedule(p)
			return
		}
	}
	if err := j.stream.Purge(ctx, natsjs.WithPurgeSubject(p.subject), natsjs.WithPurgeSequence(p.seq+1)); err != nil {
		j.log.Warn("engine: purging a deleted filter's subject", "subject", p.subject, "seq", p.seq, "err", err)
		j.reschedule(p)
		return
	}
	j.mu.Lock()
	if len(j.due) > 0 && j.due[0] == p {
		heap.Pop(&j.due)
	}
	j.mu.Unlock()
	j.purged()
}

// reschedule moves p to the back of the wait.
func (j *janitor) reschedule(p purge) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if len(j.due) > 0 && j.due[0] == p {
		j.due[0].at = time.Now().Add(retryAfter)
		heap.Fix(&j.due, 0)
	}
}

// purgeHeap orders purges by due time.
type purgeHeap []purge

func (h purgeHeap) Len() int           { return len(h) }
func (h purgeHeap) Less(i, k int) bool { return h[i].at.Before(h[k].at) }
func (h purgeHeap) Swap(i, k int)      { h[i], h[k] = h[k], h[i] }
func (h *purgeHeap) Push(x any)        { *h = append(*h, x.(purge)) }
func (h *purgeHeap) Pop() any {
	old := *h
	p := old[len(old)-1]
	*h = old[:len(old)-1]
	return p
}
