package natsconn

import (
	"flag"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/wfpnats/wfp/internal/testkit"
	"github.com/wfpnats/wfp/jetstream/embedded"
)

func TestDefaultURLFromEnvironment(t *testing.T) {
	t.Setenv(EnvURL, "")
	if got := DefaultURL(); got != nats.DefaultURL {
		t.Errorf("unset: %q, want %q", got, nats.DefaultURL)
	}
	t.Setenv(EnvURL, "nats://example.test:4333")
	if got := DefaultURL(); got != "nats://example.test:4333" {
		t.Errorf("set: %q", got)
	}
	var f Flags
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	f.Register(fs)
	if err := fs.Parse(nil); err != nil || f.URL != "nats://example.test:4333" {
		t.Errorf("--server default %q (%v), want the environment's", f.URL, err)
	}
}

func TestConnectNamesTheConnection(t *testing.T) {
	srv, err := embedded.Start(embedded.Options{StoreDir: t.TempDir(), Listen: "127.0.0.1:-1", NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	f := Flags{URL: srv.ClientURL()}
	nc, err := f.Connect("wfp-test")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if nc.Opts.Name != "wfp-test" {
		t.Errorf("connection name %q", nc.Opts.Name)
	}
	bad := Flags{URL: "nats://127.0.0.1:1"}
	if _, err := bad.Connect("x", nats.MaxReconnects(0)); err == nil {
		t.Error("connect to a closed port: want error")
	}
}

// serverWith starts a real server on a loopback port from a
// configuration file holding conf.
func serverWith(t *testing.T, conf string) *embedded.Server {
	t.Helper()
	return testkit.ServerFromConfig(t, "listen: 127.0.0.1:-1\n"+conf)
}

// connects reports whether f gets a connection (and an answer to a
// flush) from the server.
func connects(t *testing.T, f Flags) error {
	t.Helper()
	nc, err := f.Connect("wfp-test", nats.MaxReconnects(0))
	if err != nil {
		return err
	}
	defer nc.Close()
	return nc.Flush()
}

// Each way to authenticate, against a server that insists on it: the
// flags' options get in, and the same flags without the credential do
// not (so the test would notice an option that is silently dropped).
func TestCredentialsAgainstARealServer(t *testing.T) {
	dir := t.TempDir()
	tlsf := testkit.NewTLSFiles(t, dir)
	seed, pub := testkit.NKeyUser(t, dir)
	for _, c := range []struct {
		name   string
		conf   string
		good   Flags
		env    map[string]string
		strip  func(*Flags)
		notEnv bool
	}{
		{
			name: "TLS with a custom CA and a client certificate",
			conf: fmt.Sprintf("tls { cert_file: %q, key_file: %q, ca_file: %q, verify: true }\n", tlsf.ServerCert, tlsf.ServerKey, tlsf.CA),
			good: Flags{TLSCA: tlsf.CA, TLSCert: tlsf.ClientCert, TLSKey: tlsf.ClientKey},
			strip: func(f *Flags) {
				f.TLSCert, f.TLSKey = "", ""
			},
		},
		{
			name:  "nkey seed file",
			conf:  fmt.Sprintf("authorization { users: [ { nkey: %q } ] }\n", pub),
			good:  Flags{NKey: seed},
			strip: func(f *Flags) { f.NKey = "" },
		},
		{
			name:  "user with a password file",
			conf:  "authorization { users: [ { user: alice, password: \"s3cret pw\" } ] }\n",
			good:  Flags{User: "alice", PasswordFile: testkit.WriteFile(t, dir, "pw", "s3cret pw\n")},
			strip: func(f *Flags) { f.PasswordFile = testkit.WriteFile(t, dir, "wrong", "wrong") },
		},
		{
			name:  "user with $NATS_PASSWORD",
			conf:  "authorization { users: [ { user: bob, password: \"from env\" } ] }\n",
			good:  Flags{User: "bob"},
			env:   map[string]string{EnvPassword: "from env"},
			strip: func(f *Flags) { f.User = "" },
		},
		{
			name:  "token file",
			conf:  "authorization { token: \"t0ken\" }\n",
			good:  Flags{TokenFile: testkit.WriteFile(t, dir, "token", "t0ken\n")},
			strip: func(f *Flags) { f.TokenFile = "" },
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv(EnvPassword, "")
			t.Setenv(EnvToken, "")
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			srv := serverWith(t, c.conf)
			good := c.good
			good.URL = srv.ClientURL()
			if err := connects(t, good); err != nil {
				t.Fatalf("with the credentials: %v", err)
			}
			bad := good
			c.strip(&bad)
			if err := connects(t, bad); err == nil {
				t.Fatal("without the credentials: connected, want refused")
			}
		})
	}
}

func TestBadCredentialFlagsAreRefusedBeforeConnecting(t *testing.T) {
	dir := t.TempDir()
	pw := testkit.WriteFile(t, dir, "pw", "x")
	seed, _ := testkit.NKeyUser(t, dir)
	t.Setenv(EnvPassword, "")
	t.Setenv(EnvToken, "")
	for _, c := range []struct {
		f    Flags
		want string
	}{
		{Flags{User: "a"}, "needs a password"},
		{Flags{PasswordFile: pw}, "needs --user"},
		{Flags{User: "a", PasswordFile: dir + "/missing"}, "password-file"},
		{Flags{User: "a", PasswordFile: testkit.WriteFile(t, dir, "empty", "\n")}, "is empty"},
		{Flags{NKey: seed, User: "a", PasswordFile: pw}, "more than one way"},
		{Flags{NKey: dir + "/missing"}, "--nkey"},
		{Flags{TLSCert: "c.pem"}, "go together"},
	} {
		_, err := c.f.Options()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: error %v, want one containing %q", c.f, err, c.want)
		}
	}
}

func TestRedactHidesSecretsInURLs(t *testing.T) {
	for in, want := range map[string]string{
		"nats://a:secret@h:4222":                "nats://a:xxxxx@h:4222",
		"nats://tok@h:4222,nats://b:pw@h2:4222": "nats://xxxxx@h:4222,nats://b:xxxxx@h2:4222",
		"nats://127.0.0.1:4222":                 "nats://127.0.0.1:4222",
	} {
		if got := Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}
