package events

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"
)

// The decoder reads by type, not by expected byte: any int width, str or
// bin for text and bytes, nil for an absent string, array, map or time,
// keys in any order, unknown keys of any type skipped (R5). A payload the
// encoder did not write can still be a valid event.
//
// It reads through msgpack.Decoder over a bytes.Reader it owns, so it can
// also look at the payload directly: every length prefix is checked
// against the bytes left before anything is allocated or read for it (a
// bogus prefix costs nothing), strings are copied once from the payload
// (or not at all, when interned), and unknown values are skipped without
// recursion (a nesting bomb costs no stack).

// Decode parses a payload. Unknown fields are ignored and an unknown type is
// not an error (check Event.Known); only bytes that are not a msgpack map of
// the envelope's shape fail, wrapped in ErrMalformed.
func Decode(data []byte) (*Event, error) {
	e := new(Event)
	if err := DecodeInto(data, e); err != nil {
		return nil, err
	}
	return e, nil
}

// DecodeInto is Decode into an Event the caller owns, for a reader that
// does not keep the event (it may keep e.Filter and e.Callout, which are
// always fresh). e is reset first; on error its contents are undefined.
func DecodeInto(data []byte, e *Event) error { return DecodeFilterInto(data, e, nil) }

// DecodeFilterInto is DecodeInto that decodes the event's filter, if it
// has one, into spare (reset first) instead of a fresh Filter: a reader
// that keeps filters inside a larger struct of its own allocates once.
// e.Filter is spare then, or nil if the event has no filter. A nil spare
// is DecodeInto. With a spare, the envelope's event id and time are
// skipped (e.ID and e.Time stay empty): a reader of filters does not keep
// them, and the id would be a string allocated for nothing.
func DecodeFilterInto(data []byte, e *Event, spare *Filter) error {
	*e = Event{}
	d := decoders.Get().(*decoder)
	d.data = data
	d.r.Reset(data)
	d.spare = spare
	err := d.event(e)
	d.data = nil
	d.spare = nil
	d.r.Reset(nil)
	decoders.Put(d)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if e.Type == "" {
		return fmt.Errorf("%w: no event type", ErrMalformed)
	}
	return nil
}

type decoder struct {
	md    *msgpack.Decoder // reads from r
	r     bytes.Reader     // over data
	data  []byte
	spare *Filter // where the event's filter goes (DecodeFilterInto)
	// recent holds the symbols this decoder interned last: events in a
	// row repeat them (one layer, one callout, a few fields), and a
	// comparison with these is cheaper than a lookup in the table.
	recent [8]string
	next   int
}

var decoders = sync.Pool{New: func() any {
	d := new(decoder)
	d.md = msgpack.NewDecoder(&d.r) // a bytes.Reader is read directly, not through a bufio.Reader
	return d
}}

var errTruncated = io.ErrUnexpectedEOF

func (d *decoder) event(e *Event) error {
	return d.fields(func(k []byte) (err error) {
		switch string(k) {
		case "v":
			var v int64
			v, err = d.md.DecodeInt64()
			e.Schema = int(v)
		case "t":
			var s string
			s, err = d.symbol()
			e.Type = Type(s)
		case "id":
			if d.spare != nil {
				err = d.skip()
			} else {
				e.ID, err = d.str()
			}
		case "ts":
			e.Time, err = d.time()
		case "f":
			switch {
			case d.nilNext():
				e.Filter = nil
			default:
				if e.Filter == nil {
					e.Filter = d.spare
					if e.Filter == nil {
						e.Filter = new(Filter)
					} else {
						*e.Filter = Filter{}
					}
				}
				err = d.filter(e.Filter)
			}
		case "c":
			switch {
			case d.nilNext():
				e.Callout = nil
			case e.Callout == nil:
				e.Callout = new(Callout)
				fallthrough
			default:
				err = d.callout(e.Callout)
			}
		case "r":
			e.Reason, err = d.str()
		case "s":
			switch {
			case d.nilNext():
				e.Session = nil
			case e.Session == nil:
				e.Session = new(Session)
				fallthrough
			default:
				err = d.session(e.Session)
			}
		default:
			err = d.skip()
		}
		return err
	})
}

