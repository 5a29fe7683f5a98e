package embedded

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// DefaultListen is where an embedded server listens unless told otherwise.
const DefaultListen = loopback + ":4222"

const loopback = "127.0.0.1"

// ErrNoAuth: Start was asked to listen beyond loopback with no
// authentication configured.
var ErrNoAuth = errors.New("embedded: no authentication")

// isLoopback reports whether host only accepts local connections.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// authenticates reports whether o makes clients prove who they are:
// users (with passwords, nkeys or in accounts), a token, operator JWTs,
// an auth callout, or verified TLS client certificates.
func authenticates(o *server.Options) bool {
	return len(o.Users) > 0 || len(o.Nkeys) > 0 || o.Username != "" || o.Authorization != "" ||
		len(o.TrustedOperators) > 0 || len(o.TrustedKeys) > 0 || o.AuthCallout != nil ||
		o.CustomClientAuthentication != nil || (o.TLSConfig != nil && o.TLSVerify)
}

// Options configures Start.
type Options struct {
	// StoreDir is the JetStream storage directory; required unless
	// ConfigFile sets one (jetstream { store_dir }), which it overrides.
	StoreDir string
	// ConfigFile is a nats-server configuration file (accounts, users,
	// permissions, TLS, ...), read with nats-server's own parser. JetStream
	// is always on; StoreDir, Listen and ServerName, when set, override
	// the file. Signals stay with the host program.
	ConfigFile string
	// Listen is "host:port" for client connections; default: the
	// config file's, else "127.0.0.1:4222" (a file that names a port but
	// no host listens on 127.0.0.1 too). Port "-1" or "0" picks a free
	// port (see ClientURL). A host other than loopback is refused unless
	// the configuration authenticates clients (see Start).
	Listen string
	// NoListen serves in-process connections only (Connect); no TCP port.
	NoListen bool
	// ServerName names the server (and its JetStream node); default: the
	// server's generated id.
	ServerName string
	// NoLog silences the server's own log lines. Fatal errors (port busy,
	// JetStream cannot start) are still turned into Start's error.
	NoLog bool
	// Logger, when set, gets the server's log lines as records: its
	// notices (the startup banner among them) at info level, warnings and
	// errors at theirs. Its handler's level decides what is written.
	// Default: lines on stderr, prefixed "[nats-server]".
	Logger *slog.Logger
	// ReadyTimeout bounds the wait for the server to accept connections;
	// default 10s.
	ReadyTimeout time.Duration
	// SyncAlways makes the file store fsync every write before it is
	// acknowledged; otherwise it syncs every SyncInterval (default: the
	// server's, 2 minutes), and a power cut can lose what was
	// acknowledged since the last sync.
	SyncAlways   bool
	SyncInterval time.Duration
}

// Server is a nats-server with JetStream running inside this process.
type Server struct {
	NATS *server.Server // the server itself, for what this package does not wrap

	lock         *dirLock
	shutdownOnce sync.Once
}

