package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wfpnats/wfp/callout"
	"github.com/wfpnats/wfp/events"
)

// filterContext is this agent's per-filter state, made at add, used at
// classify and handed back at delete, as the seed's FILTER_CONTEXT: it
// counts the classify calls about its filter.
type filterContext struct {
	addedAt time.Time
	hits    atomic.Uint64
}

// line is one notification on stdout.
type line struct {
	Notify     string `json:"notify"`
	FilterKey  string `json:"filterKey,omitempty"`
	FilterID   uint64 `json:"filterId,omitempty"`
	Initial    bool   `json:"initial"`
	HadContext bool   `json:"hadContext"`
	// Error is set on an add the agent refused (--reject-adds): the error
	// its handler returned, which the engine gets as the reason (R7).
	Error string `json:"error,omitempty"`
	// Reason is set on a delete the engine made on its own, e.g. of a
	// filter an agent refused.
	Reason string `json:"reason,omitempty"`
	// Hits, on a delete, is the count the filter's context kept: how many
	// classify calls this agent answered about it (absent when none).
	Hits uint64 `json:"hits,omitempty"`
}

// printer writes JSON lines, one Write each (stdout is unbuffered, so each
// line is out at once), and the synced line exactly once and before any
// live notification.
type printer struct {
	mu          sync.Mutex
	enc         *json.Encoder
	wroteSynced bool
}

func newPrinter(w io.Writer) *printer { return &printer{enc: json.NewEncoder(w)} }

func (p *printer) print(l line) {
	p.mu.Lock()
	defer p.mu.Unlock()
	// A notification that is not from the snapshot means Synced is closed,
	// even if the goroutine watching it has not printed yet.
	if !l.Initial && !p.wroteSynced {
		p.writeSynced()
	}
	_ = p.enc.Encode(l)
}

func (p *printer) synced() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.wroteSynced {
		p.writeSynced()
	}
}

func (p *printer) writeSynced() {
	p.wroteSynced = true
	_ = p.enc.Encode(map[string]string{"notify": "synced"})
}

// handler prints every notification. An add whose filter name contains
// rejectAdds (if set) is refused: the handler returns an error, so the
// SDK does not hold the filter and the engine takes it back (R7).
func handler(out *printer, log *slog.Logger, rejectAdds string) callout.Handler {
	return callout.HandlerFunc(func(_ context.Context, t callout.NotifyType, f *callout.Filter) error {
		switch t {
		case callout.AddFilter:
			l := line{Notify: t.String(), FilterKey: f.Key, FilterID: f.ID, Initial: f.Initial}
			if rejectAdds != "" && strings.Contains(f.Name, rejectAdds) {
				err := fmt.Errorf("refusing filter %q: name contains %q", f.Name, rejectAdds)
				l.Error = err.Error()
				out.print(l)
				return err
			}
			f.Context = &filterContext{addedAt: time.Now()}
			out.print(l)
		case callout.AddFilterPostCommit:
			_, ok := f.Context.(*filterContext)
			out.print(line{Notify: t.String(), FilterKey: f.Key, FilterID: f.ID, Initial: f.Initial, HadContext: ok})
		case callout.DeleteFilter:
			fc, ok := f.Context.(*filterContext)
			var hits uint64
			if ok {
				hits = fc.hits.Load()
				log.Debug("freeing filter context", "filterId", f.ID, "age", time.Since(fc.addedAt), "hits", hits)
				f.Context = nil
			}
			out.print(line{Notify: t.String(), FilterKey: f.Key, FilterID: f.ID, Initial: f.Initial, HadContext: ok, Reason: f.Reason, Hits: hits})
		}
		// Any other type: ignore and succeed, as the seed asks (R5).
		return nil
	})
}

// classifier answers classify calls with the context the filter's add
// made: it counts the hit and says the count in its note. The verdict is
// what the filter's action asks of a callout that only watches: an
// inspection or unknown callout lets evaluation go on, a terminating one,
// which must decide, permits.
func classifier() callout.Classifier {
	return callout.ClassifierFunc(func(_ context.Context, f *callout.Filter, _ callout.Fields) (callout.Verdict, error) {
		fc, ok := f.Context.(*filterContext)
		if !ok {
			return callout.Verdict{}, fmt.Errorf("filter %d has no context", f.ID)
		}
		note := fmt.Sprintf("hits=%d", fc.hits.Add(1))
		if f.Action == events.ActionCalloutTerminating {
			return callout.Permit.WithNote(note), nil
		}
		return callout.Continue.WithNote(note), nil
	})
}
