package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/wfpnats/wfp/engine"
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

// classifyCmd asks the engine what a layer's filters do with one input
// and prints the matching filters in evaluation order, then the decision.
func classifyCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("classify", stderr)
	var c conn
	c.register(fs)
	req := engine.ClassifyRequest{Fields: map[string]string{}}
	fs.StringVar(&req.Layer, "layer", "", "layer, e.g. ALE_AUTH_CONNECT_V4 (required)")
	fs.Var(fieldValues(req.Fields), "field", "condition field value NAME=VALUE of the traffic (repeatable), e.g. IP_REMOTE_PORT=22")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	if req.Layer == "" {
		return fmt.Errorf("classify: --layer is required")
	}
	nc, err := c.dial()
	if err != nil {
		return err
	}
	defer nc.Close()
	resp, err := engine.NewClient(nc, engine.WithPrefix(c.prefix)).Classify(ctx, req)
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(stdout, resp)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	if len(resp.Filters) > 0 {
		fmt.Fprintln(tw, "ID\tWEIGHT\tACTION\tVERDICT\tNAME\tWHY")
	}
	for _, s := range resp.Filters {
		verdict := "-"
		if s.Evaluated {
			verdict = s.Verdict.String()
		}
		fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%s\t%s\n", s.Filter.ID, s.Filter.Weight, s.Filter.Action, verdict, printable(s.Filter.Name), printable(why(s)))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "%s: %s (as of log sequence %d)\n", resp.Decision, resp.Reason, resp.Seq)
	return err
}

// why is a step's reason, with who answered for its callout and what it
// said beside its verdict: "(agent auditor: hits=2)".
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
