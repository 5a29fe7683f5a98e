package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"unicode"
	"unicode/utf8"

	"github.com/nats-io/nats.go"

	"github.com/wfpnats/wfp/engine"
	"github.com/wfpnats/wfp/events"
	"github.com/wfpnats/wfp/internal/natsconn"
)

// conn holds the flags every management command shares.
type conn struct {
	natsconn.Flags
	prefix string
}

func (c *conn) register(fs *flag.FlagSet) {
	c.Flags.Register(fs)
	fs.StringVar(&c.prefix, "prefix", events.DefaultPrefix, "subject prefix of the engine")
}

func (c *conn) dial() (*nats.Conn, error) { return c.Connect("wfp-engine-cli") }

// conditions collects repeated --condition FIELD=VALUE flags.
type conditions []events.Condition

func (cs *conditions) String() string { return fmt.Sprint(*cs) }

func (cs *conditions) Set(s string) error {
	field, value, ok := strings.Cut(s, "=")
	if !ok || field == "" {
		return fmt.Errorf("want FIELD=VALUE, got %q", s)
	}
	*cs = append(*cs, events.Condition{Field: field, Match: events.MatchEqual, Value: value})
	return nil
}

// flagList collects a repeated string flag.
type flagList []string

func (l *flagList) String() string     { return strings.Join(*l, ",") }
func (l *flagList) Set(s string) error { *l = append(*l, s); return nil }

