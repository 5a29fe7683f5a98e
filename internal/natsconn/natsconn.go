// Package natsconn holds what every command of this module does the same
// way to reach NATS: the server URL's default, the connection and
// credential flags, and the connection itself.
//
// The flags and environment variables are the nats CLI's, so one shell
// setup serves both:
//
//	--server URL      $NATS_URL    server URL(s), comma separated
//	--creds FILE      $NATS_CREDS  user credentials file (JWT and nkey seed)
//	--nkey FILE       $NATS_NKEY   nkey seed file
//	--user NAME       $NATS_USER   user name; its password from
//	--password-file FILE, else $NATS_PASSWORD (never a command-line argument: ps shows those)
//	--token-file FILE, else $NATS_TOKEN       an authentication token
//	--tlsca FILE      $NATS_CA     CA certificates that sign the server's certificate
//	--tlscert FILE    $NATS_CERT   client certificate
//	--tlskey FILE     $NATS_KEY    the client certificate's key
//
// Every option is nats.go's own; nothing here does cryptography.
package natsconn

import (
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"strings"

	"github.com/nats-io/nats.go"
)

// Environment variables, as the nats CLI and the client libraries read
// them.
const (
	EnvURL      = "NATS_URL"
	EnvCreds    = "NATS_CREDS"
	EnvNKey     = "NATS_NKEY"
	EnvUser     = "NATS_USER"
	EnvPassword = "NATS_PASSWORD"
	EnvToken    = "NATS_TOKEN"
	EnvCA       = "NATS_CA"
	EnvCert     = "NATS_CERT"
	EnvKey      = "NATS_KEY"
)

// DefaultURL is $NATS_URL, or nats.DefaultURL (nats://127.0.0.1:4222)
// when it is unset.
func DefaultURL() string {
	if u := os.Getenv(EnvURL); u != "" {
		return u
	}
	return nats.DefaultURL
}

// Flags are the connection flags a command shares with the others. The
// zero value connects to URL with no credentials.
type Flags struct {
	URL string

	Creds        string // credentials file (JWT + nkey seed)
	NKey         string // nkey seed file
	User         string
	PasswordFile string // the user's password; $NATS_PASSWORD when empty
	TokenFile    string // a token; $NATS_TOKEN when empty
	TLSCA        string // CA file for the server's certificate
	TLSCert      string // client certificate file
	TLSKey       string // its key file
}

// FlagNames are the flags Register adds, for usage texts that describe
// them once for many commands.
var FlagNames = []string{"server", "creds", "nkey", "user", "password-file", "token-file", "tlsca", "tlscert", "tlskey"}

// Register adds --server and the credential flags to fs.
func (f *Flags) Register(fs *flag.FlagSet) {
	fs.StringVar(&f.URL, "server", DefaultURL(), "NATS server `URL` (default $"+EnvURL+", else "+nats.DefaultURL+")")
	f.RegisterAuth(fs)
}

// RegisterAuth adds the credential and TLS flags to fs, each defaulting
// to its environment variable. Secrets themselves (password, token) are
// never flag values: they come from a file or the environment.
func (f *Flags) RegisterAuth(fs *flag.FlagSet) {
	fs.StringVar(&f.Creds, "creds", os.Getenv(EnvCreds), "user credentials `FILE`, JWT and nkey seed ($"+EnvCreds+")")
	fs.StringVar(&f.NKey, "nkey", os.Getenv(EnvNKey), "nkey seed `FILE` ($"+EnvNKey+")")
	fs.StringVar(&f.User, "user", os.Getenv(EnvUser), "user `NAME`; the password comes from --password-file or $"+EnvPassword+" ($"+EnvUser+")")
	fs.StringVar(&f.PasswordFile, "password-file", "", "`FILE` holding the user's password (default: $"+EnvPassword+")")
	fs.StringVar(&f.TokenFile, "token-file", "", "`FILE` holding an authentication token (default: $"+EnvToken+")")
	fs.StringVar(&f.TLSCA, "tlsca", os.Getenv(EnvCA), "CA certificates `FILE` that signs the server's certificate ($"+EnvCA+")")
	fs.StringVar(&f.TLSCert, "tlscert", os.Getenv(EnvCert), "TLS client certificate `FILE` ($"+EnvCert+")")
	fs.StringVar(&f.TLSKey, "tlskey", os.Getenv(EnvKey), "TLS client certificate's key `FILE` ($"+EnvKey+")")
}

