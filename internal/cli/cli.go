// Package cli holds what the module's two commands do the same way on the
// command line: subcommands whose usage is generated from their flag sets
// (so help, README and flags cannot drift apart), --help on every command
// with exit status 0, usage errors as one line and a hint with exit
// status 2, --version, the logging flags and the metrics endpoint.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
)

// Exit statuses every command shares; a command may add its own (ExitCode).
const (
	ExitOK    = 0
	ExitError = 1 // the command failed: a refusal, an unreachable server, ...
	ExitUsage = 2 // the command line is wrong: nothing was done
)

// Command is one command of a program: the words that name it after the
// program's name ("filter add"; "" for a program that is one command),
// its positional arguments, and Flags, which registers its flags on a
// flag set and returns what runs once they are parsed.
//
// A flag whose usage says "(required)" must be given; one whose usage says
// "(repeatable)" may be given more than once. A `backquoted` word in a
// flag's usage names its value in the usage text (flag.UnquoteUsage).
type Command struct {
	Name    string
	Summary string // one line: what the command does
	// Args names the positional arguments for the usage text ("FILE.json",
	// "ID", "-- CMD [ARG]..."); NArgs is how many it takes: 0, 1, or
	// Trailing for a command line that follows the flags.
	Args  string
	NArgs int
	Flags func(fs *flag.FlagSet) Run
}

// Trailing is Command.NArgs for a command that runs another command
// line: everything after its flags (or after "--") is that command line.
const Trailing = -1

// Run runs a command with its positional arguments, once its flags are
// parsed.
type Run func(ctx context.Context, args []string) error

// Program is a command-line program of one or more commands.
type Program struct {
	Name     string
	Summary  string
	Commands []*Command
	// Default names the command run when the first argument is a flag
	// or there is none ("serve"); empty: the command named "".
	Default string
	// Groups lists flags that many commands share, described once: a
	// command's usage shows them as "[NAME]" (e.g. "[connection flags]").
	Groups []Group
	// Notes end the program's help: exit statuses, environment.
	Notes string
	// Stdout gets help and version text.
	Stdout io.Writer
}

// Group is a set of flags shared by many commands.
type Group struct {
	Name  string // "connection flags"
	Flags []string
}

// UsageError is a command line that is wrong: exit status 2, with a hint
// to the command's help.
type UsageError struct {
	Prog, Cmd string // the program, and the command whose help to point at ("" for the program's)
	Err       error
}

func (e *UsageError) Error() string {
	if e.Cmd == "" {
		return e.Err.Error()
	}
	return e.Cmd + ": " + e.Err.Error()
}
func (e *UsageError) Unwrap() error { return e.Err }

// Hint is the line printed after a usage error.
func (e *UsageError) Hint() string {
	return fmt.Sprintf("run '%s --help'", strings.TrimSpace(e.Prog+" "+e.Cmd))
}

// Usagef is an error a command's Run returns for a command line that is
// wrong in a way its flag set cannot tell (two flags that exclude each
// other, a value out of range): Program.Run makes it a UsageError.
func Usagef(format string, args ...any) error { return &usage{fmt.Errorf(format, args...)} }

type usage struct{ error }

func (u *usage) Unwrap() error { return u.error }

// ExitCode is an error that sets the exit status and prints nothing (the
// command has said what it had to).
type ExitCode int

func (e ExitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// Exit prints err as the program's last words on stderr and returns its
// exit status: nothing and 0 for nil; for a usage error one line and a
// hint, 2; for an ExitCode nothing, its code; else one line, 1.
func Exit(prog string, err error, stderr io.Writer) int {
	var ue *UsageError
	var code ExitCode
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &code):
		return int(code)
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "%s: %s\n%s\n", prog, Printable(err.Error()), ue.Hint())
		return ExitUsage
	}
	fmt.Fprintf(stderr, "%s: %s\n", prog, Printable(err.Error()))
	return ExitError
}

