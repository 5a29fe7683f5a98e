package events

import (
	"fmt"
	"slices"

	"github.com/google/uuid"
)

// ActionType is what a filter does with traffic it matches. The three
// callout actions name a callout by key; the others must not.
type ActionType string

const (
	ActionPermit             ActionType = "permit"
	ActionBlock              ActionType = "block"
	ActionCalloutTerminating ActionType = "callout-terminating"
	ActionCalloutInspection  ActionType = "callout-inspection"
	ActionCalloutUnknown     ActionType = "callout-unknown"
)

// ActionTypes lists every action in the order the CLI documents them.
var ActionTypes = []ActionType{ActionPermit, ActionBlock, ActionCalloutTerminating, ActionCalloutInspection, ActionCalloutUnknown}

// Valid reports whether a is one of the known actions.
func (a ActionType) Valid() bool { return slices.Contains(ActionTypes, a) }

// IsCallout reports whether the action hands traffic to a callout.
func (a ActionType) IsCallout() bool {
	return a == ActionCalloutTerminating || a == ActionCalloutInspection || a == ActionCalloutUnknown
}

// Filter flags, as in FWPM_FILTER_FLAG_*.
const (
	FlagPermitIfCalloutUnregistered = "PERMIT_IF_CALLOUT_UNREGISTERED"
	FlagClearActionRight            = "CLEAR_ACTION_RIGHT"
	FlagORConditions                = "OR_CONDITIONS"
)

// FilterFlags lists the filter flags the engine accepts.
var FilterFlags = []string{FlagPermitIfCalloutUnregistered, FlagClearActionRight, FlagORConditions}

// Callout flags, as in FWP_CALLOUT_FLAG_*.
const (
	// CalloutFlagCommitAddNotify asks for ADD_FILTER_POST_COMMIT notifications.
	CalloutFlagCommitAddNotify = "ENABLE_COMMIT_ADD_NOTIFY"
)

// CalloutFlags lists the callout flags the engine accepts.
var CalloutFlags = []string{CalloutFlagCommitAddNotify}

// Match types for conditions, as in FWP_MATCH_*.
const (
	MatchEqual        = "equal"
	MatchNotEqual     = "not-equal"
	MatchGreater      = "greater"
	MatchLess         = "less"
	MatchRange        = "range"
	MatchFlagsAllSet  = "flags-all-set"
	MatchFlagsAnySet  = "flags-any-set"
	MatchFlagsNoneSet = "flags-none-set"
	MatchPrefix       = "prefix"
)

// MatchTypes lists the match types the engine accepts.
var MatchTypes = []string{MatchEqual, MatchNotEqual, MatchGreater, MatchLess, MatchRange,
	MatchFlagsAllSet, MatchFlagsAnySet, MatchFlagsNoneSet, MatchPrefix}

// Condition is one filter condition: the field it tests, how, and against
// what. Values are kept as text; the classify path owns their parsing.
type Condition struct {
	Field string `msgpack:"f" json:"field"`
	Match string `msgpack:"m" json:"match"`
	Value string `msgpack:"v" json:"value"`
}

// Filter is a filter as the engine stores it (FWPM_FILTER plus the runtime
// id). ID is the stream sequence of the filter's FilterAdded event.
type Filter struct {
	Key          string      `msgpack:"k" json:"filterKey"`
	ID           uint64      `msgpack:"i" json:"filterId"`
	Name         string      `msgpack:"n" json:"name"`
	Description  string      `msgpack:"d,omitempty" json:"description,omitempty"`
	Layer        string      `msgpack:"l" json:"layer"`
	SubLayerKey  string      `msgpack:"sl,omitempty" json:"subLayerKey,omitempty"`
	Weight       uint64      `msgpack:"w" json:"weight"`
	Conditions   []Condition `msgpack:"c,omitempty" json:"conditions,omitempty"`
	Action       ActionType  `msgpack:"a" json:"action"`
	CalloutKey   string      `msgpack:"ck,omitempty" json:"calloutKey,omitempty"`
	Flags        []string    `msgpack:"fl,omitempty" json:"flags,omitempty"`
	ProviderKey  string      `msgpack:"pk,omitempty" json:"providerKey,omitempty"`
	ProviderData []byte      `msgpack:"pd,omitempty" json:"providerData,omitempty"`
	// Session is the dynamic session the filter was added in: it is
	// deleted when that session ends (R8). Empty for a permanent filter.
	Session string `msgpack:"s,omitempty" json:"sessionId,omitempty"`
}

// HasFlag reports whether the filter carries flag.
func (f *Filter) HasFlag(flag string) bool { return slices.Contains(f.Flags, flag) }

// Clone returns a deep copy, so a reader can hold a filter while the
// projection that produced it moves on.
func (f *Filter) Clone() *Filter {
	if f == nil {
		return nil
	}
	c := *f
	c.Conditions = slices.Clone(f.Conditions)
	c.Flags = slices.Clone(f.Flags)
	c.ProviderData = slices.Clone(f.ProviderData)
	return &c
}

// Callout is a management callout object (FWPM_CALLOUT): filters name it by
// key, agents register code for it.
type Callout struct {
	Key         string   `msgpack:"k" json:"calloutKey"`
	Name        string   `msgpack:"n" json:"name"`
	Description string   `msgpack:"d,omitempty" json:"description,omitempty"`
	Layer       string   `msgpack:"l,omitempty" json:"layer,omitempty"`
	Flags       []string `msgpack:"fl,omitempty" json:"flags,omitempty"`
	ProviderKey string   `msgpack:"pk,omitempty" json:"providerKey,omitempty"`
	// Session is the dynamic session the callout object was added in, as
	// for Filter.Session.
	Session string `msgpack:"s,omitempty" json:"sessionId,omitempty"`
}

// HasFlag reports whether the callout carries flag.
func (c *Callout) HasFlag(flag string) bool { return slices.Contains(c.Flags, flag) }

// Clone returns a deep copy.
func (c *Callout) Clone() *Callout {
	if c == nil {
		return nil
	}
	d := *c
	d.Flags = slices.Clone(c.Flags)
	return &d
}

func (f *Filter) String() string {
	return fmt.Sprintf("filter %s (id %d, %q, layer %s, %s)", f.Key, f.ID, f.Name, f.Layer, f.Action)
}

// ParseKey checks that s is a UUID and returns its canonical lower-case
// form, so one key always maps to one subject. It takes the 8-4-4-4-12
// form in either case, bare or in braces as Windows writes GUIDs
// ({...}); the all-zero UUID names nothing and is refused.
func ParseKey(s string) (string, error) {
	t := s
	if len(t) == 38 && t[0] == '{' && t[37] == '}' {
		t = t[1:37]
	}
	u, err := uuid.Parse(t)
	if err != nil || len(t) != 36 {
		return "", fmt.Errorf("%q is not a UUID in 8-4-4-4-12 form", s)
	}
	if u == uuid.Nil {
		return "", fmt.Errorf("%q is the all-zero UUID, which names nothing", s)
	}
	return u.String(), nil
}
