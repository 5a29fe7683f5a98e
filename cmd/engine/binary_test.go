package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wfpnats/wfp/callout"
	"github.com/wfpnats/wfp/internal/testkit"
)

var built struct {
	once sync.Once
	path string
	err  error
}

// engineBinary builds the engine command once per test run.
func engineBinary(t *testing.T) string {
	t.Helper()
	built.once.Do(func() {
		goBin, err := exec.LookPath("go")
		if err != nil {
			goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
		}
		dir, err := os.MkdirTemp("", "wfp-engine-bin-")
		if err != nil {
			built.err = err
			return
		}
		built.path = filepath.Join(dir, "engine")
		if out, err := exec.Command(goBin, "build", "-o", built.path, ".").CombinedOutput(); err != nil {
			built.err = errors.New(string(out))
		}
	})
	if built.err != nil {
		t.Fatalf("go build: %v", built.err)
	}
	return built.path
}

func TestMain(m *testing.M) {
	code := m.Run()
	if built.path != "" {
		os.RemoveAll(filepath.Dir(built.path))
	}
	os.Exit(code)
}

// exe runs the engine binary with args and returns its exit status,
// stdout and stderr.
func exe(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, engineBinary(t), args...)
	cmd.Env = append(os.Environ(), "NATS_URL=")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("engine %q: %v", args, err)
	}
	return cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()
}

// Every command and group of commands answers --help on stdout with exit
// status 0, and the help names every flag the command takes.
func TestEveryCommandAnswersHelp(t *testing.T) {
	p := program(nil, io.Discard, io.Discard)
	for _, c := range p.Commands {
		fs := flag.NewFlagSet(c.Name, flag.ContinueOnError)
		c.Flags(fs)
		for _, help := range []string{"--help", "-h"} {
			args := append(strings.Fields(c.Name), help)
			code, out, errOut := exe(t, args...)
			if code != 0 || errOut != "" || !strings.HasPrefix(out, "usage:\n  engine ") || !strings.Contains(out, c.Summary) {
				t.Errorf("engine %s: exit %d, stdout %q, stderr %q", strings.Join(args, " "), code, out, errOut)
				continue
			}
			fs.VisitAll(func(f *flag.Flag) {
				if !strings.Contains(out, "\n  --"+f.Name+" ") && !strings.Contains(out, "\n  --"+f.Name+"\n") {
					t.Errorf("engine %s does not describe --%s:\n%s", strings.Join(args, " "), f.Name, out)
				}
			})
		}
	}
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}, {"help", "filter", "add"}, {"callout", "--help"}, {"filter", "--help"},
		{"session", "--help"}, {"permissions", "--help"}, {"tx", "--help"}} {
		if code, out, errOut := exe(t, args...); code != 0 || errOut != "" || !strings.HasPrefix(out, "usage:") && !strings.HasPrefix(out, "engine: ") {
			t.Errorf("engine %s: exit %d, stdout %q, stderr %q", strings.Join(args, " "), code, out, errOut)
		}
	}
	// The program's help lists every command.
	_, out, _ := exe(t, "--help")
	for _, c := range p.Commands {
		if !strings.Contains(out, "  engine "+c.Name) && !strings.Contains(out, "  engine ["+c.Name+"]") {
			t.Errorf("engine --help does not list %s", c.Name)
		}
	}
}

