package test

import (
	"bytes"
	"encoding/hex"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wfpnats/wfp/engine"
	"github.com/wfpnats/wfp/events"
	"github.com/wfpnats/wfp/projection"
)

// The tests in this file keep docs/PROTOCOL.md honest: it is the page a
// client in another language is written from, so a header, endpoint,
// error code or payload field the code has and the page does not (or the
// other way round) fails here.

const protocolDocPath = "../docs/PROTOCOL.md"

// TestProtocolDoc_StringConstants: every exported string constant of
// events and engine is part of the protocol (header names, event types,
// actions, match types, flags, statuses, endpoints, error codes,
// transaction ops), so each must be in the page. The constants are read
// from the source, so a new one needs no change here to be checked.
func TestProtocolDoc_StringConstants(t *testing.T) {
	doc := readDoc(t, protocolDocPath)
	consts := stringConstants(t, "../events")
	for name, v := range stringConstants(t, "../engine") {
		consts["engine."+name] = v
	}

	// The source scan must see what the compiler sees: a scan that finds
	// nothing would pass everything.
	compiled := map[string]string{
		"HeaderMsgID": events.HeaderMsgID, "HeaderEvent": events.HeaderEvent, "HeaderSchema": events.HeaderSchema,
		"HeaderFilterKey": events.HeaderFilterKey, "HeaderFilterID": events.HeaderFilterID,
		"HeaderCalloutKey": events.HeaderCalloutKey, "HeaderLayer": events.HeaderLayer,
		"HeaderContentType": events.HeaderContentType, "ContentType": events.ContentType,
		"HeaderTxID": events.HeaderTxID, "HeaderTxPart": events.HeaderTxPart,
		"FilterAdded": string(events.FilterAdded), "CalloutDeleted": string(events.CalloutDeleted),
		"ActionCalloutUnknown": string(events.ActionCalloutUnknown), "MatchPrefix": events.MatchPrefix,
		"FlagORConditions": events.FlagORConditions, "CalloutFlagCommitAddNotify": events.CalloutFlagCommitAddNotify,
		"AgentBye": events.AgentBye, "NoCallout": events.NoCallout,
		"engine.EndpointTxApply": engine.EndpointTxApply, "engine.EndpointFilterGet": engine.EndpointFilterGet,
		"engine.CodeInternal": string(engine.CodeInternal), "engine.CodeEngineNotResponding": string(engine.CodeEngineNotResponding),
		"engine.OpFilterDelete": engine.OpFilterDelete, "engine.ServiceName": engine.ServiceName,
	}
	for name, want := range compiled {
		if got, ok := consts[name]; !ok || got != want {
			t.Errorf("source scan: %s = %q (found %v), compiled %q", name, got, ok, want)
		}
	}

	for name, v := range consts {
		if !strings.Contains(doc, "`"+v+"`") {
			t.Errorf("%s = %q is not in %s (as `%s`)", name, v, protocolDocPath, v)
		}
	}

	// Headers, endpoints and codes each have a table: check both ways.
	checkTable := func(heading, prefix string, want func(name string) bool, keep func(cell string) bool) {
		t.Helper()
		inDoc := firstCells(section(t, doc, heading))
		inCode := map[string]bool{}
		for name, v := range consts {
			if want(name) {
				inCode[v] = true
				if !inDoc[v] {
					t.Errorf("%s = %q is not a row of %q in %s", name, v, heading, protocolDocPath)
				}
			}
		}
		for cell := range inDoc {
			if keep(cell) && !inCode[cell] {
				t.Errorf("%q documents %q, which the code does not have (%s*)", heading, cell, prefix)
			}
		}
	}
	checkTable("### Headers", "events.Header",
		func(n string) bool { return strings.HasPrefix(n, "Header") },
		func(c string) bool { return strings.HasPrefix(c, "Wfp-") })
	checkTable("### Endpoints", "engine.Endpoint",
		func(n string) bool { return strings.HasPrefix(n, "engine.Endpoint") },
		func(string) bool { return true })
	checkTable("### Errors", "engine.Code",
		func(n string) bool { return strings.HasPrefix(n, "engine.Code") },
		func(string) bool { return true })
}

