package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"log/slog"
	"runtime/debug"
	"slices"
	"strings"
	"testing"
)

// testProgram has a default command with a required and a repeatable
// flag, a group with a command taking one argument, and one running a
// trailing command line. Each run records what it got.
func testProgram(out *bytes.Buffer, got *[]string) *Program {
	return &Program{
		Name: "prog", Default: "serve", Stdout: out,
		Groups: []Group{{Name: "shared flags", Flags: []string{"server"}}},
		Commands: []*Command{
			{Name: "serve", Summary: "Serve.", Flags: func(fs *flag.FlagSet) Run {
				addr := fs.String("addr", "", "`ADDR` to serve on (required)")
				var tags []string
				fs.Func("tag", "a `TAG` (repeatable)", func(s string) error { tags = append(tags, s); return nil })
				return func(_ context.Context, args []string) error {
					*got = append([]string{"serve", *addr}, append(tags, args...)...)
					return nil
				}
			}},
			{Name: "item get", Args: "ID", NArgs: 1, Summary: "Get one.", Flags: func(fs *flag.FlagSet) Run {
				fs.String("server", "x", "server `URL`")
				json := fs.Bool("json", false, "print JSON")
				return func(_ context.Context, args []string) error {
					if args[0] == "0" {
						return Usagef("ID 0 is no id")
					}
					*got = []string{"get", args[0], map[bool]string{true: "json"}[*json]}
					return nil
				}
			}},
			{Name: "item run", Args: "-- CMD [ARG]...", NArgs: Trailing, Summary: "Run.", Flags: func(fs *flag.FlagSet) Run {
				v := fs.Bool("v", false, "verbose")
				return func(_ context.Context, args []string) error {
					*got = append([]string{"run", map[bool]string{true: "v"}[*v]}, args...)
					return nil
				}
			}},
		},
	}
}

func TestRun(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"--addr", "a"}, []string{"serve", "a"}},
		{[]string{"serve", "--addr", "a", "--tag", "x", "--tag", "y"}, []string{"serve", "a", "x", "y"}},
		{[]string{"item", "get", "7", "--json"}, []string{"get", "7", "json"}},
		{[]string{"item", "get", "--json", "7"}, []string{"get", "7", "json"}},
		{[]string{"item", "get", "--", "-7"}, []string{"get", "-7", ""}},
		{[]string{"item", "run", "-v", "ls", "-l"}, []string{"run", "v", "ls", "-l"}},
		{[]string{"item", "run", "--", "ls", "-l"}, []string{"run", "", "ls", "-l"}},
	} {
		var out bytes.Buffer
		var got []string
		if err := testProgram(&out, &got).Run(context.Background(), tc.args); err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("%q: ran %q (%v), want %q", tc.args, got, err, tc.want)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args      []string
		msg, hint string
	}{
		{[]string{}, "serve: --addr is required", "run 'prog serve --help'"},
		{[]string{"--nope"}, "serve: flag provided but not defined: --nope", "run 'prog serve --help'"},
		{[]string{"item", "get"}, "item get: missing ID", "run 'prog item get --help'"},
		{[]string{"item", "get", "1", "2"}, `item get: unexpected argument "2"`, "run 'prog item get --help'"},
		{[]string{"item", "get", "0"}, "item get: ID 0 is no id", "run 'prog item get --help'"},
		{[]string{"item", "run"}, "item run: missing CMD [ARG]...", "run 'prog item run --help'"},
		{[]string{"item"}, "item: needs a command: get, run", "run 'prog item --help'"},
		{[]string{"item", "put"}, `item: unknown command "put"; want get, run`, "run 'prog item --help'"},
		{[]string{"other"}, `unknown command "other"`, "run 'prog --help'"},
	} {
		var out, stderr bytes.Buffer
		var got []string
		err := testProgram(&out, &got).Run(context.Background(), tc.args)
		var ue *UsageError
		if !errors.As(err, &ue) || err.Error() != tc.msg || got != nil {
			t.Errorf("%q: %v (ran %q); want the usage error %q", tc.args, err, got, tc.msg)
			continue
		}
		if code := Exit("prog", err, &stderr); code != ExitUsage || stderr.String() != "prog: "+tc.msg+"\n"+tc.hint+"\n" {
			t.Errorf("%q: exit %d, printed %q", tc.args, code, stderr.String())
		}
	}
}

