package test

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// step is one command of the README walkthrough and what it should print.
type step struct {
	cmd  string
	want []string
}

// walkthrough reads the ```console blocks of the README's Walkthrough
// section: lines starting with "$ " are commands, the lines after one are
// its output.
func walkthrough(t *testing.T) []step {
	t.Helper()
	data, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	start := strings.Index(text, "\n## Walkthrough")
	if start < 0 {
		t.Fatal("README has no Walkthrough section")
	}
	text = text[start+1:]
	if end := strings.Index(text[3:], "\n## "); end >= 0 {
		text = text[:end+3]
	}
	var steps []step
	in := false
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "```console":
			in = true
		case in && line == "```":
			in = false
		case in && strings.HasPrefix(line, "$ "):
			steps = append(steps, step{cmd: line[2:]})
		case in:
			s := &steps[len(steps)-1]
			s.want = append(s.want, line)
		}
	}
	if len(steps) < 10 {
		t.Fatalf("found only %d walkthrough commands", len(steps))
	}
	return steps
}

// linePattern turns an expected line into a regexp: "…" (and the padding
// after it) stands for any text.
func linePattern(line string) *regexp.Regexp {
	parts := regexp.MustCompile(`… *`).Split(strings.TrimRight(line, " "), -1)
	for i, p := range parts {
		parts[i] = regexp.QuoteMeta(p)
	}
	return regexp.MustCompile("^" + strings.Join(parts, ".*") + "$")
}

func trimLines(lines []string) []string {
	for i := range lines {
		lines[i] = strings.TrimRight(lines[i], " \r")
	}
	for len(lines) > 0 && lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	return lines
}

// matches compares output with the expected lines, in order or, for
// output whose line order varies (nats sub prints headers from a map), as
// a multiset.
func matches(got, want []string, ordered bool) bool {
	got, want = trimLines(got), trimLines(append([]string(nil), want...))
	if len(got) != len(want) {
		return false
	}
	used := make([]bool, len(got))
	for i, w := range want {
		re := linePattern(w)
		if ordered {
			if !re.MatchString(got[i]) {
				return false
			}
			continue
		}
		found := false
		for j, g := range got {
			if !used[j] && re.MatchString(g) {
				used[j], found = true, true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// The README's walkthrough, run as a new user would paste it, against a
// fresh engine binary: every command prints what the README shows.
func TestReadmeWalkthrough(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	if err := os.Mkdir(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range []string{"cmd/engine", "cmd/callout-agent"} {
		if err := os.Symlink(binary(t, cmd), filepath.Join(bin, filepath.Base(cmd))); err != nil {
			t.Fatal(err)
		}
	}
	nats := binary(t, "github.com/nats-io/natscli/nats") // what `go tool nats` runs
	eng := runEngine(t, filepath.Join(dir, "data"))
	env := append(os.Environ(), "NATS_URL="+eng.url)
	assign := regexp.MustCompile(`^([A-Z_]+)=(\S+)$`)

	var background []*exec.Cmd
	for _, s := range walkthrough(t) {
		cmdline := strings.ReplaceAll(s.cmd, "go tool nats", nats)
		switch {
		case strings.HasPrefix(cmdline, "go build "):
			continue // the test built bin/ itself
		case assign.MatchString(cmdline):
			env = append(env, cmdline)
			continue
		case strings.HasSuffix(cmdline, " &"):
			c := exec.Command("bash", "-c", "exec "+strings.TrimSuffix(cmdline, " &"))
			c.Dir, c.Env = dir, env
			if err := c.Start(); err != nil {
				t.Fatal(err)
			}
			background = append(background, c)
			t.Cleanup(func() { _ = c.Process.Kill(); _ = c.Wait() })
			continue
		}
		// Agents print and register asynchronously: reading commands (a
		// cat or tail of their output, a list) are retried until they show what
		// the README says, or the deadline passes. Writes run once.
		retry := strings.HasPrefix(cmdline, "cat ") || strings.HasPrefix(cmdline, "tail ") || strings.HasSuffix(cmdline, " list")
		deadline := time.Now().Add(20 * time.Second)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			c := exec.CommandContext(ctx, "bash", "-c", cmdline)
			c.Dir, c.Env = dir, env
			out, err := c.CombinedOutput()
			cancel()
			got := strings.Split(string(out), "\n")
			// A refusal shown in the README must also exit non-zero.
			wantsFailure := len(s.want) > 0 && strings.HasPrefix(s.want[0], "engine: FWP_")
			if matches(got, s.want, !strings.Contains(cmdline, "nats sub")) && wantsFailure == (err != nil) {
				break
			}
			if !retry || time.Now().After(deadline) {
				t.Fatalf("$ %s\nexit: %v (README implies failure: %v)\nprinted:\n%s\nREADME shows:\n%s",
					s.cmd, err, wantsFailure, out, strings.Join(s.want, "\n"))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	// "Stop the agents with kill": SIGTERM closes them cleanly, exit 0.
	for _, c := range background {
		_ = c.Process.Signal(syscall.SIGTERM)
		if err := c.Wait(); err != nil {
			t.Fatalf("agent %v exited with %v after SIGTERM", c.Args, err)
		}
	}
}

// The README's command list is what the commands print with --help: every
// command, and every flag each takes. The usage is generated from the
// flag sets, so this keeps the README in step with the flags too.
func TestReadmeCommandsMatchTheUsage(t *testing.T) {
	data, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	start := strings.Index(text, "\n## Commands\n")
	if start < 0 {
		t.Fatal("README has no Commands section")
	}
	text = text[start:]
	block := text[strings.Index(text, "\n```\n")+5:]
	block = block[:strings.Index(block, "```\n")]
	var usage strings.Builder
	for _, cmd := range []string{"cmd/engine", "cmd/callout-agent"} {
		out, err := exec.Command(binary(t, cmd), "--help").Output()
		if err != nil {
			t.Fatalf("%s --help: %v", cmd, err)
		}
		help := string(out)
		lines := help[strings.Index(help, "usage:\n")+len("usage:\n"):]
		for _, l := range strings.Split(lines[:strings.Index(lines, "\n\n")], "\n") {
			usage.WriteString(strings.TrimPrefix(l, "  ") + "\n")
		}
	}
	if block != usage.String() {
		t.Fatalf("README's command list:\n%s\nwhat the commands print with --help:\n%s", block, usage.String())
	}
}
