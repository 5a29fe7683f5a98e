package engine

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/wfpnats/wfp/events"
)

// CustomPrefix marks a layer or condition field name that is not one of
// WFP's (a layer of a test rig, a field of a user-mode classifier): the
// engine checks every other name against the FWPM_LAYER_* and
// FWPM_CONDITION_* names, so a typo is refused instead of stored. The
// opt-in is in the name, not an engine flag, so every engine of a
// deployment validates alike and a reader sees which names are custom.
const CustomPrefix = "custom:"

// layerName checks a layer name and returns its stored form: a WFP layer
// (FWPM_LAYER_ALE_AUTH_CONNECT_V4, ale_auth_connect_v4 and
// ALE_AUTH_CONNECT_V4 are one layer, stored as the last), or a custom: one.
func layerName(field, s string) (string, error) {
	if rest, ok := strings.CutPrefix(s, CustomPrefix); ok {
		return s, customName(field, rest)
	}
	if c, ok := events.CanonicalLayer(s); ok {
		return c, nil
	}
	return "", errorf(CodeInvalidParameter,
		"%s: %q is not a WFP layer (an FWPM_LAYER_* name without its prefix, such as ALE_AUTH_CONNECT_V4); write %s%s for a layer of your own",
		field, s, CustomPrefix, s)
}

// conditionField checks a condition's field name, as layerName does.
func conditionField(field, s string) (string, error) {
	if rest, ok := strings.CutPrefix(s, CustomPrefix); ok {
		return s, customName(field, rest)
	}
	if c, _, ok := events.CanonicalField(s); ok {
		return c, nil
	}
	return "", errorf(CodeInvalidParameter,
		"%s: %q is not a WFP condition field (an FWPM_CONDITION_* name without its prefix, such as IP_REMOTE_PORT); write %s%s for a field of your own",
		field, s, CustomPrefix, s)
}

// subLayerKey checks a sublayer: the key of a sublayer of the caller's
// own (FwpmSubLayerAdd gives them GUIDs), or a built-in one by key or by
// name (UNIVERSAL, FWPM_SUBLAYER_INSPECTION, ...), stored as its key.
func subLayerKey(field, s string) (string, error) {
	if k, ok := events.SubLayerKey(s); ok {
		return k, nil
	}
	k, err := events.ParseKey(s)
	if err != nil {
		return "", errorf(CodeInvalidParameter, "%s: %q is neither a sublayer key (a UUID) nor a built-in WFP sublayer name (an FWPM_SUBLAYER_* name such as UNIVERSAL)", field, s)
	}
	return k, nil
}

// customName checks the part of a custom name after the prefix: a short
// word, so it can go into a header and a table unquoted.
func customName(field, s string) error {
	switch {
	case s == "":
		return errorf(CodeInvalidParameter, "%s: %q names nothing after %s", field, CustomPrefix+s, CustomPrefix)
	case len(s) > maxNameLen:
		return errorf(CodeInvalidParameter, "%s: %d bytes, at most %d", field, len(s), maxNameLen)
	}
	for _, r := range s {
		if r > unicode.MaxASCII || !(unicode.IsLetter(r) || unicode.IsDigit(r) || strings.ContainsRune("_-.", r)) {
			return errorf(CodeInvalidParameter, "%s: %q: a custom name is letters, digits, '_', '-' and '.'", field, CustomPrefix+s)
		}
	}
	return nil
}

// unprintable returns a description of the first character of s that
// must not reach a terminal or a log line, or "" if there is none: control
// characters (escape sequences start with one), Unicode's bidirectional
// controls (which reorder what a terminal shows: the "Trojan Source" set)
// and bytes that are not UTF-8.
func unprintable(s string) string {
	for i, r := range s {
		switch {
		case r == utf8.RuneError && !strings.HasPrefix(s[i:], string(utf8.RuneError)):
			return fmt.Sprintf("invalid UTF-8 at byte %d", i)
		case unicode.IsControl(r), unicode.Is(unicode.Bidi_Control, r):
			return fmt.Sprintf("control character %U at byte %d", r, i)
		}
	}
	return ""
}
