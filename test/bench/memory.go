package main

import (
	"context"
	"fmt"

	"github.com/wfpnats/wfp/jetstream"
)

// memory is scenario 6: heap bytes per live filter in the engine and in a
// replay agent, each in its own process, against a plain
// map[uint64]*events.Filter of the same filters decoded from the log (what
// the data costs in Go with no engine around it).
func (b *bench) memory(ctx context.Context, cfg jetstream.StreamConfig, calloutKey string, n int) error {
	res := map[string]childResult{}
	for _, kind := range []string{kindMemRaw, kindMemEngine, kindMemAgent} {
		r, _, err := b.runChild(ctx, childSpec{Kind: kind, Stream: cfg.Name, Prefix: cfg.Prefix, Callout: calloutKey, N: n, Want: -1})
		if err != nil {
			return err
		}
		b.logf("memory: %s: %.0f B/filter (%d filters, heap %d -> %d)", kind, r.PerFilter, r.Filters, r.HeapBefore, r.HeapAfter)
		res[kind] = r
	}
	raw := res[kindMemRaw].PerFilter
	base := "map[id]*events.Filter of the decoded events"
	note := fmt.Sprintf("HeapAlloc after 2×GC in a child process, minus the same before start, over %d filters; the agent's handler keeps no Context", n)
	b.report.add(newFigure("memory", "memory_engine", "engine heap per live filter", unitBytes,
		res[kindMemEngine].PerFilter, raw, base, oursAtMost(1024, unitBytes), note))
	b.report.add(newFigure("memory", "memory_agent", "replay agent heap per live filter", unitBytes,
		res[kindMemAgent].PerFilter, raw, base, oursAtMost(600, unitBytes), ""))
	return nil
}