func (d *decoder) filter(f *Filter) error {
	return d.fields(func(k []byte) (err error) {
		switch string(k) {
		case "k":
			f.Key, err = d.str()
		case "i":
			f.ID, err = d.uint()
		case "n":
			f.Name, err = d.str()
		case "d":
			f.Description, err = d.str()
		case "l":
			f.Layer, err = d.symbol()
		case "sl":
			f.SubLayerKey, err = d.symbol()
		case "w":
			f.Weight, err = d.uint()
		case "c":
			f.Conditions, err = d.conditions()
		case "a":
			var s string
			s, err = d.symbol()
			f.Action = ActionType(s)
		case "ck":
			f.CalloutKey, err = d.symbol()
		case "fl":
			f.Flags, err = d.symbols()
		case "pk":
			f.ProviderKey, err = d.symbol()
		case "pd":
			var b []byte
			b, err = d.raw()
			f.ProviderData = nil
			if len(b) > 0 {
				f.ProviderData = bytes.Clone(b)
			}
		case "s":
			f.Session, err = d.str()
		default:
			err = d.skip()
		}
		return err
	})
}

func (d *decoder) conditions() ([]Condition, error) {
	n, err := d.arrayLen()
	if err != nil || n <= 0 {
		return nil, err
	}
	cs := make([]Condition, n) // n is at most the bytes left
	for i := range cs {
		if err := d.condition(&cs[i]); err != nil {
			return nil, fmt.Errorf("[%d]: %w", i, err)
		}
	}
	return cs, nil
}

// condition reads one condition; nil is a zero condition, as msgpack
// decoded it.
func (d *decoder) condition(c *Condition) error {
	return d.fields(func(k []byte) (err error) {
		switch string(k) {
		case "f":
			c.Field, err = d.symbol()
		case "m":
			c.Match, err = d.symbol()
		case "v":
			c.Value, err = d.str()
		default:
			err = d.skip()
		}
		return err
	})
}

func (d *decoder) callout(c *Callout) error {
	return d.fields(func(k []byte) (err error) {
		switch string(k) {
		case "k":
			c.Key, err = d.symbol()
		case "n":
			c.Name, err = d.str()
		case "d":
			c.Description, err = d.str()
		case "l":
			c.Layer, err = d.symbol()
		case "fl":
			c.Flags, err = d.symbols()
		case "pk":
			c.ProviderKey, err = d.symbol()
		case "s":
			c.Session, err = d.str()
		default:
			err = d.skip()
		}
		return err
	})
}

func (d *decoder) session(s *Session) error {
	return d.fields(func(k []byte) (err error) {
		switch string(k) {
		case "k":
			s.ID, err = d.str()
		case "n":
			s.Name, err = d.str()
		case "dy":
			s.Dynamic, err = d.bool()
		case "ls":
			s.LeaseMs, err = d.md.DecodeUint64()
		default:
			err = d.skip()
		}
		return err
	})
}

// fields reads a map (nil is an empty one) and calls field with each key
// to read its value. An error names the key it came from.
func (d *decoder) fields(field func(key []byte) error) error {
	n, err := d.mapLen()
	for i := 0; i < n && err == nil; i++ {
		var k []byte
		if k, err = d.key(); err == nil {
			if err = field(k); err != nil {
				err = fmt.Errorf("%q: %w", k, err)
			}
		}
	}
	return err
}

// peek returns the next type code without reading it.
func (d *decoder) peek() (byte, error) {
	if d.r.Len() == 0 {
		return 0, errTruncated
	}
	return d.data[len(d.data)-d.r.Len()], nil
}

// nilNext reads a nil if one is next.
func (d *decoder) nilNext() bool {
	if c, err := d.peek(); err != nil || c != msgpcode.Nil {
		return false
	}
	_, _ = d.r.ReadByte()
	return true
}

// take returns the next n bytes of the payload, without copying.
func (d *decoder) take(n int) ([]byte, error) {
	left := d.r.Len()
	if n < 0 || n > left {
		return nil, errTruncated
	}
	off := len(d.data) - left
	_, _ = d.r.Seek(int64(n), io.SeekCurrent)
	return d.data[off : off+n : off+n], nil
}

// The length headers of the types events use are read straight from the
// payload (lenOf): what msgpack.Decoder would do through its reader
// interface, without it. Anything else goes to msgpack.Decoder, which
// says what is wrong with it.

