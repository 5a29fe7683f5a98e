package main

import (
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/wfpnats/wfp/internal/cli"
)

func TestClassifyCommand(t *testing.T) {
	c := newCLI(t)
	c.ok("callout", "add", "--key", calloutKey, "--name", "inspector")
	c.ok("filter", "add", "--name", "inspect ssh", "--layer", "ALE_AUTH_CONNECT_V4", "--weight", "5", "--action", "callout-inspection",
		"--callout", calloutKey, "--condition", "IP_REMOTE_PORT=22")
	c.ok("filter", "add", "--name", "block ssh", "--layer", "ALE_AUTH_CONNECT_V4", "--action", "block", "--condition", "IP_REMOTE_PORT=22")
	out := c.ok("classify", "--layer", "ALE_AUTH_CONNECT_V4", "--field", "IP_REMOTE_PORT=22", "--field", "IP_PROTOCOL=6")
	want := []string{
		`^ID +WEIGHT +ACTION +VERDICT +NAME +WHY$`,
		`^2 +5 +callout-inspection +- +inspect ssh +callout ` + calloutKey + ` not registered: inspection filter skipped$`,
		`^3 +0 +block +block +block ssh +block filter$`,
		`^block: blocked by filter 3 \(block ssh\) \(as of log sequence 3\)$`,
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != len(want) {
		t.Fatalf("classify printed:\n%s", out)
	}
	for i, re := range want {
		if !regexp.MustCompile(re).MatchString(lines[i]) {
			t.Fatalf("line %d %q does not match %s; printed:\n%s", i, lines[i], re, out)
		}
	}
	if out := c.ok("classify", "--layer", "ALE_AUTH_CONNECT_V4", "--field", "IP_REMOTE_PORT=80"); out != "permit: no filter decided: permitted by default (as of log sequence 3)\n" {
		t.Fatalf("no match printed %q", out)
	}
	if _, err := c.run("classify", "--layer", "ALE_AUTH_CONNECT_V4", "--field", "IP_REMOTE_PORT=http"); err == nil ||
		!strings.Contains(err.Error(), "FWP_E_INVALID_PARAMETER: fields.IP_REMOTE_PORT") {
		t.Fatalf("bad value: %v", err)
	}
	if _, err := c.run("classify", "--layer", "ALE_AUTH_CONNECT_V4", "--field", "IP_REMOTE_PORT=1", "--field", "IP_REMOTE_PORT=2"); err == nil {
		t.Fatal("a field given twice was accepted")
	}
	if out := c.ok("callout", "list"); !regexp.MustCompile(`REGISTERED +AGENTS\n.* 1 +no +-\n`).MatchString(out) {
		t.Fatalf("callout list without agents:\n%s", out)
	}
}

func TestSessionCommands(t *testing.T) {
	c := newCLI(t)
	if _, err := c.run("session", "open"); err == nil || !strings.Contains(err.Error(), "--dynamic is required") {
		t.Fatalf("open without --dynamic: %v", err)
	}
	id := strings.TrimSpace(c.ok("session", "open", "--dynamic", "--name", "deploy", "--lease", "1m"))
	if !regexp.MustCompile(`^[0-9a-f-]{36}$`).MatchString(id) {
		t.Fatalf("session open printed %q, want the id", id)
	}
	c.ok("callout", "add", "--key", calloutKey, "--name", "dynamic", "--session", id)
	c.ok("filter", "add", "--name", "dynamic", "--layer", "ALE_AUTH_CONNECT_V4", "--action", "callout-inspection",
		"--callout", calloutKey, "--session", id)
	if out := c.ok("session", "list"); !regexp.MustCompile(id + ` +deploy +1m0s +1 +1 `).MatchString(out) {
		t.Fatalf("session list:\n%s", out)
	}
	if out := c.ok("session", "close", id); out != "closed session "+id+": deleted 1 filter(s) and 1 callout(s)\n" {
		t.Fatalf("session close printed %q", out)
	}
	if out := c.ok("filter", "list"); !strings.Contains(out, "(0 filters") {
		t.Fatalf("after the close:\n%s", out)
	}
	if _, err := c.run("session", "close", id); err == nil || !strings.Contains(err.Error(), "FWP_E_SESSION_ABORTED") {
		t.Fatalf("second close: %v", err)
	}
	if _, err := c.run("session", "keepalive", id); err == nil || !strings.Contains(err.Error(), "FWP_E_SESSION_ABORTED") {
		t.Fatalf("keepalive of a closed session: %v", err)
	}

	// run: the command sees the session in $WFP_SESSION, its exit status
	// is the command's, and the session is closed after it.
	out, err := c.run("session", "run", "--dynamic", "--", "sh", "-c", `echo "$WFP_SESSION"; exit 3`)
	var code cli.ExitCode
	if !errors.As(err, &code) || code != 3 {
		t.Fatalf("session run: %v, want the command's exit status 3", err)
	}
	if !regexp.MustCompile(`^[0-9a-f-]{36}\n$`).MatchString(out) {
		t.Fatalf("the command printed %q, want its session id", out)
	}
	if list := c.ok("session", "list"); !strings.Contains(list, "(0 open sessions") {
		t.Fatalf("session run left its session open:\n%s", list)
	}
}
