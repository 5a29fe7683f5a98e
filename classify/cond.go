package classify

import (
	"strings"

	"github.com/wfpnats/wfp/events"
)

// op is what a compiled condition tests, chosen once at compile time so
// matching is a switch over integers.
type op uint8

const (
	opNever     op = iota // the condition could not be compiled
	opEq                  // n == a
	opNe                  // n != a
	opIn                  // n&b == a: an address in a network (a plain address has the full mask)
	opNotIn               // n&b != a
	opGt                  // n > a
	opLt                  // n < a
	opRange               // a <= n <= b
	opAllSet              // n&a == a
	opAnySet              // n&a != 0
	opNoneSet             // n&a == 0
	opStrEq               // s == str
	opStrNe               // s != str
	opStrGt               // s > str
	opStrLt               // s < str
	opStrPrefix           // s starts with str
)

// cond is one compiled condition.
type cond struct {
	slot uint16 // index of the input field it reads
	op   op
	fam  uint8 // the address family of an address operand, else 0
	a, b u128
	str  string
}

// match reports whether input v meets the condition. A missing input, or
// an address of the other family, never matches, whatever the match type.
func (c *cond) match(v *input) bool {
	if !v.ok || v.fam != c.fam {
		return false
	}
	n := v.n
	switch c.op {
	case opEq:
		return n == c.a
	case opNe:
		return n != c.a
	case opIn:
		return n.and(c.b) == c.a
	case opNotIn:
		return n.and(c.b) != c.a
	case opGt:
		return c.a.less(n)
	case opLt:
		return n.less(c.a)
	case opRange:
		return !n.less(c.a) && !c.b.less(n)
	case opAllSet:
		return n.and(c.a) == c.a
	case opAnySet:
		return n.and(c.a) != u128{}
	case opNoneSet:
		return n.and(c.a) == u128{}
	case opStrEq:
		return v.s == c.str
	case opStrNe:
		return v.s != c.str
	case opStrGt:
		return v.s > c.str
	case opStrLt:
		return v.s < c.str
	case opStrPrefix:
		return strings.HasPrefix(v.s, c.str)
	}
	return false
}

// Validate checks that c names a known field with a match type that field
// allows and a value that parses for the field's type: what the engine
// refuses at add time. The error is a *FieldError naming the field.
func Validate(c events.Condition) error {
	_, _, err := compileCond(c)
	return err
}

// compileCond parses c once. It returns the canonical field name and the
// compiled condition (slot not yet set).
func compileCond(c events.Condition) (string, cond, error) {
	field, t, ok := events.CanonicalField(c.Field)
	if !ok {
		return c.Field, cond{}, fieldErr(c.Field, ErrUnknownField, "not a known condition field")
	}
	match := c.Match
	if match == "" {
		match = events.MatchEqual
	}
	var k cond
	var err error
	switch {
	case t.Integer():
		k, err = compileInt(field, t, match, c.Value)
	case t == events.FieldMAC:
		k, err = compileMAC(field, match, c.Value)
	case t.Address():
		k, err = compileAddr(field, t, match, c.Value)
	case t == events.FieldString:
		k, err = compileString(field, match, strings.ToLower(c.Value))
	case t == events.FieldSecurity:
		k, err = compileSecurity(field, match, c.Value)
	}
	if err != nil {
		k = cond{op: opNever}
	}
	return field, k, err
}

func badMatch(field string, t events.FieldType, match string) error {
	for _, m := range events.MatchTypes {
		if m == match {
			return fieldErr(field, ErrMatchType, "match %q does not apply to a %s", match, t)
		}
	}
	return fieldErr(field, ErrMatchType, "match %q is not one of %v", match, events.MatchTypes)
}

// compileRange compiles a range written "lo-hi", reading each end with
// parse (which returns the end's address family, 0 for numbers).
func compileRange(field, value string, parse func(string) (uint8, u128, error)) (cond, error) {
	lo, hi, ok := strings.Cut(value, "-")
	if !ok {
		return cond{}, fieldErr(field, ErrValue, "range %q is not written lo-hi", value)
	}
	famLo, a, err := parse(lo)
	if err != nil {
		return cond{}, err
	}
	famHi, b, err := parse(hi)
	if err != nil {
		return cond{}, err
	}
	if famLo != famHi {
		return cond{}, fieldErr(field, ErrValue, "range %q mixes IPv4 and IPv6", value)
	}
	if b.less(a) {
		return cond{}, fieldErr(field, ErrValue, "range %q is empty: its low end is above its high end", value)
	}
	return cond{op: opRange, fam: famLo, a: a, b: b}, nil
}

var (
	intOps = map[string]op{events.MatchEqual: opEq, events.MatchNotEqual: opNe, events.MatchGreater: opGt,
		events.MatchLess: opLt, events.MatchFlagsAllSet: opAllSet, events.MatchFlagsAnySet: opAnySet,
		events.MatchFlagsNoneSet: opNoneSet}
	stringOps = map[string]op{events.MatchEqual: opStrEq, events.MatchNotEqual: opStrNe,
		events.MatchGreater: opStrGt, events.MatchLess: opStrLt, events.MatchPrefix: opStrPrefix}
)

func compileInt(field string, t events.FieldType, match, value string) (cond, error) {
	bits := intBits(t)
	if match == events.MatchRange {
		return compileRange(field, value, func(s string) (uint8, u128, error) {
			n, err := parseUint(field, s, bits)
			return 0, n, err
		})
	}
	o, ok := intOps[match]
	if !ok {
		return cond{}, badMatch(field, t, match)
	}
	n, err := parseUint(field, value, bits)
	return cond{op: o, a: n}, err
}

func compileMAC(field, match, value string) (cond, error) {
	k := cond{}
	switch match {
	case events.MatchEqual, events.MatchNotEqual:
		n, err := parseMAC(field, value)
		k.a, k.op = n, opEq
		if match == events.MatchNotEqual {
			k.op = opNe
		}
		return k, err
	}
	return k, badMatch(field, events.FieldMAC, match)
}

func compileAddr(field string, t events.FieldType, match, value string) (cond, error) {
	k := cond{}
	var err error
	switch match {
	case events.MatchEqual, events.MatchNotEqual, events.MatchPrefix:
		k.fam, k.a, k.b, err = parseNet(field, t, value)
		k.op = opIn
		if match == events.MatchNotEqual {
			k.op = opNotIn
		}
		return k, err
	case events.MatchGreater, events.MatchLess:
		k.fam, k.a, err = parseAddr(field, t, value)
		k.op = opGt
		if match == events.MatchLess {
			k.op = opLt
		}
		return k, err
	case events.MatchRange:
		return compileRange(field, value, func(s string) (uint8, u128, error) { return parseAddr(field, t, s) })
	}
	return k, badMatch(field, t, match)
}

func compileString(field, match, lower string) (cond, error) {
	if o, ok := stringOps[match]; ok {
		return cond{op: o, str: lower}, nil
	}
	return cond{}, badMatch(field, events.FieldString, match)
}

func compileSecurity(field, match, value string) (cond, error) {
	switch match {
	case events.MatchEqual:
		return cond{op: opStrEq, str: value}, nil
	case events.MatchNotEqual:
		return cond{op: opStrNe, str: value}, nil
	}
	return cond{}, badMatch(field, events.FieldSecurity, match)
}