// Run runs the command args name: the longest run of leading words that
// names a command, else the default command. --help (or -h, or help) at
// any level prints that level's help; --version the program's version.
func (p *Program) Run(ctx context.Context, args []string) error {
	if len(args) > 0 {
		switch args[0] {
		case "--version", "-version":
			_, err := fmt.Fprintf(p.Stdout, "%s %s\n", p.Name, Version())
			return err
		case "help", "--help", "-help", "-h":
			if len(args) == 1 || args[0] != "help" {
				_, err := io.WriteString(p.Stdout, p.Help())
				return err
			}
			return p.Run(ctx, append(args[1:], "--help")) // help COMMAND
		}
	}
	words := 0
	for words < len(args) && !strings.HasPrefix(args[words], "-") {
		words++
	}
	for n := words; n > 0; n-- {
		if c := p.command(strings.Join(args[:n], " ")); c != nil {
			return p.runCommand(ctx, c, args[n:])
		}
	}
	if words == 0 {
		if c := p.command(p.Default); c != nil {
			return p.runCommand(ctx, c, args)
		}
	}
	// A group of commands ("callout"): its help, or which verbs it has.
	for n := words; n > 0; n-- {
		group := strings.Join(args[:n], " ")
		if subs := p.under(group); len(subs) > 0 {
			if slices.ContainsFunc(args[n:], isHelp) {
				_, err := io.WriteString(p.Stdout, p.groupHelp(group, subs))
				return err
			}
			names := make([]string, len(subs))
			for i, c := range subs {
				names[i] = strings.TrimPrefix(c.Name, group+" ")
			}
			if n == words {
				return &UsageError{p.Name, group, fmt.Errorf("needs a command: %s", strings.Join(names, ", "))}
			}
			return &UsageError{p.Name, group, fmt.Errorf("unknown command %q; want %s", args[n], strings.Join(names, ", "))}
		}
	}
	return &UsageError{p.Name, "", fmt.Errorf("unknown command %q", args[0])}
}

func isHelp(a string) bool { return a == "--help" || a == "-help" || a == "-h" }

func (p *Program) command(name string) *Command {
	for _, c := range p.Commands {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// under lists the commands below group ("callout" has "callout add", ...).
func (p *Program) under(group string) []*Command {
	var out []*Command
	for _, c := range p.Commands {
		if strings.HasPrefix(c.Name, group+" ") {
			out = append(out, c)
		}
	}
	return out
}

// newFlagSet is a flag set that prints nothing and reports errors: the
// program says them once, in its own words.
func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

func (p *Program) runCommand(ctx context.Context, c *Command, args []string) error {
	fs := newFlagSet(c.Name)
	run := c.Flags(fs)
	usageErr := func(err error) error { return &UsageError{p.Name, c.Name, err} }
	pos, err := parse(fs, args, c.NArgs == Trailing)
	if errors.Is(err, flag.ErrHelp) {
		_, err := io.WriteString(p.Stdout, p.commandHelp(c))
		return err
	}
	if err != nil {
		return usageErr(dashes(err))
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var missing []string
	fs.VisitAll(func(f *flag.Flag) {
		if required(f) && !given[f.Name] {
			missing = append(missing, "--"+f.Name)
		}
	})
	switch {
	case len(missing) == 1:
		return usageErr(fmt.Errorf("%s is required", missing[0]))
	case len(missing) > 1:
		return usageErr(fmt.Errorf("%s are required", strings.Join(missing, ", ")))
	case c.NArgs == Trailing && len(pos) == 0:
		return usageErr(fmt.Errorf("missing %s", strings.TrimPrefix(c.Args, "-- ")))
	case c.NArgs >= 0 && len(pos) > c.NArgs:
		return usageErr(fmt.Errorf("unexpected argument %q", pos[c.NArgs]))
	case c.NArgs > 0 && len(pos) < c.NArgs:
		return usageErr(fmt.Errorf("missing %s", c.Args))
	}
	err = run(ctx, pos)
	var u *usage
	if errors.As(err, &u) {
		return usageErr(u.error)
	}
	return err
}

// parse parses args, taking positional arguments wherever they stand
// among the flags, or (trailing) stopping at the first one; everything
// after "--" is positional.
func parse(fs *flag.FlagSet, args []string, trailing bool) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if used := len(args) - len(rest); trailing || (used > 0 && args[used-1] == "--") {
			return append(pos, rest...), nil
		}
		pos, args = append(pos, rest[0]), rest[1:]
	}
}

// dashes writes the flag package's "-name" as the "--name" the usage
// shows.
func dashes(err error) error {
	return errors.New(dashFlag.ReplaceAllString(err.Error(), "$1--$2"))
}

var dashFlag = regexp.MustCompile(`(^|[ :])-([A-Za-z][\w-]*)`)
