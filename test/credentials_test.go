package test

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/wfpnats/wfp/internal/testkit"
	"github.com/wfpnats/wfp/jetstream/embedded"
)

// The commands authenticate the way the nats CLI does: the engine (serve),
// a management command and callout-agent, each as its own process,
// against a real server that lets nobody in without the credential.

// externalServer starts a server from conf on a loopback port.
func externalServer(t *testing.T, conf string) *embedded.Server {
	t.Helper()
	return testkit.ServerFromConfig(t, "listen: \"127.0.0.1:-1\"\n"+conf)
}

// manage runs a management command with env added to the environment.
func manage(t *testing.T, env []string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(binary(t, "cmd/engine"), args...)
	cmd.Env = append(cmd.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// roundTrip has each command connect with its credentials: the engine
// serves (started by the caller), a management command adds a callout
// and a filter, an agent sees the filter; without them, the management
// command is turned away.
func roundTrip(t *testing.T, url string, mgmt, agent []string, env []string) {
	t.Helper()
	c := uuid.NewString()
	with := func(creds []string, args ...string) []string {
		return append(append(args, "--server", url), creds...)
	}
	if out, err := manage(t, env, with(mgmt, "callout", "add", "--key", c, "--name", "c")...); err != nil {
		t.Fatalf("callout add: %v\n%s", err, out)
	}
	p := startAgentProc(t, with(agent, "--callout", c, "--agent-id", "a1")...)
	p.waitLine(t, `"notify":"synced"`)
	key := uuid.NewString()
	if out, err := manage(t, env, with(mgmt, "filter", "add", "--key", key, "--name", "f", "--layer", "ALE_AUTH_CONNECT_V4",
		"--action", "callout-inspection", "--callout", c)...); err != nil {
		t.Fatalf("filter add: %v\n%s", err, out)
	}
	p.waitLine(t, key)
	p.stop(t)
	if out, err := manage(t, env, "filter", "list", "--server", url); err == nil {
		t.Fatalf("filter list with no credentials: %s", out)
	}
}

func TestCredentials_TLSWithACustomCAAndClientCertificate(t *testing.T) {
	dir := t.TempDir()
	f := testkit.NewTLSFiles(t, dir)
	srv := externalServer(t, fmt.Sprintf("tls { cert_file: %q, key_file: %q, ca_file: %q, verify: true }\n", f.ServerCert, f.ServerKey, f.CA))
	creds := []string{"--tlsca", f.CA, "--tlscert", f.ClientCert, "--tlskey", f.ClientKey}
	runEngineWith(t, nil, append([]string{"--nats-url", srv.ClientURL()}, creds...)...)
	roundTrip(t, srv.ClientURL(), creds, creds, nil)
}

// The nkey case also checks the environment variables: the engine serves
// on $NATS_URL with $NATS_NKEY, and no flag.
func TestCredentials_NKeySeedFiles(t *testing.T) {
	dir := t.TempDir()
	engSeed, engPub := testkit.NKeyUser(t, dir)
	mgmtSeed, mgmtPub := testkit.NKeyUser(t, dir)
	agentSeed, agentPub := testkit.NKeyUser(t, dir)
	srv := externalServer(t, fmt.Sprintf("authorization { users: [ { nkey: %q }, { nkey: %q }, { nkey: %q } ] }\n", engPub, mgmtPub, agentPub))
	runEngineWith(t, []string{"NATS_URL=" + srv.ClientURL(), "NATS_NKEY=" + engSeed})
	roundTrip(t, srv.ClientURL(), []string{"--nkey", mgmtSeed}, []string{"--nkey", agentSeed}, []string{"NATS_URL=", "NATS_NKEY="})
}

// Users whose passwords come from files, each holding what `engine
// permissions` prints for its role.
func TestCredentials_UsersWithPasswordFilesAndTheirPrintedPermissions(t *testing.T) {
	dir := t.TempDir()
	pw := func(user string) string { return testkit.WriteFile(t, dir, user+".pw", password(user)+"\n") }
	users := ""
	for user, perms := range map[string]string{"engine": printed(t, "engine"), "manager": printed(t, "manager"), "agent": ""} {
		users += fmt.Sprintf("  { user: %q, password: %q\n%s  }\n", user, password(user), perms)
	}
	srv := externalServer(t, "authorization { users: [\n"+users+"] }\n")
	runEngineWith(t, nil, "--nats-url", srv.ClientURL(), "--user", "engine", "--password-file", pw("engine"))
	roundTrip(t, srv.ClientURL(), []string{"--user", "manager", "--password-file", pw("manager")},
		[]string{"--user", "agent", "--password-file", pw("agent")}, nil)
}

// The embedded server with a nats-server configuration file: users with
// passwords, the engine one of them; and beyond loopback with no
// authentication the engine refuses to start, saying how to add it.
func TestCredentials_EmbeddedServerConfigFile(t *testing.T) {
	dir := t.TempDir()
	pw := func(user string) string { return testkit.WriteFile(t, dir, user+".pw", password(user)) }
	conf := testkit.WriteFile(t, dir, "server.conf", fmt.Sprintf(`
listen: "127.0.0.1:-1"
accounts {
  WFP {
    jetstream: enabled
    users: [
      { user: engine, password: %q }
      { user: manager, password: %q }
      { user: agent, password: %q }
    ]
  }
}
`, password("engine"), password("manager"), password("agent")))
	p := runEngineWith(t, nil, "--server-config", conf, "--data", t.TempDir(), "--user", "engine", "--password-file", pw("engine"))
	if p.url == "" {
		t.Fatal("no url logged")
	}
	roundTrip(t, p.url, []string{"--user", "manager", "--password-file", pw("manager")},
		[]string{"--user", "agent", "--password-file", pw("agent")}, nil)

	out, err := exec.Command(binary(t, "cmd/engine"), "--listen", "0.0.0.0:-1", "--data", t.TempDir()).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "no authentication") || !strings.Contains(string(out), "--server-config") {
		t.Fatalf("listen beyond loopback with no auth: %v\n%s", err, out)
	}
}
