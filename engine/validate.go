package engine

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/wfpnats/wfp/events"
	"github.com/wfpnats/wfp/projection"
)

// Limits on what one filter may carry, so one request cannot make an event
// that the stream (1 MB messages by default) or a batch refuses.
const (
	maxNameLen         = 256
	maxDescriptionLen  = 4096
	maxConditions      = 64
	maxConditionLen    = 1024
	maxProviderDataLen = 64 << 10
)

// command is one management change waiting to be validated and written.
type command interface {
	// events validates the command against v and returns the events to
	// write if they were stored from seq on.
	events(v projection.View, seq uint64) ([]*events.Event, error)
}

// batched marks commands whose events must be written as one atomic batch
// (transactions), never chained with others.
type batched interface{ batched() }

type addCallout struct{ c events.Callout }
type deleteCallout struct{ key string }
type addFilter struct {
	f events.Filter
	// notifyTimeout bounds the wait for the callout's agents (R7).
	notifyTimeout time.Duration
}
type deleteFilter struct {
	ref    FilterRef
	reason string // why the engine deletes it on its own (R7 rejection)
}

// one adapts a single-event validation to command.
func one(ev *events.Event, err error) ([]*events.Event, error) {
	if err != nil {
		return nil, err
	}
	return []*events.Event{ev}, nil
}

func (cmd addCallout) events(v projection.View, seq uint64) ([]*events.Event, error) {
	return one(cmd.event(v, seq))
}

func (cmd deleteCallout) events(v projection.View, seq uint64) ([]*events.Event, error) {
	return one(cmd.event(v, seq))
}

func (cmd addFilter) events(v projection.View, seq uint64) ([]*events.Event, error) {
	return one(cmd.event(v, seq))
}

func (cmd deleteFilter) events(v projection.View, seq uint64) ([]*events.Event, error) {
	return one(cmd.event(v, seq))
}

func (cmd addCallout) event(v projection.View, _ uint64) (*events.Event, error) {
	c := cmd.c.Clone()
	var err error
	if c.Key == "" {
		c.Key = uuid.NewString()
	} else if c.Key, err = parseKey("calloutKey", c.Key); err != nil {
		return nil, err
	}
	if err := checkText("name", c.Name, true, maxNameLen); err != nil {
		return nil, err
	}
	if err := checkText("description", c.Description, false, maxDescriptionLen); err != nil {
		return nil, err
	}
	if c.Layer != "" {
		if c.Layer, err = layerName("layer", c.Layer); err != nil {
			return nil, err
		}
	}
	if err := optionalKey("providerKey", &c.ProviderKey); err != nil {
		return nil, err
	}
	if err := checkFlags(c.Flags, events.CalloutFlags); err != nil {
		return nil, err
	}
	if err := checkSession(v, &c.Session); err != nil {
		return nil, err
	}
	if _, ok := v.Callout(c.Key); ok {
		return nil, errorf(CodeAlreadyExists, "callout %s already exists", c.Key)
	}
	return events.NewCalloutEvent(events.CalloutAdded, c), nil
}

func (cmd deleteCallout) event(v projection.View, _ uint64) (*events.Event, error) {
	key, err := parseKey("calloutKey", cmd.key)
	if err != nil {
		return nil, err
	}
	c, ok := v.Callout(key)
	if !ok {
		return nil, errorf(CodeCalloutNotFound, "callout %s does not exist", key)
	}
	if n := v.FiltersNaming(key); n > 0 {
		return nil, errorf(CodeInUse, "callout %s is named by %d filter(s); delete them first", key, n)
	}
	return events.NewCalloutEvent(events.CalloutDeleted, c.Clone()), nil
}