// TestProtocolDoc_PayloadFields reads the msgpack struct tags of the
// payload records and checks each against its table: key, JSON name,
// type and whether it is omitted when empty. A field added to the code
// without a row, or a row left for a field that is gone, fails.
func TestProtocolDoc_PayloadFields(t *testing.T) {
	doc := readDoc(t, protocolDocPath)
	for _, rec := range []struct {
		heading string
		typ     reflect.Type
	}{
		{"### Envelope", reflect.TypeFor[events.Event]()},
		{"### Filter", reflect.TypeFor[events.Filter]()},
		{"### Condition", reflect.TypeFor[events.Condition]()},
		{"### Callout", reflect.TypeFor[events.Callout]()},
		{"### Session", reflect.TypeFor[events.Session]()},
	} {
		rows := map[string][]string{}
		for _, r := range tableRows(section(t, doc, rec.heading)) {
			rows[unquote(r[0])] = r
		}
		seen := map[string]bool{}
		for f := range rec.typ.Fields() {
			tag, ok := f.Tag.Lookup("msgpack")
			if !ok {
				t.Errorf("%s.%s has no msgpack tag: its key on the wire is implicit", rec.typ.Name(), f.Name)
				continue
			}
			parts := strings.Split(tag, ",")
			key, omit := parts[0], slices.Contains(parts[1:], "omitempty")
			if key == "-" {
				continue
			}
			seen[key] = true
			omitted := "no"
			if omit {
				omitted = "yes"
			}
			jsonName, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			want := []string{key, jsonName, msgpackType(f.Type), omitted}
			r, ok := rows[key]
			if !ok {
				t.Errorf("%s.%s (msgpack key %q) has no row under %q in %s", rec.typ.Name(), f.Name, key, rec.heading, protocolDocPath)
				continue
			}
			if len(r) < 4 {
				t.Errorf("%q row %q has %d cells, want key, JSON name, type, omitted, meaning", rec.heading, key, len(r))
				continue
			}
			got := []string{unquote(r[0]), unquote(r[1]), r[2], r[3]}
			if !slices.Equal(got, want) {
				t.Errorf("%q row %q says %q, the code says %q (key, JSON name, type, omitted when empty)", rec.heading, key, got, want)
			}
		}
		for key := range rows {
			if !seen[key] {
				t.Errorf("%q documents key %q, which %s does not have", rec.heading, key, rec.typ.Name())
			}
		}
	}
}

// msgpackType names how the encoder writes a Go type, in the words of the
// page's type column.
func msgpackType(t reflect.Type) string {
	switch {
	case t == reflect.TypeFor[time.Time]():
		return "timestamp"
	case t.Kind() == reflect.String:
		return "str"
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Uint64:
		return "int"
	case t.Kind() == reflect.Pointer:
		return msgpackType(t.Elem())
	case t.Kind() == reflect.Struct:
		return "map"
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Uint8:
		return "bin"
	case t.Kind() == reflect.Slice:
		return "array of " + msgpackType(t.Elem())
	}
	return t.String()
}