// --version prints the version, exit status 0.
func TestVersion(t *testing.T) {
	code, out, errOut := exe(t, "--version")
	if code != 0 || errOut != "" || !strings.HasPrefix(out, "engine ") || strings.Count(out, "\n") != 1 || len(out) < len("engine x\n") {
		t.Fatalf("engine --version: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

// A command line that is wrong says so in one line, then where to look,
// and exits 2 having done nothing.
func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		err  string
		hint string
	}{
		{[]string{"filter", "add", "--bogus"}, "engine: filter add: flag provided but not defined: --bogus", "engine filter add"},
		{[]string{"filter", "add", "--name", "x", "--layer", "L"}, "engine: filter add: --action is required", "engine filter add"},
		{[]string{"filter", "delete"}, "engine: filter delete: give --key or --id", "engine filter delete"},
		{[]string{"filter", "list", "extra"}, `engine: filter list: unexpected argument "extra"`, "engine filter list"},
		{[]string{"callout"}, "engine: callout: needs a command: add, delete, get, list", "engine callout"},
		{[]string{"callout", "remove"}, `engine: callout: unknown command "remove"; want add, delete, get, list`, "engine callout"},
		{[]string{"bogus"}, `engine: unknown command "bogus"`, "engine"},
		{[]string{"tx", "apply"}, "engine: tx apply: missing FILE.json", "engine tx apply"},
		{[]string{"serve", "--sync", "never"}, `engine: serve: invalid value "never" for flag --sync: want "always" or a positive interval such as 1s, got "never"`, "engine serve"},
		{[]string{"--log-format", "xml"}, `engine: serve: invalid value "xml" for flag --log-format: want text or json, got "xml"`, "engine serve"},
		{[]string{"session", "open"}, "engine: session open: --dynamic is required", "engine session open"},
		{[]string{"permissions", "agent", "--callout", "x", "--agent-id", "a"}, "engine: permissions agent: ", "engine permissions agent"},
	} {
		code, out, errOut := exe(t, tc.args...)
		lines := strings.Split(strings.TrimSuffix(errOut, "\n"), "\n")
		if code != 2 || out != "" || len(lines) != 2 || !strings.HasPrefix(lines[0], tc.err) || lines[1] != "run '"+tc.hint+" --help'" {
			t.Errorf("engine %s: exit %d, stdout %q, stderr:\n%s\nwant exit 2, %q and the hint to %s --help",
				strings.Join(tc.args, " "), code, out, errOut, tc.err, tc.hint)
		}
	}
}

// tx apply exits with exitRejected when the transaction committed but an
// agent rejected one of its filters, and 0 when none was.
func TestTxApplyExitsWithItsCodeWhenAnOperationWasRejected(t *testing.T) {
	c := newCLI(t)
	c.ok("callout", "add", "--key", calloutKey, "--name", "inspector")
	nc := testkit.Dial(t, c.url)
	agent, err := callout.Register(context.Background(), testkit.JetStream(t, nc), calloutKey,
		callout.HandlerFunc(func(_ context.Context, nt callout.NotifyType, f *callout.Filter) error {
			if nt == callout.AddFilter && strings.Contains(f.Name, "ftp") {
				return errors.New("no ftp")
			}
			return nil
		}), callout.WithAgentID("strict"), callout.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	defer agent.Close()
	testkit.Eventually(t, "the agent to be listed", func() bool { return strings.Contains(c.ok("callout", "list"), "strict (live)") })

	dir := t.TempDir()
	tx := func(name string) string {
		return `[{"op":"filter.add","filter":{"name":"` + name + `","layer":"ALE_AUTH_CONNECT_V4","action":"callout-inspection","calloutKey":"` + calloutKey + `"}}]`
	}
	writeFile(t, filepath.Join(dir, "ok.json"), tx("smtp"))
	writeFile(t, filepath.Join(dir, "rejected.json"), tx("ftp data"))
	if code, out, errOut := exe(t, "tx", "apply", filepath.Join(dir, "ok.json"), "--server", c.url); code != 0 || errOut != "" {
		t.Fatalf("tx apply of an accepted filter: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut := exe(t, "tx", "apply", filepath.Join(dir, "rejected.json"), "--server", c.url)
	if code != exitRejected || errOut != "" || !strings.Contains(out, "committed 1 operation(s)") ||
		!strings.Contains(out, "rejected filter") || !strings.Contains(out, "agent strict: no ftp (deleted again)") {
		t.Fatalf("tx apply of a rejected filter: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, exitRejected, out, errOut)
	}
}
