package classify

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/wfpnats/wfp/events"
)

// Errors a condition or an input value can fail with; a *FieldError
// wraps one of them, so callers test with errors.Is and read the field with
// errors.As.
var (
	ErrUnknownField = errors.New("unknown condition field")
	ErrMatchType    = errors.New("match type not valid for the field")
	ErrValue        = errors.New("value not valid for the field")
)

// FieldError is a bad condition or input value, naming its field.
type FieldError struct {
	Field string
	Err   error // ErrUnknownField, ErrMatchType or ErrValue
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }
func (e *FieldError) Unwrap() error { return e.Err }

func fieldErr(field string, err error, format string, args ...any) *FieldError {
	return &FieldError{Field: field, Err: err, Msg: fmt.Sprintf(format, args...)}
}

// u128 holds every comparable value: integers and MACs and IPv4 addresses
// in lo, IPv6 addresses in hi:lo.
type u128 struct{ hi, lo uint64 }

func (a u128) less(b u128) bool { return a.hi < b.hi || a.hi == b.hi && a.lo < b.lo }
func (a u128) and(b u128) u128  { return u128{a.hi & b.hi, a.lo & b.lo} }

// input is one parsed field of the classify input.
type input struct {
	ok  bool  // the field was given
	fam uint8 // 4 or 6 for addresses, 0 for anything else
	n   u128
	s   string // FieldString lower-cased, FieldSecurity as given
}

// intBits is the width of each integer field type.
func intBits(t events.FieldType) int {
	switch t {
	case events.FieldUint8:
		return 8
	case events.FieldUint16:
		return 16
	case events.FieldUint32, events.FieldFlags:
		return 32
	case events.FieldUint64:
		return 64
	}
	return 0
}

// parseUint reads a decimal or 0x-prefixed hexadecimal number of bits bits.
// A leading 0 does not mean octal.
func parseUint(field, s string, bits int) (u128, error) {
	digits, base := strings.TrimSpace(s), 10
	if len(digits) > 2 && (digits[:2] == "0x" || digits[:2] == "0X") {
		digits, base = digits[2:], 16
	}
	n, err := strconv.ParseUint(digits, base, bits)
	if err != nil {
		return u128{}, fieldErr(field, ErrValue, "%q is not a uint%d (0 to %d, decimal or 0x hex)", s, bits, uint64(1)<<bits-1)
	}
	return u128{lo: n}, nil
}

func parseMAC(field, s string) (u128, error) {
	hw, err := net.ParseMAC(strings.TrimSpace(s))
	if err != nil || len(hw) != 6 {
		return u128{}, fieldErr(field, ErrValue, "%q is not a MAC address like 00:11:22:33:44:55", s)
	}
	var b [8]byte
	copy(b[2:], hw)
	return u128{lo: binary.BigEndian.Uint64(b[:])}, nil
}

// familyOK reports whether an address of family fam may be a value of t.
func familyOK(t events.FieldType, fam uint8) bool {
	return t == events.FieldAddr || t == events.FieldIPv4 && fam == 4 || t == events.FieldIPv6 && fam == 6
}

func addrValue(a netip.Addr) (uint8, u128) {
	if a.Is4() {
		b := a.As4()
		return 4, u128{lo: uint64(binary.BigEndian.Uint32(b[:]))}
	}
	b := a.As16()
	return 6, u128{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
}

// prefixMask is the mask of the first bits bits of an address of family
// fam; bits beyond the family's width mean the whole address.
func prefixMask(fam uint8, bits int) u128 {
	if fam == 4 {
		bits = min(bits, 32)
		return u128{lo: ^uint64(0) << (32 - bits) & 0xffffffff}
	}
	bits = min(bits, 128)
	if bits <= 64 {
		return u128{hi: ^uint64(0) << (64 - bits)}
	}
	return u128{hi: ^uint64(0), lo: ^uint64(0) << (128 - bits)}
}

// parseAddr reads one address (no prefix) of a field of type t.
func parseAddr(field string, t events.FieldType, s string) (uint8, u128, error) {
	a, err := netip.ParseAddr(strings.TrimSpace(s))
	if err != nil || a.Zone() != "" {
		return 0, u128{}, fieldErr(field, ErrValue, "%q is not an %s", s, t)
	}
	fam, n := addrValue(a)
	if !familyOK(t, fam) {
		return 0, u128{}, fieldErr(field, ErrValue, "%q is not an %s", s, t)
	}
	return fam, n, nil
}

// parseNet reads an address with an optional /prefix-length and returns its
// network and mask; a plain address has the full mask.
func parseNet(field string, t events.FieldType, s string) (fam uint8, net, mask u128, err error) {
	s = strings.TrimSpace(s)
	if !strings.Contains(s, "/") {
		fam, net, err = parseAddr(field, t, s)
		return fam, net, prefixMask(fam, 128), err
	}
	p, perr := netip.ParsePrefix(s)
	if perr != nil {
		return 0, net, mask, fieldErr(field, ErrValue, "%q is not an %s with a /prefix length", s, t)
	}
	fam, net = addrValue(p.Masked().Addr())
	if !familyOK(t, fam) {
		return 0, net, mask, fieldErr(field, ErrValue, "%q is not an %s", s, t)
	}
	return fam, net, prefixMask(fam, p.Bits()), nil
}

// parseInput reads one classify input value of field (canonical name) of
// type t. Inputs are single values: no masks, no ranges.
func parseInput(field string, t events.FieldType, s string) (input, error) {
	v := input{ok: true}
	var err error
	switch {
	case t.Integer():
		v.n, err = parseUint(field, s, intBits(t))
	case t == events.FieldMAC:
		v.n, err = parseMAC(field, s)
	case t.Address():
		v.fam, v.n, err = parseAddr(field, t, s)
	case t == events.FieldString:
		v.s = strings.ToLower(s)
	case t == events.FieldSecurity:
		v.s = s
	default:
		err = fieldErr(field, ErrUnknownField, "not a known condition field")
	}
	return v, err
}
