package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/nats-io/nats.go"

	"github.com/wfpnats/wfp/engine"
	"github.com/wfpnats/wfp/events"
	"github.com/wfpnats/wfp/internal/cli"
	"github.com/wfpnats/wfp/internal/natsconn"
)

// conn holds the flags every management command shares.
type conn struct {
	natsconn.Flags
	prefix string
}

func (c *conn) register(fs *flag.FlagSet) {
	c.Flags.Register(fs)
	fs.StringVar(&c.prefix, "prefix", events.DefaultPrefix, "subject `PREFIX` of the engine")
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

// client is what every management command shares: its connection flags
// and --json, then a client of the engine.
type client struct {
	conn
	asJSON bool
	s      streams
}

func (c *client) register(fs *flag.FlagSet, s streams) {
	c.conn.register(fs)
	c.s = s
	fs.BoolVar(&c.asJSON, "json", false, "print JSON")
}

// do connects and runs act with a client of the engine.
func (c *client) do(act func(*engine.Client) error) error {
	nc, err := c.dial()
	if err != nil {
		return err
	}
	defer nc.Close()
	return act(engine.NewClient(nc, engine.WithPrefix(c.prefix)))
}

func calloutAdd(s streams) *cli.Command {
	return &cli.Command{Name: "callout add", Summary: "Add a callout object: what filters with a callout action name.",
		Flags: func(fs *flag.FlagSet) cli.Run {
			var c client
			c.register(fs, s)
			var co events.Callout
			fs.StringVar(&co.Key, "key", "", "callout key, a `UUID` (required)")
			fs.StringVar(&co.Name, "name", "", "display `NAME` (required)")
			fs.StringVar(&co.Description, "description", "", "description `TEXT`")
			fs.StringVar(&co.Layer, "layer", "", "the `LAYER` the callout applies to (filters naming it must be in it)")
			fs.Var((*flagList)(&co.Flags), "flag", "callout `FLAG` (repeatable): "+strings.Join(events.CalloutFlags, ", "))
			sessionFlag(fs, &co.Session)
			return func(ctx context.Context, _ []string) error {
				return c.do(func(cl *engine.Client) error {
					got, err := cl.AddCallout(ctx, co)
					if err != nil {
						return err
					}
					if c.asJSON {
						return writeJSON(s.stdout, got)
					}
					_, err = fmt.Fprintf(s.stdout, "added callout %s %q\n", got.Key, got.Name)
					return err
				})
			}
		}}
}

func calloutDelete(s streams) *cli.Command {
	return &cli.Command{Name: "callout delete", Summary: "Delete a callout object; refused (FWP_E_IN_USE) while filters name it.",
		Flags: func(fs *flag.FlagSet) cli.Run {
			var c conn
			c.register(fs)
			key := fs.String("key", "", "callout key, a `UUID` (required)")
			return func(ctx context.Context, _ []string) error {
				return (&client{conn: c}).do(func(cl *engine.Client) error {
					if err := cl.DeleteCallout(ctx, *key); err != nil {
						return err
					}
					_, err := fmt.Fprintf(s.stdout, "deleted callout %s\n", *key)
					return err
				})
			}
		}}
}

func calloutGet(s streams) *cli.Command {
	return &cli.Command{Name: "callout get", Summary: "Show one callout object: the filters naming it and the agents registered for it.",
		Flags: func(fs *flag.FlagSet) cli.Run {
			var c client
			c.register(fs, s)
			key := fs.String("key", "", "callout key, a `UUID` (required)")
			return func(ctx context.Context, _ []string) error {
				return c.do(func(cl *engine.Client) error {
					co, err := cl.GetCallout(ctx, *key)
					if err != nil {
						return err
					}
					if c.asJSON {
						return writeJSON(s.stdout, co)
					}
					return printCallouts(s.stdout, []engine.CalloutInfo{*co})
				})
			}
		}}
}

func calloutList(s streams) *cli.Command {
	return &cli.Command{Name: "callout list", Summary: "List the callout objects, with the filters naming each and the agents registered for it.",
		Flags: func(fs *flag.FlagSet) cli.Run {
			var c client
			c.register(fs, s)
			return func(ctx context.Context, _ []string) error {
				return c.do(func(cl *engine.Client) error {
					resp, err := cl.ListCallouts(ctx)
					if err != nil {
						return err
					}
					if c.asJSON {
						return writeJSON(s.stdout, resp.Callouts)
					}
					return printCallouts(s.stdout, resp.Callouts)
				})
			}
		}}
}

func printCallouts(w io.Writer, cs []engine.CalloutInfo) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CALLOUT\tNAME\tLAYER\tFILTERS\tREGISTERED\tAGENTS")
	for _, co := range cs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", co.Key, cli.Printable(co.Name), cli.Printable(dash(co.Layer)), co.FilterCount,
			yesNo(co.Registered), cli.Printable(agentList(co.Agents)))
	}
	return tw.Flush()
}