// --help at every level prints that level's help on Stdout and is no
// error; the help is made from the flag sets.
func TestHelp(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"--help"}, []string{"usage:\n  prog [serve] --addr ADDR [--tag TAG]...\n  prog item get ID [--json] [shared flags]\n  prog item run [--v] -- CMD [ARG]...\n"}},
		{[]string{"help"}, []string{"  prog item get ID [--json] [shared flags]\n"}},
		{[]string{"help", "item", "get"}, []string{"usage:\n  prog item get ID [--json] [shared flags]\n\nGet one.\n", "\nflags:\n  --json\n        print JSON\n", "\nshared flags:\n  --server URL\n        server URL (default x)\n"}},
		{[]string{"serve", "-h"}, []string{"  --addr ADDR\n        ADDR to serve on (required)\n", "  --tag TAG\n        a TAG (repeatable)\n"}},
		{[]string{"item", "--help"}, []string{"  item get  Get one.\n  item run  Run.\n"}},
		{[]string{"item", "get", "--help"}, []string{"Get one."}},
	} {
		var out bytes.Buffer
		var got []string
		if err := testProgram(&out, &got).Run(context.Background(), tc.args); err != nil || got != nil {
			t.Errorf("%q: %v (ran %q)", tc.args, err, got)
		}
		for _, w := range tc.want {
			if !strings.Contains(out.String(), w) {
				t.Errorf("%q printed:\n%s\nwant it to contain:\n%s", tc.args, out.String(), w)
			}
		}
	}
}

func TestWrap(t *testing.T) {
	words := strings.Fields(strings.Repeat("[--flag VALUE] ", 30))
	lines := wrap("prog cmd", words)
	if len(lines) < 3 || strings.Join(strings.Fields(strings.Join(lines, " ")), " ") != "prog cmd "+strings.Join(words, " ") {
		t.Fatalf("wrapped into %q", lines)
	}
	for i, l := range lines {
		if len(l) > width || (i > 0 && !strings.HasPrefix(l, "         [")) {
			t.Fatalf("line %d: %q", i, l)
		}
	}
}

func TestExit(t *testing.T) {
	var stderr bytes.Buffer
	if code := Exit("prog", nil, &stderr); code != 0 || stderr.Len() != 0 {
		t.Fatalf("nil: %d %q", code, stderr.String())
	}
	if code := Exit("prog", ExitCode(3), &stderr); code != 3 || stderr.Len() != 0 {
		t.Fatalf("ExitCode(3): %d %q", code, stderr.String())
	}
	if code := Exit("prog", errors.New("no\x1b[2J way"), &stderr); code != 1 || stderr.String() != "prog: no\\x1b[2J way\n" {
		t.Fatalf("error: %d %q", code, stderr.String())
	}
}

func TestVersion(t *testing.T) {
	for _, tc := range []struct {
		bi   debug.BuildInfo
		want string
	}{
		{debug.BuildInfo{Main: debug.Module{Version: "v1.2.3"}}, "v1.2.3"},
		{debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "abc123"}}}, "(devel) abc123"},
		{debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "abc123"}, {Key: "vcs.modified", Value: "true"}}}, "(devel) abc123+dirty"},
		{debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, "(devel)"},
	} {
		if got := version(&tc.bi); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.bi, got, tc.want)
		}
	}
	var out bytes.Buffer
	if err := (&Program{Name: "prog", Stdout: &out}).Run(context.Background(), []string{"--version"}); err != nil || out.String() != "prog "+Version()+"\n" {
		t.Fatalf("--version: %q (%v)", out.String(), err)
	}
}

func TestLogFlags(t *testing.T) {
	var l LogFlags
	fs := newFlagSet("x")
	l.Register(fs)
	if err := fs.Parse([]string{"--log-level", "warn", "--log-format", "json"}); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	log := l.Logger(&out)
	log.Info("dropped")
	log.Warn("kept", "n", 1)
	var rec map[string]any
	if err := json.Unmarshal(out.Bytes(), &rec); err != nil || rec["msg"] != "kept" || rec["level"] != "WARN" || strings.Contains(out.String(), "dropped") {
		t.Fatalf("--log-level warn --log-format json wrote %q (%v)", out.String(), err)
	}
	out.Reset()
	slog.New(l.Handler(&out, slog.LevelError)).Warn("below the handler's own minimum")
	if out.Len() != 0 {
		t.Fatalf("Handler(min error) wrote %q", out.String())
	}
	for _, bad := range [][]string{{"--log-level", "loud"}, {"--log-format", "xml"}} {
		if err := newFlagSetWithLogs().Parse(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func newFlagSetWithLogs() *flag.FlagSet {
	fs := newFlagSet("x")
	new(LogFlags).Register(fs)
	return fs
}
