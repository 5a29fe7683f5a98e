//go:build !unix

package embedded

import (
	"errors"
	"os"
)

var errLocked = errors.New("locked")

// tryLock: the standard library has no file lock outside unix, so on
// other systems the data directory is not guarded.
func tryLock(*os.File) error { return nil }

func unlock(*os.File) error { return nil }