func filterAdd(s streams) *cli.Command {
	return &cli.Command{Name: "filter add",
		Summary: "Add a filter. One naming a callout with running agents is added once they all accept it (R7).",
		Flags: func(fs *flag.FlagSet) cli.Run {
			var c client
			c.register(fs, s)
			var f events.Filter
			var action string
			fs.StringVar(&f.Key, "key", "", "filter key, a `UUID` (default: a new one)")
			fs.StringVar(&f.Name, "name", "", "display `NAME` (required)")
			fs.StringVar(&f.Description, "description", "", "description `TEXT`")
			fs.StringVar(&f.Layer, "layer", "", "`LAYER`, e.g. ALE_AUTH_CONNECT_V4 (required)")
			fs.Uint64Var(&f.Weight, "weight", 0, "weight `N`")
			fs.StringVar(&action, "action", "", "`ACTION`, one of "+actionNames()+" (required)")
			fs.StringVar(&f.CalloutKey, "callout", "", "callout key, a `UUID`, for callout actions")
			fs.StringVar(&f.ProviderKey, "provider", "", "provider key, a `UUID`")
			fs.Var((*conditions)(&f.Conditions), "condition", "condition `FIELD=VALUE` (repeatable)")
			fs.Var((*flagList)(&f.Flags), "flag", "filter `FLAG` (repeatable): "+strings.Join(events.FilterFlags, ", "))
			sessionFlag(fs, &f.Session)
			notifyTimeout := fs.Duration("notify-timeout", engine.DefaultNotifyTimeout, "how long to wait for the callout's agents to accept the filter, a `DURATION`")
			return func(ctx context.Context, _ []string) error {
				f.Action = events.ActionType(action)
				return c.do(func(cl *engine.Client) error {
					got, err := cl.AddFilter(ctx, f, engine.WithNotifyTimeout(*notifyTimeout))
					if err != nil {
						return err
					}
					if c.asJSON {
						return writeJSON(s.stdout, got)
					}
					_, err = fmt.Fprintf(s.stdout, "added filter %s id %d\n", got.Key, got.ID)
					return err
				})
			}
		}}
}

// filterRef registers --key and --id, of which a command takes one.
func filterRef(fs *flag.FlagSet, ref *engine.FilterRef) func() error {
	fs.StringVar(&ref.FilterKey, "key", "", "filter key, a `UUID` (or --id)")
	fs.Uint64Var(&ref.FilterID, "id", 0, "filter id `N` (or --key)")
	return func() error {
		if (ref.FilterKey == "") == (ref.FilterID == 0) {
			return cli.Usagef("give --key or --id")
		}
		return nil
	}
}

func filterDelete(s streams) *cli.Command {
	return &cli.Command{Name: "filter delete", Summary: "Delete a filter, by key or id. Every agent of its callout is told, and the delete stands whatever they answer.",
		Flags: func(fs *flag.FlagSet) cli.Run {
			var c conn
			c.register(fs)
			var ref engine.FilterRef
			check := filterRef(fs, &ref)
			return func(ctx context.Context, _ []string) error {
				if err := check(); err != nil {
					return err
				}
				return (&client{conn: c}).do(func(cl *engine.Client) error {
					if err := cl.DeleteFilter(ctx, ref); err != nil {
						return err
					}
					_, err := fmt.Fprintf(s.stdout, "deleted filter %s\n", refString(ref))
					return err
				})
			}
		}}
}

func filterGet(s streams) *cli.Command {
	return &cli.Command{Name: "filter get", Summary: "Show one filter, by key or id, as JSON.",
		Flags: func(fs *flag.FlagSet) cli.Run {
			var c conn
			c.register(fs)
			var ref engine.FilterRef
			check := filterRef(fs, &ref)
			fs.Bool("json", true, "print JSON (the only format; accepted for symmetry)")
			return func(ctx context.Context, _ []string) error {
				if err := check(); err != nil {
					return err
				}
				return (&client{conn: c}).do(func(cl *engine.Client) error {
					f, err := cl.GetFilter(ctx, ref)
					if err != nil {
						return err
					}
					return writeJSON(s.stdout, f)
				})
			}
		}}
}

func filterList(s streams) *cli.Command {
	return &cli.Command{Name: "filter list", Summary: "List the filters that match every template flag given, in id order, as of one log sequence.",
		Flags: func(fs *flag.FlagSet) cli.Run {
			var c client
			c.register(fs, s)
			var t engine.ListFiltersRequest
			fs.StringVar(&t.CalloutKey, "callout", "", "only filters naming this callout key, a `UUID`")
			fs.StringVar(&t.Layer, "layer", "", "only filters in this `LAYER`")
			fs.StringVar(&t.ProviderKey, "provider", "", "only filters of this provider key, a `UUID`")
			return func(ctx context.Context, _ []string) error {
				return c.do(func(cl *engine.Client) error {
					resp, err := cl.ListFilters(ctx, t)
					if err != nil {
						return err
					}
					if c.asJSON {
						return writeJSON(s.stdout, resp.Filters)
					}
					tw := tabwriter.NewWriter(s.stdout, 0, 4, 2, ' ', 0)
					fmt.Fprintln(tw, "ID\tFILTER\tCALLOUT\tLAYER\tACTION\tNAME")
					for _, f := range resp.Filters {
						fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", f.ID, f.Key, dash(f.CalloutKey), cli.Printable(f.Layer),
							cli.Printable(string(f.Action)), cli.Printable(f.Name))
					}
					fmt.Fprintf(tw, "(%d filters as of log sequence %d)\n", len(resp.Filters), resp.Seq)
					return tw.Flush()
				})
			}
		}}
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