func (cmd addFilter) event(v projection.View, seq uint64) (*events.Event, error) {
	f := cmd.f.Clone()
	f.ID = seq
	var err error
	if f.Key == "" {
		f.Key = uuid.NewString()
	} else if f.Key, err = parseKey("filterKey", f.Key); err != nil {
		return nil, err
	}
	if err := checkText("name", f.Name, true, maxNameLen); err != nil {
		return nil, err
	}
	if err := checkText("description", f.Description, false, maxDescriptionLen); err != nil {
		return nil, err
	}
	if err := checkText("layer", f.Layer, true, maxNameLen); err != nil {
		return nil, err
	}
	if f.Layer, err = layerName("layer", f.Layer); err != nil {
		return nil, err
	}
	if f.SubLayerKey != "" {
		if f.SubLayerKey, err = subLayerKey("subLayerKey", f.SubLayerKey); err != nil {
			return nil, err
		}
	}
	if err := optionalKey("providerKey", &f.ProviderKey); err != nil {
		return nil, err
	}
	if len(f.ProviderData) > maxProviderDataLen {
		return nil, errorf(CodeInvalidParameter, "providerData: %d bytes, at most %d", len(f.ProviderData), maxProviderDataLen)
	}
	if err := checkConditions(f.Conditions); err != nil {
		return nil, err
	}
	if err := checkFlags(f.Flags, events.FilterFlags); err != nil {
		return nil, err
	}
	if err := checkSession(v, &f.Session); err != nil {
		return nil, err
	}
	if !f.Action.Valid() {
		return nil, errorf(CodeInvalidParameter, "action: %q is not one of %v", f.Action, events.ActionTypes)
	}
	if f.Action.IsCallout() {
		if f.CalloutKey == "" {
			return nil, errorf(CodeInvalidParameter, "calloutKey: action %s needs a callout", f.Action)
		}
		if f.CalloutKey, err = parseKey("calloutKey", f.CalloutKey); err != nil {
			return nil, err
		}
		c, ok := v.Callout(f.CalloutKey)
		if !ok {
			return nil, errorf(CodeCalloutNotFound, "calloutKey: callout %s does not exist", f.CalloutKey)
		}
		if c.Layer != "" && c.Layer != f.Layer {
			return nil, errorf(CodeIncompatibleLayer, "layer: callout %s applies to layer %s, not %s", c.Key, c.Layer, f.Layer)
		}
		if err := checkCalloutSession(f, c); err != nil {
			return nil, err
		}
	} else if f.CalloutKey != "" {
		return nil, errorf(CodeInvalidParameter, "calloutKey: action %s names no callout", f.Action)
	}
	if old, ok := v.Filter(f.Key); ok {
		return nil, errorf(CodeAlreadyExists, "filter %s already exists (id %d)", f.Key, old.ID)
	}
	return events.NewFilterEvent(events.FilterAdded, f), nil
}

func (cmd deleteFilter) event(v projection.View, _ uint64) (*events.Event, error) {
	f, err := lookupFilter(v, cmd.ref)
	if err != nil {
		return nil, err
	}
	ev := events.NewFilterEvent(events.FilterDeleted, f.Clone())
	ev.Reason = cmd.reason
	return ev, nil
}

// lookupFilter resolves a reference by key or by id.
func lookupFilter(v projection.View, ref FilterRef) (*events.Filter, error) {
	switch {
	case ref.FilterKey != "" && ref.FilterID != 0:
		return nil, errorf(CodeInvalidParameter, "give filterKey or filterId, not both")
	case ref.FilterKey != "":
		key, err := parseKey("filterKey", ref.FilterKey)
		if err != nil {
			return nil, err
		}
		if f, ok := v.Filter(key); ok {
			return f, nil
		}
		return nil, errorf(CodeFilterNotFound, "filterKey: no filter %s", key)
	case ref.FilterID != 0:
		if f, ok := v.FilterByID(ref.FilterID); ok {
			return f, nil
		}
		return nil, errorf(CodeFilterNotFound, "filterId: no filter with id %d", ref.FilterID)
	}
	return nil, errorf(CodeInvalidParameter, "filterKey or filterId is required")
}

func parseKey(field, s string) (string, error) {
	k, err := events.ParseKey(s)
	if err != nil {
		return "", errorf(CodeInvalidParameter, "%s: %v", field, err)
	}
	return k, nil
}

// optionalKey canonicalises *k in place if it is set.
func optionalKey(field string, k *string) error {
	if *k == "" {
		return nil
	}
	var err error
	*k, err = parseKey(field, *k)
	return err
}

func checkText(field, s string, required bool, max int) error {
	switch {
	case required && strings.TrimSpace(s) == "":
		return errorf(CodeInvalidParameter, "%s is required", field)
	case len(s) > max:
		return errorf(CodeInvalidParameter, "%s: %d bytes, at most %d", field, len(s), max)
	case strings.ContainsAny(s, "\r\n"):
		return errorf(CodeInvalidParameter, "%s: must be one line", field)
	}
	// Names and descriptions end up in terminals (engine filter list,
	// agents' logs) and in headers: nothing that a terminal would act on.
	if why := unprintable(s); why != "" {
		return errorf(CodeInvalidParameter, "%s: %s", field, why)
	}
	return nil
}

func checkFlags(flags, known []string) error {
	for _, fl := range flags {
		if !slices.Contains(known, fl) {
			return errorf(CodeInvalidParameter, "flags: %q is not one of %v", fl, known)
		}
	}
	return nil
}

func checkConditions(cs []events.Condition) error {
	if len(cs) > maxConditions {
		return errorf(CodeInvalidParameter, "conditions: %d, at most %d", len(cs), maxConditions)
	}
	for i := range cs {
		c := &cs[i]
		if c.Match == "" {
			c.Match = events.MatchEqual
		}
		field := fmt.Sprintf("conditions[%d].field", i)
		if err := checkText(field, c.Field, true, maxConditionLen); err != nil {
			return err
		}
		var err error
		if c.Field, err = conditionField(field, c.Field); err != nil {
			return err
		}
		if err := checkText(fmt.Sprintf("conditions[%d].value", i), c.Value, false, maxConditionLen); err != nil {
			return err
		}
		if !slices.Contains(events.MatchTypes, c.Match) {
			return errorf(CodeInvalidParameter, "conditions[%d].match: %q is not one of %v", i, c.Match, events.MatchTypes)
		}
	}
	return nil
}