// lenOf reads the header of a string, binary, map or array whose codes
// are fixed (the fix* form: fixed & mask) or first8/16/32 (a 1, 2 or 4
// byte length follows): the length, and ok false (nothing read) for any
// other code. nil is not handled here.
func (d *decoder) lenOf(fixed, mask, first8, first16, first32 byte) (n int, ok bool) {
	off := len(d.data) - d.r.Len()
	if off >= len(d.data) {
		return 0, false
	}
	c := d.data[off]
	var size int
	switch {
	case mask != 0 && c&^mask == fixed:
		_, _ = d.r.ReadByte()
		return int(c & mask), true
	case c == first8 && first8 != 0:
		size = 1
	case c == first16:
		size = 2
	case c == first32:
		size = 4
	default:
		return 0, false
	}
	if off+1+size > len(d.data) {
		return 0, false // msgpack.Decoder reports the truncation
	}
	b := d.data[off+1 : off+1+size]
	switch size {
	case 1:
		n = int(b[0])
	case 2:
		n = int(binary.BigEndian.Uint16(b))
	default:
		n = int(binary.BigEndian.Uint32(b))
	}
	_, _ = d.r.Seek(int64(1+size), io.SeekCurrent)
	return n, true
}

// mapLen reads a map header: -1 for nil. The type is checked first:
// msgpack's DecodeMapLen would also take a map wrapped in an extension.
func (d *decoder) mapLen() (int, error) {
	if n, ok := d.lenOf(msgpcode.FixedMapLow, 0x0f, 0, msgpcode.Map16, msgpcode.Map32); ok {
		return n, nil
	}
	c, err := d.peek()
	if err != nil {
		return 0, err
	}
	if c != msgpcode.Nil && !msgpcode.IsFixedMap(c) && c != msgpcode.Map16 && c != msgpcode.Map32 {
		return 0, fmt.Errorf("not a map (code %#x)", c)
	}
	return d.md.DecodeMapLen()
}

// arrayLen reads an array header: -1 for nil. Callers allocate for the
// length it returns, so it is at most the bytes left (each element takes
// at least one).
func (d *decoder) arrayLen() (int, error) {
	n, ok := d.lenOf(msgpcode.FixedArrayLow, 0x0f, 0, msgpcode.Array16, msgpcode.Array32)
	var err error
	if !ok {
		n, err = d.md.DecodeArrayLen()
	}
	if err == nil && n > d.r.Len() {
		err = errTruncated
	}
	return n, err
}

// raw reads a str or bin (nil is empty) and returns its bytes in the
// payload.
func (d *decoder) raw() ([]byte, error) {
	n, ok := d.lenOf(msgpcode.FixedStrLow, 0x1f, msgpcode.Str8, msgpcode.Str16, msgpcode.Str32)
	if !ok {
		n, ok = d.lenOf(0, 0, msgpcode.Bin8, msgpcode.Bin16, msgpcode.Bin32)
	}
	var err error
	if !ok {
		n, err = d.md.DecodeBytesLen()
	}
	if err != nil || n <= 0 {
		return nil, err
	}
	return d.take(n)
}

func (d *decoder) str() (string, error) {
	b, err := d.raw()
	return string(b), err
}

// uint reads an unsigned integer, as msgpack.Decoder's DecodeUint64
// does; the unsigned forms are read straight from the payload.
func (d *decoder) uint() (uint64, error) {
	off := len(d.data) - d.r.Len()
	if off < len(d.data) {
		c := d.data[off]
		size := 0
		switch c {
		case msgpcode.Uint8:
			size = 1
		case msgpcode.Uint16:
			size = 2
		case msgpcode.Uint32:
			size = 4
		case msgpcode.Uint64:
			size = 8
		default:
			if msgpcode.IsFixedNum(c) && c <= msgpcode.PosFixedNumHigh {
				_, _ = d.r.ReadByte()
				return uint64(c), nil
			}
		}
		if size > 0 && off+1+size <= len(d.data) {
			b := d.data[off+1 : off+1+size]
			var v uint64
			switch size {
			case 1:
				v = uint64(b[0])
			case 2:
				v = uint64(binary.BigEndian.Uint16(b))
			case 4:
				v = uint64(binary.BigEndian.Uint32(b))
			default:
				v = binary.BigEndian.Uint64(b)
			}
			_, _ = d.r.Seek(int64(1+size), io.SeekCurrent)
			return v, nil
		}
	}
	return d.md.DecodeUint64()
}

