package main

import (
	"testing"
	"time"

	"github.com/wfpnats/wfp/internal/testkit"
)

// The fault suite in its short form (go run ./test/chaos -short): every
// scenario, one fault each, real processes. It fails on any acknowledged
// loss, duplicate or divergence, or a scenario that cannot finish.
func TestChaosShort(t *testing.T) {
	var out testkit.SyncBuffer
	cfg := config{rounds: 1, callers: 6, step: 15, within: 2 * time.Minute, log: &out}
	ok, err := Run(cfg, scenarios, t.TempDir(), &out)
	t.Log("\n" + out.String())
	if err != nil {
		t.Fatal(err)
	}
	if !ok {
		t.Fatal("a scenario lost, duplicated or diverged, or did not finish: see the report above")
	}
}