// TestProtocolDoc_JSONFields: every JSON field of the API's and the agent
// protocol's messages is named in their part of the page.
func TestProtocolDoc_JSONFields(t *testing.T) {
	doc := readDoc(t, protocolDocPath)
	for heading, types := range map[string][]any{
		"## Management API": {
			engine.AddFilterRequest{}, engine.FilterRef{}, engine.CalloutRef{}, engine.FilterResponse{},
			engine.CalloutResponse{}, engine.DeleteResponse{}, engine.ListFiltersResponse{},
			engine.ListCalloutsResponse{}, engine.CalloutInfo{}, engine.AgentInfo{}, engine.TxOp{},
			engine.TxRequest{}, engine.TxResponse{}, engine.Rejection{}, engine.Error{}, projection.Template{},
			engine.ClassifyRequest{}, engine.ClassifyResponse{}, engine.ClassifyStep{},
			engine.OpenSessionRequest{}, engine.SessionResponse{}, engine.SessionRef{}, engine.CloseSessionResponse{},
			engine.SessionInfo{}, engine.ListSessionsResponse{},
		},
		"### Announcements":         {events.Announcement{}},
		"### Notify results and R7": {events.NotifyResult{}},
		"### Classify calls":        {events.ClassifyCall{}, events.ClassifyAnswer{}},
	} {
		sec := section(t, doc, heading)
		for _, v := range types {
			for _, name := range jsonNames(reflect.TypeOf(v)) {
				if !strings.Contains(sec, "`"+name+"`") && !strings.Contains(sec, `"`+name+`"`) {
					t.Errorf("%T field %q is not named under %q in %s", v, name, heading, protocolDocPath)
				}
			}
		}
	}
}

// jsonNames lists the JSON names of t's fields, those of embedded structs
// included (encoding/json flattens them).
func jsonNames(t reflect.Type) []string {
	var out []string
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch {
		case name == "-" || !f.IsExported():
		case f.Anonymous && name == "":
			out = append(out, jsonNames(f.Type)...)
		case name == "":
			out = append(out, f.Name)
		default:
			out = append(out, name)
		}
	}
	return out
}

// TestProtocolDoc_WorkedExampleIsWhatTheEncoderWrites: the hex dump on the
// page must be byte for byte what events.Encode writes for the event it
// describes, and decode back to it; so must the variants the page quotes.
func TestProtocolDoc_WorkedExampleIsWhatTheEncoderWrites(t *testing.T) {
	doc := readDoc(t, protocolDocPath)
	dump := hexDump(t, section(t, doc, "### Worked example"))

	ev := &events.Event{
		Schema: 1, Type: events.FilterAdded, ID: "0b5e8a8e-3f57-4c1e-9d0a-2f6f0f4a7c11",
		Time: time.Date(2025, 1, 2, 3, 4, 5, 600_000_000, time.UTC),
		Filter: &events.Filter{
			Key: "33333333-3333-4333-8333-333333333333", ID: 4, Name: "inspect rdp", Layer: "ALE_AUTH_CONNECT_V4",
			Conditions: []events.Condition{{Field: "IP_REMOTE_PORT", Match: events.MatchEqual, Value: "3389"}},
			Action:     events.ActionCalloutInspection, CalloutKey: "6f1c2b3a-9d4e-4f5a-8b6c-7d8e9f0a1b2c",
		},
	}
	enc, err := events.Encode(ev)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(dump, enc) {
		t.Errorf("the page's hex dump (%d bytes) is not what the encoder writes (%d bytes):\npage:    %x\nencoder: %x",
			len(dump), len(enc), dump, enc)
	}
	if !strings.Contains(doc, strconv.Itoa(len(enc))+" bytes:") {
		t.Errorf("the page does not give the payload's length as %q", strconv.Itoa(len(enc))+" bytes:")
	}
	got, err := events.Decode(dump)
	if err != nil {
		t.Fatalf("decoding the page's hex dump: %v", err)
	}
	if !got.Time.Equal(ev.Time) {
		t.Errorf("decoded time %v, want %v", got.Time, ev.Time)
	}
	got.Time = ev.Time
	if !reflect.DeepEqual(got, ev) {
		t.Errorf("the page's hex dump decodes to %+v / %+v, want %+v / %+v", got, got.Filter, ev, ev.Filter)
	}

	// The variants the page quotes: compact integers and a 32-bit time.
	f := *ev.Filter
	f.Weight, f.ID = 300, 70000
	compact := *ev
	compact.Filter = &f
	noNanos := *ev
	noNanos.Time = ev.Time.Truncate(time.Second)
	for _, v := range []struct {
		ev     *events.Event
		quoted string
	}{{&compact, "cd 01 2c"}, {&compact, "ce 00 01 11 70"}, {&noNanos, "d6 ff 67 76 02 25"}} {
		b, err := events.Encode(v.ev)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := hex.DecodeString(strings.ReplaceAll(v.quoted, " ", ""))
		if !strings.Contains(doc, "`"+v.quoted+"`") || !bytes.Contains(b, want) {
			t.Errorf("the page quotes `%s`, the encoder writes %x", v.quoted, b)
		}
	}
}

