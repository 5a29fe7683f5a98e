package events

import (
	"slices"
	"strings"
)

// WFP names. Layers, sublayers and condition fields are written as
// Microsoft's constants without their prefix: the layer
// FWPM_LAYER_ALE_AUTH_CONNECT_V4 is "ALE_AUTH_CONNECT_V4", the condition
// FWPM_CONDITION_IP_REMOTE_PORT is "IP_REMOTE_PORT". The lists themselves,
// and where they come from, are in wfpnames_list.go.

// FieldType is how values of a condition field are written and compared:
// the FWP_DATA_TYPE of the field, folded into the few kinds that compare
// differently.
type FieldType uint8

const (
	FieldUnknown  FieldType = iota
	FieldUint8              // FWP_UINT8: decimal or 0x hex
	FieldUint16             // FWP_UINT16 (ports, ICMP type and code)
	FieldUint32             // FWP_UINT32 (and the enums WFP stores as one)
	FieldUint64             // FWP_UINT64 (interface LUIDs)
	FieldFlags              // FWP_UINT32 holding a bitmask (FWP_CONDITION_FLAG_*)
	FieldIPv4               // FWP_V4_ADDR_MASK or FWP_UINT32: "10.1.2.3", "10.0.0.0/8"
	FieldIPv6               // FWP_V6_ADDR_MASK or FWP_BYTE_ARRAY16_TYPE: "2001:db8::1", "2001:db8::/32"
	FieldAddr               // an address of either family; which one the layer's V4/V6 says
	FieldMAC                // FWP_BYTE_ARRAY6_TYPE: "00:11:22:33:44:55"
	FieldString             // FWP_BYTE_BLOB_TYPE, unicode strings, GUIDs as text: compared case-insensitively
	FieldSecurity           // FWP_SID, FWP_SECURITY_DESCRIPTOR_TYPE, tokens: opaque text, compared exactly
)

var fieldTypeNames = [...]string{
	FieldUnknown: "unknown", FieldUint8: "uint8", FieldUint16: "uint16", FieldUint32: "uint32",
	FieldUint64: "uint64", FieldFlags: "flags", FieldIPv4: "IPv4 address", FieldIPv6: "IPv6 address",
	FieldAddr: "IP address", FieldMAC: "MAC address", FieldString: "string", FieldSecurity: "security identifier",
}

func (t FieldType) String() string {
	if int(t) < len(fieldTypeNames) {
		return fieldTypeNames[t]
	}
	return "unknown"
}

// Integer reports whether values of t are unsigned integers (what WFP's
// FWP_MATCH_FLAGS_* accept).
func (t FieldType) Integer() bool {
	return t == FieldUint8 || t == FieldUint16 || t == FieldUint32 || t == FieldUint64 || t == FieldFlags
}

// Address reports whether values of t are IP addresses.
func (t FieldType) Address() bool { return t == FieldIPv4 || t == FieldIPv6 || t == FieldAddr }

const (
	layerPrefix     = "FWPM_LAYER_"
	conditionPrefix = "FWPM_CONDITION_"
	subLayerPrefix  = "FWPM_SUBLAYER_"
)

var (
	layerSet    = setOf(layerNames)
	subLayerKey = func() map[string]string {
		m := make(map[string]string, len(subLayers))
		for _, s := range subLayers {
			m[s.name] = s.key
		}
		return m
	}()
)

func setOf(names []string) map[string]struct{} {
	m := make(map[string]struct{}, len(names))
	for _, n := range names {
		m[n] = struct{}{}
	}
	return m
}

// LayerKnown reports whether name is a documented WFP layer, written as it
// is stored: without the FWPM_LAYER_ prefix, upper case.
func LayerKnown(name string) bool {
	_, ok := layerSet[name]
	return ok
}

// CanonicalLayer returns the stored form of a layer name given with or
// without its FWPM_LAYER_ prefix, in any case, and whether it is known.
// An unknown name is returned as given.
func CanonicalLayer(name string) (string, bool) {
	if LayerKnown(name) {
		return name, true
	}
	c := strings.TrimPrefix(strings.ToUpper(name), layerPrefix)
	if LayerKnown(c) {
		return c, true
	}
	return name, false
}

// Layers returns every known layer name in the order of Microsoft's list.
func Layers() []string { return slices.Clone(layerNames) }

// LayerFamily returns 4 or 6 for a layer of the IPv4 or IPv6 stack (its name
// says V4 or V6), and 0 for a layer of neither or an unknown one.
func LayerFamily(name string) int {
	c, ok := CanonicalLayer(name)
	switch {
	case !ok:
		return 0
	case strings.HasSuffix(c, "_V4") || strings.Contains(c, "_V4_"):
		return 4
	case strings.HasSuffix(c, "_V6") || strings.Contains(c, "_V6_"):
		return 6
	}
	return 0
}

// ConditionField returns the value type of a documented condition field,
// written as stored: without the FWPM_CONDITION_ prefix, upper case.
func ConditionField(name string) (FieldType, bool) {
	t, ok := conditionFields[name]
	return t, ok
}

// CanonicalField returns the stored form of a condition field given with or
// without its FWPM_CONDITION_ prefix, in any case, with its type. An unknown
// name is returned as given, with FieldUnknown.
func CanonicalField(name string) (string, FieldType, bool) {
	if t, ok := conditionFields[name]; ok {
		return name, t, true
	}
	c := strings.TrimPrefix(strings.ToUpper(name), conditionPrefix)
	if t, ok := conditionFields[c]; ok {
		return c, t, true
	}
	return name, FieldUnknown, false
}

// ConditionFields returns every known condition field name, sorted.
func ConditionFields() []string {
	names := make([]string, 0, len(conditionFields))
	for n := range conditionFields {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Built-in sublayer keys the classify order depends on.
const (
	// SubLayerUniversal hosts every filter not assigned to another
	// sublayer: a filter with no subLayerKey is in it.
	SubLayerUniversal = "eebecc03-ced4-4380-819a-2734397b2b74"
	// SubLayerInspection is documented as the lowest weighted sublayer.
	SubLayerInspection = "877519e1-e6a9-41a5-81b4-8c4f118e4a60"
)

// SubLayerKey returns the GUID of a built-in sublayer named with or without
// its FWPM_SUBLAYER_ prefix, in any case.
func SubLayerKey(name string) (string, bool) {
	k, ok := subLayerKey[strings.TrimPrefix(strings.ToUpper(name), subLayerPrefix)]
	return k, ok
}

// SubLayerName returns the name of the built-in sublayer with key (a GUID
// in any case), and false for any other key. EDGE_TRAVERSAL and TEREDO share
// a key; its name is EDGE_TRAVERSAL, the one Microsoft says to use.
func SubLayerName(key string) (string, bool) {
	key = strings.ToLower(key)
	for _, s := range subLayers {
		if s.key == key {
			return s.name, true
		}
	}
	return "", false
}
