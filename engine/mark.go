package engine

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"strconv"
	"strings"
	"sync"

	natsjs "github.com/nats-io/nats.go/jetstream"
)

// Mark is where an engine keeps, durably and apart from the log, the
// highest log sequence it has acknowledged to a caller: its high-water
// mark. On start the engine compares it with the log's end; a log that ends
// before it has lost acknowledged writes (a damaged or emptied store), and
// the engine refuses writes until an operator accepts the loss (see
// Config.AcceptLogLoss), instead of giving the lost ids to new filters.
//
// Store is called after each write lands and before it is answered, so
// what it keeps must survive what the log may not: an fsync'ed file on the
// engine's host (FileMark) with an embedded server, a small KV bucket
// (KVMark) with an external one.
type Mark interface {
	// Load returns the mark, the zero Position if none was stored yet.
	Load(ctx context.Context) (Position, error)
	// Store raises the mark to p; a lower p.Seq leaves it as it is.
	Store(ctx context.Context, p Position) error
	// String says where the mark is kept, for messages.
	String() string
}

// Position is a high-water mark: the last log sequence acknowledged, and
// whether the message there may leave the log without a loss (a delete:
// compaction removes expired tombstones). Anything else the engine
// expects to find there on start.
type Position struct {
	Seq       uint64
	Removable bool
}

func (p Position) encode() string {
	if p.Removable {
		return strconv.FormatUint(p.Seq, 10) + " d"
	}
	return strconv.FormatUint(p.Seq, 10)
}

func decodePosition(s string) (Position, error) {
	seq, flag, _ := strings.Cut(s, " ")
	n, err := strconv.ParseUint(seq, 10, 64)
	if err != nil || (flag != "" && flag != "d") {
		return Position{}, fmt.Errorf("%q is not a mark", s)
	}
	return Position{Seq: n, Removable: flag == "d"}, nil
}

// FileMark keeps the mark in a file, rewritten in place and fsync'ed on
// every Store: one small record with a checksum, so a torn write is
// detected rather than misread.
type FileMark struct {
	path string
	mu   sync.Mutex
	f    *os.File
	cur  Position
}

// markFormat is the file's one record, of fixed length so that every
// rewrite covers the last: the sequence, D for a delete or - for anything
// else, and a checksum of both.
const markFormat = "wfp-mark 1 %020d %s %08x\n"

var markLen = len(fmt.Sprintf(markFormat, 0, "-", 0))

func markFields(p Position) (digits, kind string) {
	kind = "-"
	if p.Removable {
		kind = "D"
	}
	return fmt.Sprintf("%020d", p.Seq), kind
}

// OpenFileMark opens (creating if need be) the mark file at path and
// reads the mark it holds.
func OpenFileMark(path string) (*FileMark, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("engine: mark file: %w", err)
	}
	m := &FileMark{path: path, f: f}
	if m.cur, err = m.read(); err != nil {
		f.Close()
		return nil, err
	}
	return m, nil
}

func (m *FileMark) read() (Position, error) {
	buf := make([]byte, markLen)
	n, err := m.f.ReadAt(buf, 0)
	if n == 0 {
		return Position{}, nil // a new file: nothing acknowledged yet
	}
	if n != markLen && err != nil {
		return Position{}, fmt.Errorf("engine: mark file %s: %d bytes, want %d: %w", m.path, n, markLen, err)
	}
	f := strings.Fields(string(buf))
	if len(f) != 5 || f[0] != "wfp-mark" || f[1] != "1" || (f[3] != "-" && f[3] != "D") {
		return Position{}, fmt.Errorf("engine: mark file %s is damaged: %q", m.path, buf)
	}
	seq, err1 := strconv.ParseUint(f[2], 10, 64)
	sum, err2 := strconv.ParseUint(f[4], 16, 32)
	if err1 != nil || err2 != nil || uint32(sum) != crc32.ChecksumIEEE([]byte(f[2]+f[3])) {
		return Position{}, fmt.Errorf("engine: mark file %s is damaged (checksum): %q", m.path, buf)
	}
	return Position{Seq: seq, Removable: f[3] == "D"}, nil
}