// hexDump parses the first `hexdump -C` style block of sec.
func hexDump(t *testing.T, sec string) []byte {
	t.Helper()
	line := regexp.MustCompile(`^([0-9a-f]{8})  ((?:[0-9a-f]{2} {1,2})+)\s*\|`)
	var out []byte
	for l := range strings.Lines(sec) {
		m := line.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		if off, _ := strconv.ParseUint(m[1], 16, 32); int(off) != len(out) {
			t.Fatalf("hex dump line at offset %s follows %d bytes", m[1], len(out))
		}
		b, err := hex.DecodeString(strings.Join(strings.Fields(m[2]), ""))
		if err != nil {
			t.Fatalf("hex dump line %q: %v", l, err)
		}
		out = append(out, b...)
	}
	if len(out) == 0 {
		t.Fatal("no hex dump found in the worked example")
	}
	return out
}

// TestProtocolDoc_TimingAndLimits: the values a client must agree on are
// the code's.
func TestProtocolDoc_TimingAndLimits(t *testing.T) {
	doc := readDoc(t, protocolDocPath)
	values := map[string]bool{}
	for _, r := range tableRows(section(t, doc, "## Timing and limits")) {
		values[r[len(r)-1]] = true
	}
	for what, v := range map[string]string{
		"events.SchemaVersion":          strconv.Itoa(events.SchemaVersion),
		"events.AnnounceInterval":       events.AnnounceInterval.String(),
		"events.AgentTTL":               events.AgentTTL.String(),
		"events.AgentGrace":             events.AgentGrace.String(),
		"engine.DefaultNotifyTimeout":   engine.DefaultNotifyTimeout.String(),
		"engine.MaxTxOps":               strconv.Itoa(engine.MaxTxOps),
		"engine.DefaultSessionLease":    engine.DefaultSessionLease.String(),
		"engine.MinSessionLease":        engine.MinSessionLease.String(),
		"engine.MaxSessionLease":        engine.MaxSessionLease.String(),
		"engine.DefaultClassifyTimeout": engine.DefaultClassifyTimeout.String(),
		"events.AgentClassifyTimeout":   events.AgentClassifyTimeout.String(),
		"events.MaxNoteLen":             strconv.Itoa(events.MaxNoteLen),
	} {
		if !values["`"+v+"`"] {
			t.Errorf("%s = %s is not in the timing and limits table", what, v)
		}
	}
}

// TestProtocolDoc_LinksStayInsideTheRepo: README and docs/ link only to
// files of this repository (and to headings that exist), never outside it.
func TestProtocolDoc_LinksStayInsideTheRepo(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	pages, _ := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	pages = append(pages, filepath.Join(root, "README.md"))
	link := regexp.MustCompile(`\]\(([^)\s]+)\)`)
	for _, page := range pages {
		for _, m := range link.FindAllStringSubmatch(prose(readDoc(t, page)), -1) {
			target, anchor, _ := strings.Cut(m[1], "#")
			rel, _ := filepath.Rel(root, page)
			if strings.Contains(target, ":") {
				t.Errorf("%s links outside the repository: %s", rel, m[1])
				continue
			}
			file := page
			if target != "" {
				file = filepath.Join(filepath.Dir(page), target)
			}
			if r, err := filepath.Rel(root, file); err != nil || strings.HasPrefix(r, "..") {
				t.Errorf("%s links outside the repository: %s", rel, m[1])
				continue
			}
			if _, err := os.Stat(file); err != nil {
				t.Errorf("%s links to a missing file: %s", rel, m[1])
				continue
			}
			if anchor != "" && strings.HasSuffix(file, ".md") && !slices.Contains(headingSlugs(readDoc(t, file)), anchor) {
				t.Errorf("%s links to a heading that does not exist: %s", rel, m[1])
			}
		}
	}
}

