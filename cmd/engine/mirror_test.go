package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/wfpnats/wfp/events"
	"github.com/wfpnats/wfp/internal/testkit"
	"github.com/wfpnats/wfp/jetstream"
)

// engine mirror, run against a site's leaf node, creates the mirror of
// the hub's log there; run again it finds it; a stream of that name that
// is not the mirror is refused, not converted.
func TestMirrorCommand(t *testing.T) {
	s := testkit.NewSite(t)
	hubJS := testkit.JetStream(t, s.Hub.Connect(t, ""))
	ctx := context.Background()
	if _, err := jetstream.EnsureStream(ctx, hubJS, jetstream.StreamConfig{}); err != nil {
		t.Fatal(err)
	}
	if _, err := hubJS.Publish(ctx, events.DefaultPrefix+".filter._.x", nil); err != nil {
		t.Fatal(err)
	}
	mirror := func(args ...string) (string, error) {
		var stdout, stderr bytes.Buffer
		err := run(ctx, append([]string{"mirror", "--server", s.Leaf.ClientURL()}, args...), nil, &stdout, &stderr)
		return stdout.String(), err
	}
	if _, err := mirror(); err == nil || !strings.Contains(err.Error(), "--hub-domain") {
		t.Fatalf("without --hub-domain: %v", err)
	}
	for range 2 {
		out, err := mirror("--hub-domain", testkit.HubDomain)
		if err != nil || !strings.HasPrefix(out, "stream WFP mirrors WFP in domain hub") {
			t.Fatalf("mirror: %q, %v", out, err)
		}
	}
	siteJS := testkit.JetStream(t, s.Leaf.Connect(t, ""))
	testkit.Eventually(t, "the mirror to copy the hub's message", func() bool {
		st, err := siteJS.Stream(ctx, "WFP")
		return err == nil && st.CachedInfo().State.LastSeq == 1
	})
	if _, err := jetstream.EnsureStream(ctx, siteJS, jetstream.StreamConfig{Name: "LOCAL", Prefix: "local"}); err != nil {
		t.Fatal(err)
	}
	if _, err := mirror("--hub-domain", testkit.HubDomain, "--name", "LOCAL"); !errors.Is(err, jetstream.ErrNotAMirror) {
		t.Fatalf("over a stream that is not the mirror: %v, want ErrNotAMirror", err)
	}
}
