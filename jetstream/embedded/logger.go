package embedded

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"os"
)

// fatalCatcher is the embedded server's logger. The server reports a busy
// port or a failed JetStream start only by calling Fatalf, and the stock
// logger exits the process there; this one hands the message to
// Start instead.
type fatalCatcher struct {
	out   *log.Logger  // nil when silenced or slog is set
	slog  *slog.Logger // Options.Logger
	fatal chan string
}

func newFatalCatcher(silent bool, to *slog.Logger) *fatalCatcher {
	fc := &fatalCatcher{fatal: make(chan string, 1)}
	switch {
	case silent:
	case to != nil:
		fc.slog = to
	default:
		fc.out = log.New(os.Stderr, "[nats-server] ", log.LstdFlags|log.Lmicroseconds)
	}
	return fc
}

func (l *fatalCatcher) printf(level slog.Level, tag, format string, v ...any) {
	switch {
	case l.slog != nil:
		l.slog.Log(context.Background(), level, fmt.Sprintf(format, v...))
	case l.out != nil:
		l.out.Printf(tag+" "+format, v...)
	}
}

func (l *fatalCatcher) Noticef(format string, v ...any) {
	l.printf(slog.LevelInfo, "[INF]", format, v...)
}
func (l *fatalCatcher) Warnf(format string, v ...any) {
	l.printf(slog.LevelWarn, "[WRN]", format, v...)
}
func (l *fatalCatcher) Errorf(format string, v ...any) {
	l.printf(slog.LevelError, "[ERR]", format, v...)
}
func (l *fatalCatcher) Debugf(format string, v ...any) {
	l.printf(slog.LevelDebug, "[DBG]", format, v...)
}
func (l *fatalCatcher) Tracef(format string, v ...any) {
	l.printf(slog.LevelDebug-4, "[TRC]", format, v...)
}

// Fatalf records the first fatal message and never exits.
func (l *fatalCatcher) Fatalf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	l.printf(slog.LevelError, "[FTL]", "%s", msg)
	select {
	case l.fatal <- msg:
	default:
	}
}