// Options turns the flags into nats.go options: credentials, then TLS.
func (f *Flags) Options() ([]nats.Option, error) {
	opts, err := f.AuthOptions()
	if err != nil {
		return nil, err
	}
	if f.TLSCA != "" {
		opts = append(opts, nats.RootCAs(f.TLSCA))
	}
	if (f.TLSCert == "") != (f.TLSKey == "") {
		return nil, errors.New("--tlscert and --tlskey go together")
	}
	if f.TLSCert != "" {
		opts = append(opts, nats.ClientCert(f.TLSCert, f.TLSKey))
	}
	return opts, nil
}

// AuthOptions are the credential options alone, without TLS: what an
// in-process connection to an embedded server needs (it has no network
// to protect). More than one way to authenticate is an error.
func (f *Flags) AuthOptions() ([]nats.Option, error) {
	var used []string
	var opts []nats.Option
	if f.Creds != "" {
		used = append(used, "--creds ($"+EnvCreds+")")
		opts = append(opts, nats.UserCredentials(f.Creds))
	}
	if f.NKey != "" {
		used = append(used, "--nkey ($"+EnvNKey+")")
		o, err := nats.NkeyOptionFromSeed(f.NKey)
		if err != nil {
			return nil, fmt.Errorf("--nkey %s: %w", f.NKey, err)
		}
		opts = append(opts, o)
	}
	if f.User != "" {
		used = append(used, "--user ($"+EnvUser+")")
		pw, err := secret(f.PasswordFile, EnvPassword)
		if err != nil {
			return nil, fmt.Errorf("--password-file: %w", err)
		}
		if pw == "" {
			return nil, fmt.Errorf("--user %s needs a password: --password-file FILE or $%s", f.User, EnvPassword)
		}
		opts = append(opts, nats.UserInfo(f.User, pw))
	} else if f.PasswordFile != "" {
		return nil, errors.New("--password-file needs --user (or $" + EnvUser + ")")
	}
	token, err := secret(f.TokenFile, EnvToken)
	if err != nil {
		return nil, fmt.Errorf("--token-file: %w", err)
	}
	if token != "" {
		used = append(used, "a token (--token-file or $"+EnvToken+")")
		opts = append(opts, nats.Token(token))
	}
	if len(used) > 1 {
		return nil, fmt.Errorf("more than one way to authenticate: %s; give one", strings.Join(used, ", "))
	}
	return opts, nil
}

// secret reads a password or token from file, or else from the
// environment variable env. A file's trailing newline is not part of it.
func secret(file, env string) (string, error) {
	if file == "" {
		return os.Getenv(env), nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", err
	}
	s := strings.TrimRight(string(b), "\r\n")
	if s == "" {
		return "", fmt.Errorf("%s is empty", file)
	}
	return s, nil
}

// Connect dials the server, naming the connection name (servers list
// connections by it), with the flags' credentials and TLS; opts come
// after the flags' own options.
func (f *Flags) Connect(name string, opts ...nats.Option) (*nats.Conn, error) {
	own, err := f.Options()
	if err != nil {
		return nil, err
	}
	all := append(append([]nats.Option{nats.Name(name)}, own...), opts...)
	nc, err := nats.Connect(f.URL, all...)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", Redact(f.URL), err)
	}
	return nc, nil
}

// Redact returns the server URL(s) u with any password or token in them
// replaced by "xxxxx", for logs and error messages.
func Redact(u string) string {
	parts := strings.Split(u, ",")
	for i, p := range parts {
		pu, err := url.Parse(strings.TrimSpace(p))
		if err != nil || pu.User == nil {
			continue
		}
		if _, has := pu.User.Password(); has {
			pu.User = url.UserPassword(pu.User.Username(), "xxxxx")
		} else {
			pu.User = url.User("xxxxx") // a lone user part is a token
		}
		parts[i] = pu.String()
	}
	return strings.Join(parts, ",")
}
