package embedded

import (
	"fmt"
	"log"
	"os"
)

// fatalCatcher is the embedded server's logger. The server reports a busy
// port or a failed JetStream start only by calling Fatalf, and the stock
// logger exits the process there; this one hands the message to
// Start instead.
type fatalCatcher struct {
	out   *log.Logger // nil when silenced
	fatal chan string
}

func newFatalCatcher(silent bool) *fatalCatcher {
	fc := &fatalCatcher{fatal: make(chan string, 1)}
	if !silent {
		fc.out = log.New(os.Stderr, "[nats-server] ", log.LstdFlags|log.Lmicroseconds)
	}
	return fc
}

func (l *fatalCatcher) printf(level, format string, v ...any) {
	if l.out != nil {
		l.out.Printf(level+" "+format, v...)
	}
}

func (l *fatalCatcher) Noticef(format string, v ...any) { l.printf("[INF]", format, v...) }
func (l *fatalCatcher) Warnf(format string, v ...any)   { l.printf("[WRN]", format, v...) }
func (l *fatalCatcher) Errorf(format string, v ...any)  { l.printf("[ERR]", format, v...) }
func (l *fatalCatcher) Debugf(format string, v ...any)  { l.printf("[DBG]", format, v...) }
func (l *fatalCatcher) Tracef(format string, v ...any)  { l.printf("[TRC]", format, v...) }

// Fatalf records the first fatal message and never exits.
func (l *fatalCatcher) Fatalf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	l.printf("[FTL]", "%s", msg)
	select {
	case l.fatal <- msg:
	default:
	}
}