// headingSlugs lists the anchors GitHub gives a page's headings.
func headingSlugs(doc string) []string {
	var out []string
	for l := range strings.Lines(prose(doc)) {
		if !strings.HasPrefix(l, "#") {
			continue
		}
		var b strings.Builder
		for _, r := range strings.ToLower(strings.TrimSpace(strings.TrimLeft(l, "#"))) {
			switch {
			case r == ' ':
				b.WriteRune('-')
			case r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9':
				b.WriteRune(r)
			}
		}
		out = append(out, b.String())
	}
	return out
}

func readDoc(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// prose is doc without its fenced code blocks.
func prose(doc string) string {
	var b strings.Builder
	fenced := false
	for l := range strings.Lines(doc) {
		if strings.HasPrefix(l, "```") {
			fenced = !fenced
			continue
		}
		if !fenced {
			b.WriteString(l)
		}
	}
	return b.String()
}

// section returns the part of doc under the heading line that equals
// heading, up to the next heading of the same or a higher level.
func section(t *testing.T, doc, heading string) string {
	t.Helper()
	level := len(heading) - len(strings.TrimLeft(heading, "#"))
	var b strings.Builder
	in, fenced := false, false
	for l := range strings.Lines(doc) {
		if strings.HasPrefix(l, "```") {
			fenced = !fenced
		}
		if !fenced && strings.HasPrefix(l, "#") {
			if strings.TrimSpace(l) == heading {
				in = true
				continue
			}
			if in && len(l)-len(strings.TrimLeft(l, "#")) <= level {
				break
			}
		}
		if in {
			b.WriteString(l)
		}
	}
	if !in {
		t.Fatalf("%s has no heading %q", protocolDocPath, heading)
	}
	return b.String()
}

// tableRows returns the cells of the data rows of the tables in sec: every
// table line but a table's first (its header) and its rule.
func tableRows(sec string) [][]string {
	var rows [][]string
	inTable := false
	for l := range strings.Lines(sec) {
		l = strings.TrimSpace(l)
		if !strings.HasPrefix(l, "|") {
			inTable = false
			continue
		}
		header := !inTable
		inTable = true
		if header || strings.Trim(l, "|-: ") == "" {
			continue
		}
		l = strings.ReplaceAll(strings.Trim(l, "|"), `\|`, "\x00")
		var cells []string
		for c := range strings.SplitSeq(l, "|") {
			cells = append(cells, strings.ReplaceAll(strings.TrimSpace(c), "\x00", "|"))
		}
		rows = append(rows, cells)
	}
	return rows
}

// firstCells is the set of the rows' first cells, unquoted.
func firstCells(sec string) map[string]bool {
	out := map[string]bool{}
	for _, r := range tableRows(sec) {
		out[unquote(r[0])] = true
	}
	return out
}

func unquote(cell string) string { return strings.Trim(cell, "`") }

// stringConstants returns the exported constants of the Go package in dir
// (test files aside) that are given a string literal, by name.
func stringConstants(t *testing.T, dir string) map[string]string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	fset := token.NewFileSet()
	for _, file := range files {
		if strings.HasSuffix(file, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, file, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, decl := range f.Decls {
			gd, ok := decl.(*ast.GenDecl)
			if !ok || gd.Tok != token.CONST {
				continue
			}
			for _, spec := range gd.Specs {
				vs := spec.(*ast.ValueSpec)
				for i, name := range vs.Names {
					if !name.IsExported() || i >= len(vs.Values) {
						continue
					}
					if lit, ok := vs.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
						if out[name.Name], err = strconv.Unquote(lit.Value); err != nil {
							t.Fatal(err)
						}
					}
				}
			}
		}
	}
	return out
}
