package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"text/tabwriter"
	"time"
)

// Units of figures. Values are stored in these units in the JSON.
const (
	unitPerSec = "/s"       // a rate: events or messages per second
	unitMicros = "µs"       // a latency
	unitSecs   = "s"        // a duration
	unitBytes  = "B/filter" // heap bytes per live filter
)

// Target is what a figure must meet. On is "ratio" (ours/baseline) or
// "ours" (the absolute value of our figure); Op is ">=" or "<=".
type Target struct {
	On    string  `json:"on"`
	Op    string  `json:"op"`
	Value float64 `json:"value"`
	Text  string  `json:"text"`
}

func ratioAtLeast(v float64) *Target {
	return &Target{On: "ratio", Op: ">=", Value: v, Text: fmt.Sprintf("ratio ≥ %g", v)}
}

func ratioAtMost(v float64) *Target {
	return &Target{On: "ratio", Op: "<=", Value: v, Text: fmt.Sprintf("ratio ≤ %g", v)}
}

func oursAtMost(v float64, unit string) *Target {
	return &Target{On: "ours", Op: "<=", Value: v, Text: "ours ≤ " + formatValue(v, unit)}
}

// Figure is one row of the report: our figure, the raw baseline measured
// in the same run, and Ratio = Ours/Baseline, always in that direction.
// For rates a ratio above 1 is better than raw, for latencies, durations and
// bytes below 1 is.
type Figure struct {
	ID       string  `json:"id"`
	Scenario string  `json:"scenario"`
	Name     string  `json:"name"`
	Unit     string  `json:"unit"`
	Ours     float64 `json:"ours"`
	Baseline float64 `json:"baseline"`
	// BaselineName says what the baseline is.
	BaselineName string `json:"baselineName"`
	// Ratio is Ours/Baseline, or 0 when the baseline is 0 (possible only
	// for the notify latencies, which clamp an early notify to 0).
	Ratio  float64 `json:"ratio"`
	Target *Target `json:"target,omitempty"`
	// Met is set for figures with a target.
	Met  *bool  `json:"met,omitempty"`
	Note string `json:"note,omitempty"`
}

func newFigure(scenario, id, name, unit string, ours, baseline float64, baselineName string, t *Target, note string) Figure {
	f := Figure{ID: id, Scenario: scenario, Name: name, Unit: unit, Ours: ours, Baseline: baseline,
		BaselineName: baselineName, Target: t, Note: note}
	if baseline != 0 {
		f.Ratio = ours / baseline
	}
	if t != nil {
		v := f.Ratio
		if t.On == "ours" {
			v = ours
		}
		met := v <= t.Value
		if t.Op == ">=" {
			met = v >= t.Value
		}
		if math.IsNaN(v) || ours < 0 || (t.On == "ratio" && (ours <= 0 || baseline <= 0)) {
			met = false // nothing measured: never "met"
		}
		f.Met = &met
	}
	return f
}

// Report is the whole run: how it was made, every figure and the notes the
// scenarios left.
type Report struct {
	Mode          string    `json:"mode"`
	Command       string    `json:"command"`
	Started       time.Time `json:"started"`
	Seconds       float64   `json:"seconds"`
	GoVersion     string    `json:"goVersion"`
	GOOS          string    `json:"goos"`
	GOARCH        string    `json:"goarch"`
	NumCPU        int       `json:"numCPU"`
	GOMAXPROCS    int       `json:"gomaxprocs"`
	ServerVersion string    `json:"natsServerVersion"`
	Transport     string    `json:"transport"`
	Config        Config    `json:"config"`
	AddEvent      EventSize `json:"addEvent"`
	Figures       []Figure  `json:"figures"`
	Notes         []string  `json:"notes"`
}

// EventSize is the size of one FilterAdded event as the engine writes it:
// what the raw baselines publish.
type EventSize struct {
	Subject int `json:"subjectBytes"`
	Header  int `json:"headerBytes"`
	Payload int `json:"payloadBytes"`
}

func (r *Report) add(f Figure) { r.Figures = append(r.Figures, f) }

func (r *Report) note(format string, args ...any) {
	r.Notes = append(r.Notes, fmt.Sprintf(format, args...))
}

// Figure returns the figure with id.
func (r *Report) Figure(id string) (Figure, bool) {
	for _, f := range r.Figures {
		if f.ID == id {
			return f, true
		}
	}
	return Figure{}, false
}

// WriteTable prints the figures as an aligned table, then the notes.
func (r *Report) WriteTable(w io.Writer) {
	fmt.Fprintf(w, "wfp benchmark (%s): %s, %s/%s, %d CPUs (GOMAXPROCS %d), nats-server %s, %s, %.0fs\n",
		r.Mode, r.GoVersion, r.GOOS, r.GOARCH, r.NumCPU, r.GOMAXPROCS, r.ServerVersion, r.Transport, r.Seconds)
	fmt.Fprintf(w, "add event: %d B payload, %d B headers, %d B subject\n\n", r.AddEvent.Payload, r.AddEvent.Header, r.AddEvent.Subject)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "figure\tours\tbaseline\tours/baseline\ttarget\tmet?\t")
	fmt.Fprintln(tw, "------\t----\t--------\t-------------\t------\t----\t")
	for _, f := range r.Figures {
		target, met := "-", "-"
		if f.Target != nil {
			target = f.Target.Text
			met = "no"
			if *f.Met {
				met = "yes"
			}
		}
		ratio := "-"
		if f.Baseline != 0 {
			ratio = fmt.Sprintf("%.3f", f.Ratio)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s (%s)\t%s\t%s\t%s\t\n", f.Name, formatValue(f.Ours, f.Unit),
			formatValue(f.Baseline, f.Unit), f.BaselineName, ratio, target, met)
	}
	tw.Flush()
	var notes []string
	for _, f := range r.Figures {
		if f.Note != "" {
			notes = append(notes, f.Name+": "+f.Note)
		}
	}
	notes = append(notes, r.Notes...)
	if len(notes) > 0 {
		fmt.Fprintln(w, "\nnotes:")
		for _, n := range notes {
			fmt.Fprintln(w, "  - "+n)
		}
	}
}

// WriteJSON writes the report as indented JSON to path.
func (r *Report) WriteJSON(path string) error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o644)
}

// formatValue renders v in unit for the table.
func formatValue(v float64, unit string) string {
	switch unit {
	case unitPerSec:
		switch {
		case v >= 1e6:
			return fmt.Sprintf("%.2fM/s", v/1e6)
		case v >= 1e3:
			return fmt.Sprintf("%.1fk/s", v/1e3)
		}
		return fmt.Sprintf("%.0f/s", v)
	case unitMicros:
		if v >= 10000 {
			return fmt.Sprintf("%.1f ms", v/1000)
		}
		if v >= 1000 {
			return fmt.Sprintf("%.2f ms", v/1000)
		}
		return fmt.Sprintf("%.0f µs", v)
	case unitSecs:
		if v < 1 {
			return fmt.Sprintf("%.0f ms", v*1000)
		}
		return fmt.Sprintf("%.2f s", v)
	case unitBytes:
		return fmt.Sprintf("%.0f B", v)
	case unitPerAgent:
		return fmt.Sprintf("%.1f KB", v/1024)
	}
	return strings.TrimSpace(fmt.Sprintf("%g %s", v, unit))
}
