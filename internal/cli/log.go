package cli

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// LogFlags are the logging flags: --log-level and --log-format.
type LogFlags struct {
	Level  slog.Level
	Format string // "text" or "json"
}

// Register adds --log-level and --log-format to fs.
func (l *LogFlags) Register(fs *flag.FlagSet) {
	l.Format = "text"
	fs.Func("log-level", "the least `LEVEL` logged: debug, info, warn or error (default info)", func(s string) error {
		return l.Level.UnmarshalText([]byte(s))
	})
	fs.Func("log-format", "log lines as `text|json`: key=value pairs, or one JSON object a line (default text)", func(s string) error {
		switch strings.ToLower(s) {
		case "text", "json":
			l.Format = strings.ToLower(s)
			return nil
		}
		return fmt.Errorf("want text or json, got %q", s)
	})
}

// Handler is a log handler writing to w as the flags ask, at least at
// level min if that is higher than the flags' level.
func (l *LogFlags) Handler(w io.Writer, min slog.Level) slog.Handler {
	opts := &slog.HandlerOptions{Level: max(l.Level, min)}
	if l.Format == "json" {
		return slog.NewJSONHandler(w, opts)
	}
	return slog.NewTextHandler(w, opts)
}

// Logger is a logger writing to w as the flags ask.
func (l *LogFlags) Logger(w io.Writer) *slog.Logger { return slog.New(l.Handler(w, slog.LevelDebug-1)) }
