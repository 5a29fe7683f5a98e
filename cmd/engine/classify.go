package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/wfpnats/wfp/engine"
	"github.com/wfpnats/wfp/internal/cli"
)

// fieldValues collects repeated --field NAME=VALUE flags.
type fieldValues map[string]string

func (m fieldValues) String() string { return fmt.Sprint(map[string]string(m)) }

func (m fieldValues) Set(s string) error {
	name, value, ok := strings.Cut(s, "=")
	if !ok || name == "" {
		return fmt.Errorf("want NAME=VALUE, got %q", s)
	}
	if _, dup := m[name]; dup {
		return fmt.Errorf("field %s given twice", name)
	}
	m[name] = value
	return nil
}

// classifyCommand asks the engine what a layer's filters do with one
// input and prints the matching filters in evaluation order, then the
// decision.
func classifyCommand(s streams) *cli.Command {
	return &cli.Command{Name: "classify",
		Summary: "Ask what a layer's filters do with one piece of traffic: the matching filters in WFP's order, what each said, and the decision.",
		Flags: func(fs *flag.FlagSet) cli.Run {
			var c client
			c.register(fs, s)
			req := engine.ClassifyRequest{Fields: map[string]string{}}
			fs.StringVar(&req.Layer, "layer", "", "`LAYER`, e.g. ALE_AUTH_CONNECT_V4 (required)")
			fs.Var(fieldValues(req.Fields), "field", "condition field value `NAME=VALUE` of the traffic (repeatable), e.g. IP_REMOTE_PORT=22")
			return func(ctx context.Context, _ []string) error {
				return c.do(func(cl *engine.Client) error {
					resp, err := cl.Classify(ctx, req)
					if err != nil {
						return err
					}
					if c.asJSON {
						return writeJSON(s.stdout, resp)
					}
					return printClassify(s.stdout, resp)
				})
			}
		}}
}

func printClassify(w io.Writer, resp *engine.ClassifyResponse) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if len(resp.Filters) > 0 {
		fmt.Fprintln(tw, "ID\tWEIGHT\tACTION\tVERDICT\tNAME\tWHY")
	}
	for _, s := range resp.Filters {
		verdict := "-"
		if s.Evaluated {
			verdict = s.Verdict.String()
		}
		fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%s\t%s\n", s.Filter.ID, s.Filter.Weight, s.Filter.Action, verdict, cli.Printable(s.Filter.Name), cli.Printable(why(s)))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "%s: %s (as of log sequence %d)\n", resp.Decision, resp.Reason, resp.Seq)
	return err
}

// why is a step's reason, with the agent that answered for its callout
// and the note it gave (a callout-agent counts hits in its filter
// context).
func why(s engine.ClassifyStep) string {
	switch {
	case s.AgentID != "" && s.Note != "":
		return s.Reason + " (agent " + s.AgentID + ": " + s.Note + ")"
	case s.AgentID != "":
		return s.Reason + " (agent " + s.AgentID + ")"
	case s.Note != "":
		return s.Reason + " (" + s.Note + ")"
	}
	return s.Reason
}
