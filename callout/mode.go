package callout

import "fmt"

// Mode is where an agent starts reading.
type Mode int

const (
	// Live starts at registration: only filters added from then on are
	// announced (R2), deletes of older ones still are (R4).
	Live Mode = iota
	// Replay first announces every current filter of the callout, then goes
	// live (R3).
	Replay
)

func (m Mode) String() string {
	switch m {
	case Live:
		return "live"
	case Replay:
		return "replay"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// ParseMode turns "live" or "replay" into a Mode.
func ParseMode(s string) (Mode, error) {
	switch s {
	case "live":
		return Live, nil
	case "replay":
		return Replay, nil
	}
	return 0, fmt.Errorf("%w: mode %q (want live or replay)", ErrInvalidOption, s)
}