// Load returns the mark read when the file was opened, or stored since.
func (m *FileMark) Load(context.Context) (Position, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cur, nil
}

// Store rewrites the record and fsyncs it.
func (m *FileMark) Store(_ context.Context, p Position) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if p.Seq <= m.cur.Seq {
		return nil
	}
	digits, kind := markFields(p)
	rec := fmt.Sprintf(markFormat, p.Seq, kind, crc32.ChecksumIEEE([]byte(digits+kind)))
	if _, err := m.f.WriteAt([]byte(rec), 0); err != nil {
		return fmt.Errorf("engine: mark file %s: %w", m.path, err)
	}
	if err := m.f.Sync(); err != nil {
		return fmt.Errorf("engine: mark file %s: %w", m.path, err)
	}
	m.cur = p
	return nil
}

// Close closes the file.
func (m *FileMark) Close() error { return m.f.Close() }

func (m *FileMark) String() string { return "file " + m.path }

// KVMark keeps the mark in a JetStream KV bucket, for engines on an
// external server: it survives the engine's host, and the engines sharing a
// stream share it (each raises it, with a compare-and-set, never lowers
// it). It lives in its own stream, so damage to the log's files leaves it.
type KVMark struct {
	kv  natsjs.KeyValue
	key string
	mu  sync.Mutex
	rev uint64 // revision of the value last read or written
	cur Position
}

// MarkBucket is the KV bucket where engines on an external server keep
// their high-water marks, one key per stream (engine serve uses it).
const MarkBucket = "WFP_MARKS"

// OpenKVMark opens the mark of stream in bucket, creating the bucket
// (file storage, replicas as given) if it is missing.
func OpenKVMark(ctx context.Context, js natsjs.JetStream, bucket, stream string, replicas int) (*KVMark, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, natsjs.KeyValueConfig{
		Bucket: bucket, Description: "wfp engines' high-water marks: the last log sequence acknowledged, per stream",
		History: 1, Storage: natsjs.FileStorage, Replicas: max(replicas, 1),
	})
	if err != nil {
		return nil, fmt.Errorf("engine: mark bucket %s: %w", bucket, err)
	}
	return &KVMark{kv: kv, key: stream}, nil
}

// Load reads the mark.
func (m *KVMark) Load(ctx context.Context) (Position, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.read(ctx); err != nil {
		return Position{}, err
	}
	return m.cur, nil
}

func (m *KVMark) read(ctx context.Context) error {
	e, err := m.kv.Get(ctx, m.key)
	switch {
	case errors.Is(err, natsjs.ErrKeyNotFound):
		m.cur, m.rev = Position{}, 0
		return nil
	case err != nil:
		return fmt.Errorf("engine: reading the mark: %w", err)
	}
	p, err := decodePosition(string(e.Value()))
	if err != nil {
		return fmt.Errorf("engine: mark %s.%s is damaged: %w", m.kv.Bucket(), m.key, err)
	}
	m.cur, m.rev = p, e.Revision()
	return nil
}

// Store raises the mark with a compare-and-set on its revision; another
// engine raising it meanwhile makes it read and try again (or stop, if
// the other went as far).
func (m *KVMark) Store(ctx context.Context, p Position) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for p.Seq > m.cur.Seq {
		val := []byte(p.encode())
		var rev uint64
		var err error
		if m.rev == 0 {
			rev, err = m.kv.Create(ctx, m.key, val)
		} else {
			rev, err = m.kv.Update(ctx, m.key, val, m.rev)
		}
		if err == nil {
			m.cur, m.rev = p, rev
			return nil
		}
		if !errors.Is(err, natsjs.ErrKeyExists) && !errors.Is(err, natsjs.ErrKeyRevisionMismatch) {
			return fmt.Errorf("engine: storing the mark: %w", err)
		}
		if err := m.read(ctx); err != nil {
			return err
		}
	}
	return nil
}

func (m *KVMark) String() string { return "KV " + m.kv.Bucket() + "." + m.key }
