package classify

import (
	"errors"
	"testing"

	"github.com/wfpnats/wfp/events"
)

const testLayer = "ALE_AUTH_CONNECT_V4"

// matchOne compiles one filter with conditions cs and reports whether it
// matches in.
func matchOne(t *testing.T, in Values, cs ...events.Condition) bool {
	t.Helper()
	f := &events.Filter{Key: "k", ID: 1, Layer: testLayer, Action: events.ActionBlock, Conditions: cs}
	got, err := Compile(testLayer, []*events.Filter{f}).Match(in)
	if err != nil {
		t.Fatalf("Match(%v): %v", in, err)
	}
	return len(got) == 1
}

func c(field, match, value string) events.Condition {
	return events.Condition{Field: field, Match: match, Value: value}
}

const (
	port  = "IP_REMOTE_PORT"
	proto = "IP_PROTOCOL"
	raddr = "IP_REMOTE_ADDRESS"
	app   = "ALE_APP_ID"
)

func TestMatchTypes(t *testing.T) {
	const chrome = `\device\harddiskvolume1\program files\google\chrome.exe`
	const chromeMixed = `\Device\HarddiskVolume1\Program Files\Google\Chrome.EXE`
	const sd = "O:SYG:SYD:(A;;CC;;;S-1-5-18)"
	for _, tc := range []struct {
		name  string
		cond  events.Condition
		input string
		want  bool
	}{
		// Ports, uint16.
		{"port equal", c(port, events.MatchEqual, "23"), "23", true},
		{"port equal other", c(port, events.MatchEqual, "23"), "24", false},
		{"empty match is equal", c(port, "", "23"), "23", true},
		{"port hex", c(port, events.MatchEqual, "0x17"), "23", true},
		{"leading zero is decimal", c(port, events.MatchEqual, "023"), "23", true},
		{"port not-equal", c(port, events.MatchNotEqual, "23"), "24", true},
		{"port not-equal same", c(port, events.MatchNotEqual, "23"), "23", false},
		{"port greater", c(port, events.MatchGreater, "1023"), "1024", true},
		{"port greater is strict", c(port, events.MatchGreater, "1023"), "1023", false},
		{"port less", c(port, events.MatchLess, "1024"), "1023", true},
		{"port less is strict", c(port, events.MatchLess, "1024"), "1024", false},
		{"port range low end", c(port, events.MatchRange, "1024-65535"), "1024", true},
		{"port range high end", c(port, events.MatchRange, "1024-65535"), "65535", true},
		{"port range below", c(port, events.MatchRange, "1024-65535"), "1023", false},
		{"port range single", c(port, events.MatchRange, "53-53"), "53", true},
		// Protocol, uint8.
		{"protocol tcp", c(proto, events.MatchEqual, "6"), "6", true},
		{"protocol udp is not tcp", c(proto, events.MatchEqual, "6"), "17", false},
		// uint64.
		{"uint64 max", c("IP_LOCAL_INTERFACE", events.MatchEqual, "18446744073709551615"), "0xffffffffffffffff", true},
		// Flags.
		{"flags all set", c("FLAGS", events.MatchFlagsAllSet, "0x5"), "0x7", true},
		{"flags all set, one missing", c("FLAGS", events.MatchFlagsAllSet, "0x5"), "0x4", false},
		{"flags any set", c("FLAGS", events.MatchFlagsAnySet, "0x5"), "0x4", true},
		{"flags any set, none", c("FLAGS", events.MatchFlagsAnySet, "0x5"), "0x2", false},
		{"flags none set", c("FLAGS", events.MatchFlagsNoneSet, "0x5"), "0x2", true},
		{"flags none set, one set", c("FLAGS", events.MatchFlagsNoneSet, "0x5"), "0x6", false},
		{"flags on a port", c(port, events.MatchFlagsAnySet, "0x100"), "256", true},
		// IPv4 with masks.
		{"v4 network", c(raddr, events.MatchEqual, "10.0.0.0/8"), "10.1.2.3", true},
		{"v4 outside network", c(raddr, events.MatchEqual, "10.0.0.0/8"), "11.0.0.1", false},
		{"v4 host bits masked", c(raddr, events.MatchEqual, "10.1.2.3/8"), "10.200.0.1", true},
		{"v4 /0", c(raddr, events.MatchEqual, "0.0.0.0/0"), "203.0.113.9", true},
		{"v4 /32", c(raddr, events.MatchEqual, "10.1.2.3/32"), "10.1.2.3", true},
		{"v4 plain address", c(raddr, events.MatchEqual, "10.1.2.3"), "10.1.2.3", true},
		{"v4 plain address other", c(raddr, events.MatchEqual, "10.1.2.3"), "10.1.2.4", false},
		{"v4 /31 boundary", c(raddr, events.MatchEqual, "10.1.2.2/31"), "10.1.2.4", false},
		{"v4 not-equal outside", c(raddr, events.MatchNotEqual, "10.0.0.0/8"), "11.0.0.1", true},
		{"v4 not-equal inside", c(raddr, events.MatchNotEqual, "10.0.0.0/8"), "10.9.9.9", false},
		{"v4 prefix", c(raddr, events.MatchPrefix, "10.1.2.0/24"), "10.1.2.200", true},
		{"v4 prefix outside", c(raddr, events.MatchPrefix, "10.1.2.0/24"), "10.1.3.1", false},
		{"v4 range", c(raddr, events.MatchRange, "10.0.0.1-10.0.0.9"), "10.0.0.9", true},
		{"v4 range above", c(raddr, events.MatchRange, "10.0.0.1-10.0.0.9"), "10.0.0.10", false},
		{"v4 greater", c(raddr, events.MatchGreater, "10.0.0.1"), "10.0.1.0", true},
		{"v4 less", c(raddr, events.MatchLess, "10.0.0.1"), "9.255.255.255", true},
		{"v4 condition, v6 input", c(raddr, events.MatchEqual, "0.0.0.0/0"), "::1", false},
		{"v4 not-equal, v6 input", c(raddr, events.MatchNotEqual, "10.0.0.0/8"), "2001:db8::1", false},
		{"v4-only field", c("IP_REMOTE_ADDRESS_V4", events.MatchEqual, "192.0.2.0/24"), "192.0.2.1", true},
		// IPv6 with prefixes.
		{"v6 network", c(raddr, events.MatchEqual, "2001:db8::/32"), "2001:db8:1::5", true},
		{"v6 outside network", c(raddr, events.MatchEqual, "2001:db8::/32"), "2001:db9::1", false},
		{"v6 /64 inside", c(raddr, events.MatchEqual, "2001:db8:0:1::/64"), "2001:db8:0:1:ffff::", true},
		{"v6 /64 outside", c(raddr, events.MatchEqual, "2001:db8:0:1::/64"), "2001:db8:0:2::", false},
		{"v6 /127 inside", c(raddr, events.MatchEqual, "2001:db8::/127"), "2001:db8::1", true},
		{"v6 /127 outside", c(raddr, events.MatchEqual, "2001:db8::/127"), "2001:db8::2", false},
		{"v6 /0", c(raddr, events.MatchEqual, "::/0"), "fe80::1", true},
		{"v6 plain", c(raddr, events.MatchEqual, "2001:db8::1"), "2001:DB8::1", true},
		{"v6 range", c(raddr, events.MatchRange, "2001:db8::1-2001:db8::ff"), "2001:db8::80", true},
		{"v6 range above", c(raddr, events.MatchRange, "2001:db8::1-2001:db8::ff"), "2001:db8::100", false},
		{"v6 range across the halves", c(raddr, events.MatchRange, "2001:db8::ffff:ffff:ffff:ffff-2001:db8:0:1::"), "2001:db8:0:1::", true},
		{"v6 condition, v4 input", c(raddr, events.MatchEqual, "::/0"), "10.0.0.1", false},
		{"v6-only field", c("IP_LOCAL_ADDRESS_V6", events.MatchPrefix, "fd00::/8"), "fd12::1", true},
		// MAC.
		{"mac equal", c("MAC_REMOTE_ADDRESS", events.MatchEqual, "AA:BB:CC:00:11:22"), "aa-bb-cc-00-11-22", true},
		{"mac not-equal", c("MAC_REMOTE_ADDRESS", events.MatchNotEqual, "aa:bb:cc:00:11:22"), "aa:bb:cc:00:11:23", true},
		// Application ids: case-insensitive.
		{"app equal, other case", c(app, events.MatchEqual, chrome), chromeMixed, true},
		{"app equal, other app", c(app, events.MatchEqual, chrome), `\device\harddiskvolume1\windows\notepad.exe`, false},
		{"app prefix", c(app, events.MatchPrefix, `\DEVICE\HARDDISKVOLUME1\PROGRAM FILES\`), chromeMixed, true},
		{"app prefix, other directory", c(app, events.MatchPrefix, `\device\harddiskvolume1\program files\`), `\device\harddiskvolume1\windows\notepad.exe`, false},
		{"app prefix is not suffix", c(app, events.MatchPrefix, `chrome.exe`), chrome, false},
		{"app not-equal", c(app, events.MatchNotEqual, chrome), `\device\x.exe`, true},
		{"app greater", c(app, events.MatchGreater, `\device\a`), `\device\b`, true},
		{"app less", c(app, events.MatchLess, `\device\a`), `\device\b`, false},
		// Security descriptors: opaque and exact.
		{"sd equal", c("ALE_USER_ID", events.MatchEqual, sd), sd, true},
		{"sd is case-sensitive", c("ALE_USER_ID", events.MatchEqual, sd), "o:syg:syd:(a;;cc;;;s-1-5-18)", false},
		{"sd not-equal", c("ALE_USER_ID", events.MatchNotEqual, sd), "O:BA", true},
		// Prefixed names are the same fields.
		{"prefixed field", c("FWPM_CONDITION_IP_REMOTE_PORT", events.MatchEqual, "23"), "23", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := Validate(tc.cond); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			field, _, _ := events.CanonicalField(tc.cond.Field)
			if got := matchOne(t, Values{field: tc.input}, tc.cond); got != tc.want {
				t.Fatalf("%s %s %q against %q: got %v, want %v", tc.cond.Field, tc.cond.Match, tc.cond.Value, tc.input, got, tc.want)
			}
		})
	}
}

// TestBadConditions: a condition that does not parse is refused by
// Validate with an error naming its field, and never matches once compiled,
// not even the input it seems to mean.
func TestBadConditions(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cond  events.Condition
		want  error
		input string // an input the condition must not match
	}{
		{"port not a number", c(port, events.MatchEqual, "http"), ErrValue, "80"},
		{"port too big", c(port, events.MatchEqual, "70000"), ErrValue, "4464"},
		{"protocol too big", c(proto, events.MatchEqual, "256"), ErrValue, "0"},
		{"negative", c(port, events.MatchEqual, "-1"), ErrValue, "65535"},
		{"octal prefix is not hex", c(port, events.MatchEqual, "0o17"), ErrValue, "15"},
		{"empty value", c(port, events.MatchEqual, ""), ErrValue, "0"},
		{"range without dash", c(port, events.MatchRange, "1000"), ErrValue, "1000"},
		{"range reversed", c(port, events.MatchRange, "2000-1000"), ErrValue, "1500"},
		{"range bad end", c(port, events.MatchRange, "1000-x"), ErrValue, "1000"},
		{"v4 prefix too long", c(raddr, events.MatchEqual, "10.0.0.0/33"), ErrValue, "10.0.0.0"},
		{"not an address", c(raddr, events.MatchEqual, "example.com"), ErrValue, "10.0.0.1"},
		{"zoned address", c(raddr, events.MatchEqual, "fe80::1%eth0"), ErrValue, "fe80::1"},
		{"v6 on a v4 field", c("IP_REMOTE_ADDRESS_V4", events.MatchEqual, "2001:db8::1"), ErrValue, "10.0.0.1"},
		{"v4 on a v6 field", c("IP_LOCAL_ADDRESS_V6", events.MatchEqual, "10.0.0.1"), ErrValue, "::1"},
		{"range mixes families", c(raddr, events.MatchRange, "10.0.0.1-2001:db8::1"), ErrValue, "10.0.0.5"},
		{"range reversed addresses", c(raddr, events.MatchRange, "10.0.0.9-10.0.0.1"), ErrValue, "10.0.0.5"},
		{"greater than a network", c(raddr, events.MatchGreater, "10.0.0.0/8"), ErrValue, "11.0.0.0"},
		{"bad mac", c("MAC_LOCAL_ADDRESS", events.MatchEqual, "00:11:22"), ErrValue, "00:11:22:00:00:00"},
		{"flags on an address", c(raddr, events.MatchFlagsAnySet, "1"), ErrMatchType, "0.0.0.1"},
		{"prefix on a port", c(port, events.MatchPrefix, "8"), ErrMatchType, "80"},
		{"range on a string", c(app, events.MatchRange, "a-z"), ErrMatchType, "m"},
		{"flags on a string", c(app, events.MatchFlagsAllSet, "1"), ErrMatchType, "1"},
		{"range on a mac", c("MAC_LOCAL_ADDRESS", events.MatchRange, "00:00:00:00:00:00-ff:ff:ff:ff:ff:ff"), ErrMatchType, "00:00:00:00:00:01"},
		{"prefix on a descriptor", c("ALE_USER_ID", events.MatchPrefix, "O:"), ErrMatchType, "O:SY"},
		{"unknown match", c(port, "sideways", "23"), ErrMatchType, "23"},
		{"unknown field", c("IP_REMOTE_PROT", events.MatchEqual, "23"), ErrUnknownField, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Validate(tc.cond)
			var fe *FieldError
			if !errors.Is(err, tc.want) || !errors.As(err, &fe) {
				t.Fatalf("Validate = %v, want %v as a *FieldError", err, tc.want)
			}
			if field, _, _ := events.CanonicalField(tc.cond.Field); fe.Field != field || err.Error()[:len(field)] != field {
				t.Fatalf("error %q does not name field %s first", err, field)
			}
			in := Values{}
			if tc.input != "" {
				field, _, _ := events.CanonicalField(tc.cond.Field)
				in[field] = tc.input
			}
			if matchOne(t, in, tc.cond) {
				t.Fatalf("a condition that does not compile matched %v", in)
			}
			l := Compile(testLayer, []*events.Filter{{ID: 1, Layer: testLayer, Action: events.ActionBlock, Conditions: []events.Condition{tc.cond}}})
			if inv := l.Invalid(); len(inv) != 1 || !errors.Is(inv[0], tc.want) {
				t.Fatalf("Invalid() = %v, want the one bad condition", inv)
			}
		})
	}
}

func TestGrouping(t *testing.T) {
	orPorts := []events.Condition{c(port, "", "22"), c(port, "", "23")}
	andProto := []events.Condition{c(port, "", "22"), c(proto, "", "6")}
	interleaved := []events.Condition{c(port, "", "22"), c(proto, "", "6"), c(port, "", "23")}
	for _, tc := range []struct {
		name  string
		conds []events.Condition
		in    Values
		want  bool
	}{
		{"same field OR-ed, first", orPorts, Values{port: "22"}, true},
		{"same field OR-ed, second", orPorts, Values{port: "23"}, true},
		{"same field OR-ed, neither", orPorts, Values{port: "24"}, false},
		{"different fields AND-ed", andProto, Values{port: "22", proto: "6"}, true},
		{"different fields AND-ed, one fails", andProto, Values{port: "22", proto: "17"}, false},
		{"different fields AND-ed, other fails", andProto, Values{port: "23", proto: "6"}, false},
		{"groups need not be adjacent", interleaved, Values{port: "23", proto: "6"}, true},
		{"groups need not be adjacent, AND still holds", interleaved, Values{port: "23", proto: "17"}, false},
		{"a missing field fails its group", andProto, Values{port: "22"}, false},
		{"not-equal with the field missing", []events.Condition{c(port, events.MatchNotEqual, "22")}, Values{}, false},
		{"no conditions match anything", nil, Values{}, true},
		{"a bad value leaves its OR group to the others", []events.Condition{c(port, "", "http"), c(port, "", "22")}, Values{port: "22"}, true},
		{"an unknown field fails the filter", []events.Condition{c(port, "", "22"), c("NO_SUCH_FIELD", "", "1")}, Values{port: "22"}, false},
		{"not-equal OR-ed with another value", []events.Condition{c(port, events.MatchNotEqual, "22"), c(port, events.MatchNotEqual, "23")}, Values{port: "22"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := matchOne(t, tc.in, tc.conds...); got != tc.want {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
	t.Run("OR_CONDITIONS does not OR different fields", func(t *testing.T) {
		f := &events.Filter{ID: 1, Layer: testLayer, Action: events.ActionBlock, Conditions: andProto, Flags: []string{events.FlagORConditions}}
		got, err := Compile(testLayer, []*events.Filter{f}).Match(Values{port: "22", proto: "17"})
		if err != nil || len(got) != 0 {
			t.Fatalf("Match = %v, %v; want no match", got, err)
		}
	})
}

func TestBadInput(t *testing.T) {
	l := Compile(testLayer, []*events.Filter{{ID: 1, Layer: testLayer, Action: events.ActionBlock,
		Conditions: []events.Condition{c(port, "", "22")}}})
	for _, tc := range []struct {
		name  string
		in    Values
		want  error
		field string
	}{
		{"unknown field", Values{"IP_REMOTE_PROT": "22"}, ErrUnknownField, "IP_REMOTE_PROT"},
		{"bad port", Values{port: "ssh"}, ErrValue, port},
		{"port too big", Values{port: "65536"}, ErrValue, port},
		{"a network is no input", Values{raddr: "10.0.0.0/8"}, ErrValue, raddr},
		{"a field no filter reads is still checked", Values{proto: "tcp"}, ErrValue, proto},
		{"the same field twice", Values{port: "22", "FWPM_CONDITION_IP_REMOTE_PORT": "22"}, ErrValue, port},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := l.Classify(t.Context(), tc.in, nil)
			var fe *FieldError
			if !errors.Is(err, tc.want) || !errors.As(err, &fe) || fe.Field != tc.field {
				t.Fatalf("Classify = %v, want %v naming %s", err, tc.want, tc.field)
			}
		})
	}
	if got, err := l.Match(Values{"fwpm_condition_ip_remote_port": "22"}); err != nil || len(got) != 1 {
		t.Fatalf("a prefixed, lower-case input field: Match = %v, %v", got, err)
	}
}
