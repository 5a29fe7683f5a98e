package embedded

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// LockFile is the file in the store directory that an embedded server
// holds a lock on while it runs: two servers on one directory would both
// write the same stream files, and acknowledged writes of one would be
// lost to the other after a restart.
const LockFile = "wfp-engine.lock"

// ErrDirInUse is matched (errors.Is) when the store directory is locked
// by another running server; the error names the holder.
var ErrDirInUse = errors.New("embedded: data directory in use")

// dirLock is a held lock on a store directory.
type dirLock struct{ f *os.File }

// lockDir takes the lock on dir, creating dir if needed, and writes who
// holds it (pid, host, start time) into the lock file for the error a
// second server gets.
func lockDir(dir string) (*dirLock, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("embedded: data directory: %w", err)
	}
	path := filepath.Join(dir, LockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("embedded: lock file: %w", err)
	}
	if err := tryLock(f); err != nil {
		holder, _ := os.ReadFile(path)
		f.Close()
		if errors.Is(err, errLocked) {
			who := strings.TrimSpace(string(holder))
			if who == "" {
				who = "a process that has not said who it is"
			}
			return nil, fmt.Errorf("%w: %s is used by another engine (%s); stop it, or give this one another data directory",
				ErrDirInUse, dir, who)
		}
		return nil, fmt.Errorf("embedded: locking %s: %w", path, err)
	}
	host, _ := os.Hostname()
	who := fmt.Sprintf("pid %d on host %s, started %s\n", os.Getpid(), host, time.Now().UTC().Format(time.RFC3339))
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(who), 0)
		_ = f.Sync()
	}
	return &dirLock{f: f}, nil
}

// release gives the lock up. The file stays: removing it would let a
// third server lock a new file while a second still waits on the old one.
func (l *dirLock) release() {
	if l == nil || l.f == nil {
		return
	}
	_ = unlock(l.f)
	_ = l.f.Close()
	l.f = nil
}