func manage(ctx context.Context, noun, verb string, args []string, stdout, stderr io.Writer) error {
	fs := newFlags(noun+" "+verb, stderr)
	var c conn
	c.register(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	var act func(*engine.Client) error

	switch noun + " " + verb {
	case "callout add":
		var co events.Callout
		fs.StringVar(&co.Key, "key", "", "callout key (UUID; required)")
		fs.StringVar(&co.Name, "name", "", "display name (required)")
		fs.StringVar(&co.Description, "description", "", "description")
		fs.StringVar(&co.Layer, "layer", "", "the layer the callout applies to (filters naming it must be in it)")
		fs.Var((*flagList)(&co.Flags), "flag", "callout flag (repeatable): "+strings.Join(events.CalloutFlags, ", "))
		sessionFlag(fs, &co.Session)
		act = func(cl *engine.Client) error {
			if co.Key == "" {
				return fmt.Errorf("callout add: --key is required")
			}
			got, err := cl.AddCallout(ctx, co)
			if err != nil {
				return err
			}
			if *asJSON {
				return writeJSON(stdout, got)
			}
			_, err = fmt.Fprintf(stdout, "added callout %s %q\n", got.Key, got.Name)
			return err
		}
	case "callout delete":
		key := fs.String("key", "", "callout key (UUID; required)")
		act = func(cl *engine.Client) error {
			if err := cl.DeleteCallout(ctx, *key); err != nil {
				return err
			}
			_, err := fmt.Fprintf(stdout, "deleted callout %s\n", *key)
			return err
		}
	case "callout list":
		act = func(cl *engine.Client) error {
			resp, err := cl.ListCallouts(ctx)
			if err != nil {
				return err
			}
			if *asJSON {
				return writeJSON(stdout, resp.Callouts)
			}
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "CALLOUT\tNAME\tLAYER\tFILTERS\tREGISTERED\tAGENTS")
			for _, co := range resp.Callouts {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", co.Key, printable(co.Name), printable(dash(co.Layer)), co.FilterCount, yesNo(co.Registered), printable(agentList(co.Agents)))
			}
			return tw.Flush()
		}
	case "filter add":
		var f events.Filter
		var action string
		fs.StringVar(&f.Key, "key", "", "filter key (UUID; default: a new one)")
		fs.StringVar(&f.Name, "name", "", "display name (required)")
		fs.StringVar(&f.Description, "description", "", "description")
		fs.StringVar(&f.Layer, "layer", "", "layer (required)")
		fs.Uint64Var(&f.Weight, "weight", 0, "weight")
		fs.StringVar(&action, "action", "", "action, one of "+actionNames()+" (required)")
		fs.StringVar(&f.CalloutKey, "callout", "", "callout key, for callout actions")
		fs.StringVar(&f.ProviderKey, "provider", "", "provider key (UUID)")
		fs.Var((*conditions)(&f.Conditions), "condition", "condition FIELD=VALUE (repeatable)")
		fs.Var((*flagList)(&f.Flags), "flag", "filter flag (repeatable): "+strings.Join(events.FilterFlags, ", "))
		sessionFlag(fs, &f.Session)
		notifyTimeout := fs.Duration("notify-timeout", engine.DefaultNotifyTimeout, "how long to wait for the callout's agents to accept the filter")
		act = func(cl *engine.Client) error {
			f.Action = events.ActionType(action)
			got, err := cl.AddFilter(ctx, f, engine.WithNotifyTimeout(*notifyTimeout))
			if err != nil {
				return err
			}
			if *asJSON {
				return writeJSON(stdout, got)
			}
			_, err = fmt.Fprintf(stdout, "added filter %s id %d\n", got.Key, got.ID)
			return err
		}
	case "filter delete":
		var ref engine.FilterRef
		fs.StringVar(&ref.FilterKey, "key", "", "filter key")
		fs.Uint64Var(&ref.FilterID, "id", 0, "filter id")
		act = func(cl *engine.Client) error {
			if (ref.FilterKey == "") == (ref.FilterID == 0) {
				return fmt.Errorf("filter delete: give --key or --id")
			}
			if err := cl.DeleteFilter(ctx, ref); err != nil {
				return err
			}
			_, err := fmt.Fprintf(stdout, "deleted filter %s\n", refString(ref))
			return err
		}
	case "filter list":
		var t engine.ListFiltersRequest
		fs.StringVar(&t.CalloutKey, "callout", "", "only filters naming this callout")
		fs.StringVar(&t.Layer, "layer", "", "only filters in this layer")
		fs.StringVar(&t.ProviderKey, "provider", "", "only filters of this provider")
		act = func(cl *engine.Client) error {
			resp, err := cl.ListFilters(ctx, t)
			if err != nil {
				return err
			}
			if *asJSON {
				return writeJSON(stdout, resp.Filters)
			}
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tFILTER\tCALLOUT\tLAYER\tACTION\tNAME")
			for _, f := range resp.Filters {
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", f.ID, f.Key, dash(f.CalloutKey), printable(f.Layer), printable(string(f.Action)), printable(f.Name))
			}
			fmt.Fprintf(tw, "(%d filters as of log sequence %d)\n", len(resp.Filters), resp.Seq)
			return tw.Flush()
		}
	default:
		return fmt.Errorf("unknown command %q\n%s", noun+" "+verb, usage)
	}

	if err := parse(fs, args); err != nil {
		return err
	}
	nc, err := c.dial()
	if err != nil {
		return err
	}
	defer nc.Close()
	return act(engine.NewClient(nc, engine.WithPrefix(c.prefix)))
}

// agentList shows a callout's registered agents: id, mode and options.
func agentList(agents []engine.AgentInfo) string {
	if len(agents) == 0 {
		return "-"
	}
	parts := make([]string, len(agents))
	for i, a := range agents {
		parts[i] = a.AgentID + " (" + a.Mode
		if a.Durable != "" {
			parts[i] += ", durable " + a.Durable
		}
		if a.PostCommit {
			parts[i] += ", post-commit"
		}
		if a.Classify {
			parts[i] += ", classify"
		}
		parts[i] += ")"
	}
	return strings.Join(parts, ", ")
}

func refString(r engine.FilterRef) string {
	if r.FilterKey != "" {
		return r.FilterKey
	}
	return fmt.Sprintf("id %d", r.FilterID)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// actionNames lists the actions as events defines them.
func actionNames() string {
	names := make([]string, len(events.ActionTypes))
	for i, a := range events.ActionTypes {
		names[i] = string(a)
	}
	return strings.Join(names, ", ")
}

// printable escapes what a terminal would act on: control characters
// (escape sequences start with one), bidirectional overrides and invalid
// UTF-8. The engine refuses them in what it stores now, but names and
// messages also come from older logs and from agents.
func printable(s string) string {
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
