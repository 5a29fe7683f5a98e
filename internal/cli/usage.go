package cli

import (
	"flag"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// The usage text is generated from the commands' flag sets, so that what
// --help says, what README.md lists (a test compares them) and what the
// commands take are the same.

// width is where synopsis lines wrap.
const width = 100

// Synopses are the usage lines of every command, as the program's help
// lists them (and README.md shows them).
func (p *Program) Synopses() []string {
	var out []string
	for _, c := range p.Commands {
		out = append(out, p.synopsis(c)...)
	}
	return out
}

// Help is the program's help: its summary, every command's synopsis, the
// groups of shared flags and the notes.
func (p *Program) Help() string {
	var b strings.Builder
	if p.Summary != "" {
		fmt.Fprintf(&b, "%s: %s\n\n", p.Name, p.Summary)
	}
	b.WriteString("usage:\n")
	for _, l := range p.Synopses() {
		fmt.Fprintf(&b, "  %s\n", l)
	}
	if len(p.Commands) > 1 {
		fmt.Fprintf(&b, "\nRun '%s COMMAND --help' for what a command does and its flags.\n", p.Name)
	} else {
		fmt.Fprintf(&b, "\n%s\n", p.Commands[0].Summary)
		b.WriteString(p.flagHelp(p.Commands[0]))
	}
	if p.Notes != "" {
		fmt.Fprintf(&b, "\n%s", p.Notes)
	}
	return b.String()
}

// groupHelp lists the commands under group.
func (p *Program) groupHelp(group string, subs []*Command) string {
	var b strings.Builder
	b.WriteString("usage:\n")
	for _, c := range subs {
		for _, l := range p.synopsis(c) {
			fmt.Fprintf(&b, "  %s\n", l)
		}
	}
	b.WriteString("\n")
	for _, c := range subs {
		fmt.Fprintf(&b, "  %-*s  %s\n", maxName(subs), c.Name, c.Summary)
	}
	fmt.Fprintf(&b, "\nRun '%s %s COMMAND --help' for a command's flags.\n", p.Name, group)
	return b.String()
}

func maxName(cs []*Command) int {
	n := 0
	for _, c := range cs {
		n = max(n, len(c.Name))
	}
	return n
}

// commandHelp is a command's help: synopsis, summary, then each flag.
func (p *Program) commandHelp(c *Command) string {
	var b strings.Builder
	b.WriteString("usage:\n")
	for _, l := range p.synopsis(c) {
		fmt.Fprintf(&b, "  %s\n", l)
	}
	fmt.Fprintf(&b, "\n%s\n", c.Summary)
	b.WriteString(p.flagHelp(c))
	return b.String()
}

// flagHelp describes a command's flags: its own, then each group's.
func (p *Program) flagHelp(c *Command) string {
	fs := newFlagSet(c.Name)
	c.Flags(fs)
	var own []*flag.Flag
	grouped := map[string][]*flag.Flag{}
	fs.VisitAll(func(f *flag.Flag) {
		if g := p.groupOf(f.Name); g != "" {
			grouped[g] = append(grouped[g], f)
		} else {
			own = append(own, f)
		}
	})
	var b strings.Builder
	section := func(title string, fl []*flag.Flag) {
		if len(fl) == 0 {
			return
		}
		fmt.Fprintf(&b, "\n%s:\n", title)
		for _, f := range fl {
			name, use := flag.UnquoteUsage(f)
			fmt.Fprintf(&b, "  --%s", f.Name)
			if name != "" {
				fmt.Fprintf(&b, " %s", name)
			}
			fmt.Fprintf(&b, "\n        %s", use)
			if d := f.DefValue; d != "" && d != "false" && d != "0" && d != "[]" && d != "map[]" && !strings.Contains(use, "(default") {
				fmt.Fprintf(&b, " (default %s)", d)
			}
			b.WriteString("\n")
		}
	}
	section("flags", own)
	for _, g := range p.Groups {
		section(g.Name, grouped[g.Name])
	}
	return b.String()
}

func (p *Program) groupOf(flagName string) string {
	for _, g := range p.Groups {
		if slices.Contains(g.Flags, flagName) {
			return g.Name
		}
	}
	return ""
}

// synopsis is a command's usage line, wrapped: the program and command
// words, the positional arguments, the required flags, then the optional
// ones (each group of shared flags as one "[NAME]").
func (p *Program) synopsis(c *Command) []string {
	fs := newFlagSet(c.Name)
	c.Flags(fs)
	head := p.Name
	if c.Name != "" {
		head += " " + c.Name
	}
	if c.Name == p.Default && c.Name != "" {
		head = p.Name + " [" + c.Name + "]"
	}
	var words, optional []string
	if c.Args != "" && c.NArgs != Trailing {
		words = append(words, c.Args)
	}
	groups := map[string]bool{}
	fs.VisitAll(func(f *flag.Flag) {
		if g := p.groupOf(f.Name); g != "" {
			groups[g] = true
			return
		}
		name, use := flag.UnquoteUsage(f)
		w := "--" + f.Name
		if name != "" {
			w += " " + name
		}
		switch {
		case required(f):
			words = append(words, w)
		case strings.Contains(use, "(repeatable)"):
			optional = append(optional, "["+w+"]...")
		default:
			optional = append(optional, "["+w+"]")
		}
	})
	words = append(words, optional...)
	for _, g := range p.Groups {
		if groups[g.Name] {
			words = append(words, "["+g.Name+"]")
		}
	}
	if c.NArgs == Trailing {
		words = append(words, c.Args)
	}
	return wrap(head, words)
}

// wrap lays words out after head, continuing lines under the first word.
func wrap(head string, words []string) []string {
	indent := strings.Repeat(" ", len(head)+1)
	line := head
	var out []string
	for _, w := range words {
		if len(line)+1+len(w) > width && line != head && strings.TrimSpace(line) != "" {
			out = append(out, line)
			line = indent + w
			continue
		}
		line += " " + w
	}
	return append(out, line)
}

func required(f *flag.Flag) bool { return strings.Contains(f.Usage, "(required)") }

// Printable escapes what a terminal would act on in s: control characters
// (escape sequences start with one), bidirectional overrides and invalid
// UTF-8. Names and messages printed by the commands come from logs and
// agents, not only from this program.
func Printable(s string) string {
	clean := true
	for _, r := range s {
		if r == utf8.RuneError || unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i, r := range s {
		switch {
		case r == utf8.RuneError && !strings.HasPrefix(s[i:], string(utf8.RuneError)):
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r):
			q := strconv.QuoteToASCII(string(r))
			b.WriteString(q[1 : len(q)-1])
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}
