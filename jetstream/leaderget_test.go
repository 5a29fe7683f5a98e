package jetstream

import (
	"errors"
	"testing"
)

func TestLeaderGetFindsTheNextStoredMessage(t *testing.T) {
	js, s := setupStream(t)
	for _, subj := range []string{"wfp.filter._.a", "wfp.filter._.b", "wfp.filter._.c"} {
		if _, err := js.PublishMsg(testCtx(t), newMsg(subj, "")); err != nil {
			t.Fatal(err)
		}
	}
	seq, subj, err := LeaderGet(testCtx(t), js, s.CachedInfo().Config.Name, 2)
	if err != nil || seq != 2 || subj != "wfp.filter._.b" {
		t.Fatalf("LeaderGet(2) = %d %q %v", seq, subj, err)
	}
	if _, _, err := LeaderGet(testCtx(t), js, s.CachedInfo().Config.Name, 4); !errors.Is(err, ErrNoMessage) {
		t.Fatalf("past the end: %v, want ErrNoMessage", err)
	}
	if _, _, err := LeaderGet(testCtx(t), js, "NOPE", 1); err == nil || errors.Is(err, ErrNoMessage) {
		t.Fatalf("no such stream: %v", err)
	}
}
