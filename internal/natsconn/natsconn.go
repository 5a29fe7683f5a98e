// Package natsconn holds what every command of this module does the same
// way to reach NATS: the server URL's default, the connection flags and the
// connection itself.
package natsconn

import (
	"flag"
	"fmt"
	"os"

	"github.com/nats-io/nats.go"
)

// EnvURL is the environment variable that names the server, as the nats
// CLI and the client libraries read it.
const EnvURL = "NATS_URL"

// DefaultURL is $NATS_URL, or nats.DefaultURL (nats://127.0.0.1:4222)
// when it is unset.
func DefaultURL() string {
	if u := os.Getenv(EnvURL); u != "" {
		return u
	}
	return nats.DefaultURL
}

// Flags are the connection flags a command shares with the others.
type Flags struct {
	URL string
}

// Register adds the flags to fs.
func (f *Flags) Register(fs *flag.FlagSet) {
	fs.StringVar(&f.URL, "server", DefaultURL(), "NATS server URL (default $"+EnvURL+", else "+nats.DefaultURL+")")
}

// Connect dials the server, naming the connection name (servers list
// connections by it); opts come after the flags' own options.
func (f *Flags) Connect(name string, opts ...nats.Option) (*nats.Conn, error) {
	nc, err := nats.Connect(f.URL, append([]nats.Option{nats.Name(name)}, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", f.URL, err)
	}
	return nc, nil
}
