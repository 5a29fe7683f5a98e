package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
)

// proc is one program the suite runs, started again after each kill. Each
// run writes its stdout and stderr to files of its own in the work
// directory, so what a killed run printed is kept.
type proc struct {
	name string
	bin  string
	args []string
	dir  string

	cmd  *exec.Cmd
	done chan struct{} // closed when the current run has exited
	outs []string      // stdout file of each run
	errs []string      // stderr file of each run
}

func (p *proc) start() error {
	run := len(p.outs) + 1
	out := filepath.Join(p.dir, fmt.Sprintf("%s.%d.out", p.name, run))
	errf := filepath.Join(p.dir, fmt.Sprintf("%s.%d.err", p.name, run))
	fo, err := os.Create(out)
	if err != nil {
		return err
	}
	fe, err := os.Create(errf)
	if err != nil {
		fo.Close()
		return err
	}
	cmd := exec.Command(p.bin, p.args...)
	cmd.Stdout, cmd.Stderr = fo, fe
	if err := cmd.Start(); err != nil {
		fo.Close()
		fe.Close()
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	// The child has its own copies of the descriptors.
	fo.Close()
	fe.Close()
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	p.cmd, p.done = cmd, done
	p.outs, p.errs = append(p.outs, out), append(p.errs, errf)
	return nil
}

// running reports whether the current run has not exited.
func (p *proc) running() bool {
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// kill sends SIGKILL and reaps the process.
func (p *proc) kill() {
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
	p.cmd = nil
}

// stop asks the process to end (SIGTERM), and kills it if it does not
// within 10 s.
func (p *proc) stop() {
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
	}
	p.cmd = nil
}

// waitFor waits until the current run's stdout (or stderr) has a line
// matching re, or the process exits, or within passes.
func (p *proc) waitFor(stderr bool, re *regexp.Regexp, within time.Duration) error {
	files := p.outs
	if stderr {
		files = p.errs
	}
	file := files[len(files)-1]
	deadline := time.Now().Add(within)
	for {
		b, _ := os.ReadFile(file)
		if re.Match(b) {
			return nil
		}
		if !p.running() {
			return fmt.Errorf("%s exited before printing %q; stderr:\n%s", p.name, re, tail(p.errs[len(p.errs)-1]))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not print %q within %v; stderr:\n%s", p.name, re, within, tail(p.errs[len(p.errs)-1]))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// tail is the end of a file, for error messages.
func tail(file string) string {
	b, _ := os.ReadFile(file)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-8):], "\n")
}

// server is a nats-server process with JetStream, alone or one of a
// cluster, on fixed ports so that a restart comes back where clients and
// routes expect it.
type server struct {
	proc
	port int
}

// freePort asks the kernel for a free loopback port.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// newServers writes the configuration of n servers (a cluster when n > 1)
// and returns them, not started.
func newServers(bin, dir string, n int) ([]*server, error) {
	ports := make([]int, 2*n)
	for i := range ports {
		p, err := freePort()
		if err != nil {
			return nil, err
		}
		ports[i] = p
	}
	var routes []string
	for i := range n {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", ports[n+i]))
	}
	var out []*server
	for i := range n {
		name := fmt.Sprintf("n%d", i+1)
		conf := fmt.Sprintf("server_name: %s\nlisten: 127.0.0.1:%d\njetstream {\n  store_dir: %q\n  max_file_store: 4GB\n  max_mem_store: 256MB\n}\n",
			name, ports[i], filepath.Join(dir, name))
		if n > 1 {
			conf += fmt.Sprintf("cluster {\n  name: chaos\n  listen: 127.0.0.1:%d\n  routes: [%s]\n}\n", ports[n+i], strings.Join(routes, ", "))
		}
		file := filepath.Join(dir, name+".conf")
		if err := os.WriteFile(file, []byte(conf), 0o644); err != nil {
			return nil, err
		}
		out = append(out, &server{proc: proc{name: name, bin: bin, args: []string{"-c", file}, dir: dir}, port: ports[i]})
	}
	return out, nil
}

func (s *server) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", s.port) }

// ready waits until the server takes clients and JetStream answers (in a
// cluster: there is a meta leader).
func (s *server) ready(within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		err := func() error {
			nc, err := nats.Connect(s.url(), nats.Timeout(time.Second))
			if err != nil {
				return err
			}
			defer nc.Close()
			js, err := natsjs.New(nc)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			_, err = js.AccountInfo(ctx)
			return err
		}()
		if err == nil {
			return nil
		}
		if !s.running() {
			return fmt.Errorf("%s exited: %s", s.name, tail(s.errs[len(s.errs)-1]))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready within %v: %v; log:\n%s", s.name, within, err, tail(s.errs[len(s.errs)-1]))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

var (
	engineReady = regexp.MustCompile(`msg="engine ready"`)
	agentSynced = regexp.MustCompile(`"notify":"synced"`)
)