// Start starts a nats-server with JetStream enabled and waits until
// it accepts connections and JetStream is up. A busy port or a JetStream
// that cannot start is returned as an error (the stock server logger would
// call os.Exit on those). The store directory is locked while the server
// runs: a second server on it gets ErrDirInUse, naming the first.
//
// A listener on anything but a loopback address with no authentication
// configured is refused (ErrNoAuth): it would hand the management API
// and the whole event log to anyone who can reach the port.
func Start(opts Options) (*Server, error) {
	if opts.ReadyTimeout <= 0 {
		opts.ReadyTimeout = 10 * time.Second
	}
	if opts.SyncInterval < 0 {
		return nil, fmt.Errorf("embedded: sync interval %v is negative", opts.SyncInterval)
	}
	sopts := &server.Options{}
	if opts.ConfigFile != "" {
		var err error
		if sopts, err = server.ProcessConfigFile(opts.ConfigFile); err != nil {
			return nil, fmt.Errorf("embedded: server configuration %s: %w", opts.ConfigFile, err)
		}
	}
	if opts.ServerName != "" {
		sopts.ServerName = opts.ServerName
	}
	if opts.StoreDir != "" {
		sopts.StoreDir = opts.StoreDir
	}
	if sopts.StoreDir == "" {
		return nil, errors.New("embedded: StoreDir is required")
	}
	sopts.JetStream = true
	sopts.NoSigs = true // signals belong to the host program
	sopts.DontListen = opts.NoListen
	sopts.NoLog = opts.NoLog
	if opts.SyncAlways {
		sopts.SyncAlways = true
	}
	if opts.SyncInterval > 0 {
		sopts.SyncInterval = opts.SyncInterval
	}
	if !opts.NoListen {
		if opts.Listen != "" || (sopts.Host == "" && sopts.Port == 0) {
			host, port, err := parseListen(opts.Listen)
			if err != nil {
				return nil, err
			}
			sopts.Host, sopts.Port = host, port
		} else if sopts.Host == "" {
			sopts.Host = loopback
		}
		if !isLoopback(sopts.Host) && !authenticates(sopts) {
			return nil, fmt.Errorf("%w: refusing to listen on %s with no authentication: anyone who can reach it "+
				"could read every filter and call the management API. Listen on %s, or give a nats-server "+
				"configuration file (engine --server-config FILE) with users, nkeys, accounts or verified TLS client "+
				"certificates: docs/SECURITY.md shows one",
				ErrNoAuth, net.JoinHostPort(sopts.Host, strconv.Itoa(sopts.Port)), loopback)
		}
	}
	lock, err := lockDir(sopts.StoreDir)
	if err != nil {
		return nil, err
	}

	ns, err := server.NewServer(sopts)
	if err != nil {
		lock.release()
		return nil, fmt.Errorf("embedded: %w", err)
	}
	// Always install our logger: it reports fatal errors on a channel
	// instead of exiting the process.
	logger := newFatalCatcher(opts.NoLog, opts.Logger)
	ns.SetLogger(logger, false, false)

	ns.Start()
	e := &Server{NATS: ns, lock: lock}
	if err := e.waitReady(opts.ReadyTimeout, logger.fatal); err != nil {
		e.Shutdown()
		return nil, err
	}
	return e, nil
}

// waitReady polls in short slices so a fatal error (which the server
// reports only through its logger) ends the wait at once instead of after
// the whole timeout.
func (e *Server) waitReady(timeout time.Duration, fatal <-chan string) error {
	deadline := time.Now().Add(timeout)
	for {
		select {
		case msg := <-fatal:
			return fmt.Errorf("embedded: server failed to start: %s", msg)
		default:
		}
		if e.NATS.ReadyForConnections(50*time.Millisecond) && e.NATS.JetStreamEnabled() {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("embedded: server not ready for connections after %s", timeout)
		}
	}
}

// ClientURL is the URL clients connect to, with the real port when it was
// picked at random. An unspecified listen host (0.0.0.0, ::) is given as
// loopback, since that is what a local client can dial.
func (e *Server) ClientURL() string {
	u, err := url.Parse(e.NATS.ClientURL())
	if err != nil {
		return e.NATS.ClientURL()
	}
	if ip := net.ParseIP(u.Hostname()); ip != nil && ip.IsUnspecified() {
		u.Host = net.JoinHostPort("127.0.0.1", u.Port())
	}
	return u.String()
}

// Connect opens an in-process connection (no TCP) to the server; opts are
// applied after the in-process option. The handshake may take up to 10 s
// rather than nats.go's 2 s: in process there is no network to wait for,
// only a busy machine, and a slow start is better than a failed one.
func (e *Server) Connect(opts ...nats.Option) (*nats.Conn, error) {
	all := append([]nats.Option{nats.InProcessServer(e.NATS), nats.Timeout(10 * time.Second)}, opts...)
	nc, err := nats.Connect("", all...)
	if err != nil {
		return nil, fmt.Errorf("embedded: connect: %w", err)
	}
	return nc, nil
}

// Shutdown stops the server and waits until it has stopped. Safe to call
// more than once.
func (e *Server) Shutdown() {
	if e == nil || e.NATS == nil {
		return
	}
	e.shutdownOnce.Do(func() {
		e.NATS.Shutdown()
		e.NATS.WaitForShutdown()
		e.lock.release()
	})
}

// parseListen turns "host:port" into server options; "-1" and "0" both mean
// a random port (nats-server itself reads 0 as "default port 4222").
func parseListen(listen string) (string, int, error) {
	if listen == "" {
		listen = DefaultListen
	}
	host, portStr, err := net.SplitHostPort(listen)
	if err != nil {
		return "", 0, fmt.Errorf("embedded: bad listen address %q: %w", listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < -1 || port > 65535 {
		return "", 0, fmt.Errorf("embedded: bad port in listen address %q", listen)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	if host == "" {
		host = "0.0.0.0"
	}
	return host, port, nil
}
