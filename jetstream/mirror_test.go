package jetstream

import (
	"context"
	"testing"
)

// A site's mirror compacts as the log does: it allows roll-ups and TTLs
// (without them the server stores a delete's roll-up as a plain message
// and keeps the add it replaced), and a mirror made before is updated.
// The origin's domain need not answer for the configuration to be made.
func TestMirrorCompactsAsTheLogDoes(t *testing.T) {
	js := connectJS(t, startServer(t))
	ctx := context.Background()
	cfg := MirrorConfig{OriginDomain: "hub"}.WithDefaults()
	old := cfg.natsConfig()
	old.AllowRollup, old.AllowMsgTTL = false, false
	if _, err := js.CreateStream(ctx, old); err != nil {
		t.Fatal(err)
	}
	s, err := EnsureMirror(ctx, js, MirrorConfig{OriginDomain: "hub"})
	if err != nil {
		t.Fatal(err)
	}
	if c := s.CachedInfo().Config; !c.AllowRollup || !c.AllowMsgTTL || c.DenyPurge {
		t.Fatalf("mirror allows roll-ups %v, TTLs %v, denies purge %v; want true, true, false", c.AllowRollup, c.AllowMsgTTL, c.DenyPurge)
	}
}