// bool reads a bool; nil is false.
func (d *decoder) bool() (bool, error) {
	if d.nilNext() {
		return false, nil
	}
	return d.md.DecodeBool()
}

// symbol reads a string many events repeat (layer, action, keys of
// callouts and providers, condition fields and matches): one shared copy.
func (d *decoder) symbol() (string, error) {
	b, err := d.raw()
	if err != nil || len(b) == 0 {
		return "", err
	}
	for _, r := range d.recent {
		if r == string(b) { // compares without allocating
			return r, nil
		}
	}
	s := intern(b)
	d.recent[d.next] = s
	d.next = (d.next + 1) % len(d.recent)
	return s, nil
}

// symbols reads a []string of symbols (flags); empty is nil.
func (d *decoder) symbols() ([]string, error) {
	n, err := d.arrayLen()
	if err != nil || n <= 0 {
		return nil, err
	}
	ss := make([]string, n)
	for i := range ss {
		if ss[i], err = d.symbol(); err != nil {
			return nil, fmt.Errorf("[%d]: %w", i, err)
		}
	}
	return ss, nil
}

// key reads a map key. The keys of events are strings; a key of another
// type is skipped and returned as nil, so its value is skipped as unknown.
func (d *decoder) key() ([]byte, error) {
	c, err := d.peek()
	if err != nil {
		return nil, err
	}
	if c == msgpcode.Nil || msgpcode.IsString(c) || msgpcode.IsBin(c) {
		return d.raw()
	}
	return nil, d.skip()
}

// time reads a msgpack timestamp (extension -1, in its 32-, 64- or 96-bit
// form) as msgpack's own decoder does: the local zone, the zero time in
// UTC, and nil as the zero time.
func (d *decoder) time() (time.Time, error) {
	if d.nilNext() {
		return time.Time{}, nil
	}
	var id int8
	var n int
	var err error
	if off := len(d.data) - d.r.Len(); off+1 < len(d.data) && (d.data[off] == msgpcode.FixExt4 || d.data[off] == msgpcode.FixExt8) {
		// The timestamp forms the encoder writes: fixext 4 or 8, type byte.
		n, id = 4, int8(d.data[off+1])
		if d.data[off] == msgpcode.FixExt8 {
			n = 8
		}
		_, _ = d.r.Seek(2, io.SeekCurrent)
	} else if id, n, err = d.md.DecodeExtHeader(); err != nil {
		return time.Time{}, err
	}
	if id != -1 {
		return time.Time{}, fmt.Errorf("extension %d is not a timestamp", id)
	}
	b, err := d.take(n)
	if err != nil {
		return time.Time{}, err
	}
	var t time.Time
	switch len(b) {
	case 4:
		t = time.Unix(int64(binary.BigEndian.Uint32(b)), 0)
	case 8:
		v := binary.BigEndian.Uint64(b)
		t = time.Unix(int64(v&(1<<34-1)), int64(v>>34))
	case 12:
		t = time.Unix(int64(binary.BigEndian.Uint64(b[4:])), int64(binary.BigEndian.Uint32(b)))
	default:
		return time.Time{}, fmt.Errorf("timestamp of %d bytes", n)
	}
	if t.IsZero() {
		t = t.UTC()
	}
	return t, nil
}

// skip passes over one value of any type. It keeps a count of the values
// still to skip instead of recursing, and allocates nothing: each round
// reads at least a byte, so a bogus length runs out of payload.
func (d *decoder) skip() error {
	for pending := 1; pending > 0; pending-- {
		c, err := d.peek()
		if err != nil {
			return err
		}
		var n int
		switch {
		case msgpcode.IsFixedMap(c) || c == msgpcode.Map16 || c == msgpcode.Map32:
			if n, err = d.md.DecodeMapLen(); err == nil {
				n *= 2
			}
		case msgpcode.IsFixedArray(c) || c == msgpcode.Array16 || c == msgpcode.Array32:
			n, err = d.md.DecodeArrayLen()
		case msgpcode.IsString(c) || msgpcode.IsBin(c):
			_, err = d.raw()
		case msgpcode.IsExt(c):
			var size int
			if _, size, err = d.md.DecodeExtHeader(); err == nil {
				_, err = d.take(size)
			}
		default: // nil, bool, numbers: fixed sizes
			err = d.md.Skip()
		}
		if err != nil {
			return err
		}
		pending += n
	}
	return nil
}
