package events

import (
	"slices"
	"strings"
	"testing"
)

func TestLayerNames(t *testing.T) {
	for _, name := range []string{"ALE_AUTH_CONNECT_V4", "INBOUND_TRANSPORT_V6", "STREAM_V4", "ALE_FLOW_ESTABLISHED_V6_DISCARD",
		"INBOUND_MAC_FRAME_NATIVE", "RPC_UM", "KM_AUTHORIZATION", "STREAM_PACKET_V6", "OUTBOUND_NETWORK_CONNECTION_POLICY_V4"} {
		if !LayerKnown(name) {
			t.Errorf("LayerKnown(%q) = false", name)
		}
	}
	for _, name := range []string{"L", "L1", "", "ale_auth_connect_v4", "FWPM_LAYER_ALE_AUTH_CONNECT_V4", "ALE_AUTH_ROUTE_V4"} {
		if LayerKnown(name) {
			t.Errorf("LayerKnown(%q) = true", name)
		}
	}
	for in, want := range map[string]string{"FWPM_LAYER_ALE_AUTH_CONNECT_V4": "ALE_AUTH_CONNECT_V4",
		"ale_auth_connect_v4": "ALE_AUTH_CONNECT_V4", "fwpm_layer_stream_v6": "STREAM_V6"} {
		if got, ok := CanonicalLayer(in); !ok || got != want {
			t.Errorf("CanonicalLayer(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
	if got, ok := CanonicalLayer("L"); ok || got != "L" {
		t.Errorf("CanonicalLayer(L) = %q, %v", got, ok)
	}
	seen := map[string]bool{}
	for _, n := range Layers() {
		if seen[n] || n != strings.ToUpper(n) || strings.HasPrefix(n, "FWPM_") {
			t.Errorf("layer %q duplicated, not upper case or prefixed", n)
		}
		seen[n] = true
	}
	if len(seen) != len(layerNames) {
		t.Fatal("Layers() does not return every layer")
	}
}

func TestLayerFamily(t *testing.T) {
	for name, want := range map[string]int{"ALE_AUTH_CONNECT_V4": 4, "INBOUND_IPPACKET_V6_DISCARD": 6,
		"FWPM_LAYER_STREAM_V4_DISCARD": 4, "RPC_UM": 0, "INBOUND_MAC_FRAME_ETHERNET": 0, "L": 0} {
		if got := LayerFamily(name); got != want {
			t.Errorf("LayerFamily(%q) = %d, want %d", name, got, want)
		}
	}
}

func TestConditionFields(t *testing.T) {
	for name, want := range map[string]FieldType{
		"IP_REMOTE_ADDRESS": FieldAddr, "IP_LOCAL_ADDRESS": FieldAddr, "IP_REMOTE_PORT": FieldUint16,
		"IP_LOCAL_PORT": FieldUint16, "IP_PROTOCOL": FieldUint8, "ALE_APP_ID": FieldString,
		"ALE_USER_ID": FieldSecurity, "IP_LOCAL_INTERFACE": FieldUint64, "FLAGS": FieldFlags,
		"DIRECTION": FieldUint32, "ICMP_TYPE": FieldUint16, "ICMP_CODE": FieldUint16,
		"IP_REMOTE_ADDRESS_V4": FieldIPv4, "IP_LOCAL_ADDRESS_V6": FieldIPv6, "MAC_REMOTE_ADDRESS": FieldMAC,
	} {
		if got, ok := ConditionField(name); !ok || got != want {
			t.Errorf("ConditionField(%q) = %v, %v; want %v", name, got, ok, want)
		}
	}
	if _, ok := ConditionField("FWPM_CONDITION_IP_REMOTE_PORT"); ok {
		t.Error("ConditionField accepts the prefixed name; only CanonicalField should")
	}
	if got, typ, ok := CanonicalField("fwpm_condition_ip_remote_port"); !ok || got != "IP_REMOTE_PORT" || typ != FieldUint16 {
		t.Errorf("CanonicalField = %q, %v, %v", got, typ, ok)
	}
	if got, typ, ok := CanonicalField("IP_REMOTE_PROT"); ok || got != "IP_REMOTE_PROT" || typ != FieldUnknown {
		t.Errorf("CanonicalField(typo) = %q, %v, %v", got, typ, ok)
	}
	names := ConditionFields()
	if !slices.IsSorted(names) || len(names) != len(conditionFields) {
		t.Fatal("ConditionFields is not the sorted list of every field")
	}
	for _, n := range names {
		if typ := conditionFields[n]; typ == FieldUnknown || typ.String() == "unknown" {
			t.Errorf("field %s has no type", n)
		}
	}
}

func TestSubLayers(t *testing.T) {
	for _, s := range subLayers {
		if k, err := ParseKey(s.key); err != nil || k != s.key {
			t.Errorf("sublayer %s key %q is not a canonical UUID", s.name, s.key)
		}
	}
	if k, ok := SubLayerKey("FWPM_SUBLAYER_UNIVERSAL"); !ok || k != SubLayerUniversal {
		t.Errorf("SubLayerKey(UNIVERSAL) = %q, %v", k, ok)
	}
	if n, ok := SubLayerName(strings.ToUpper(SubLayerInspection)); !ok || n != "INSPECTION" {
		t.Errorf("SubLayerName(INSPECTION key) = %q, %v", n, ok)
	}
	teredo, _ := SubLayerKey("teredo")
	if edge, _ := SubLayerKey("EDGE_TRAVERSAL"); edge != teredo {
		t.Error("TEREDO and EDGE_TRAVERSAL are one sublayer")
	}
	if n, _ := SubLayerName(teredo); n != "EDGE_TRAVERSAL" {
		t.Errorf("SubLayerName(teredo) = %q, want the current name EDGE_TRAVERSAL", n)
	}
	if _, ok := SubLayerName("5b1f0c0e-8a43-4b8e-9d7c-3c2f2d1a0b01"); ok {
		t.Error("a random key is no built-in sublayer")
	}
}

func TestFieldTypeKinds(t *testing.T) {
	for typ := FieldUnknown; typ <= FieldSecurity; typ++ {
		if typ != FieldUnknown && typ.String() == "unknown" {
			t.Errorf("FieldType %d has no name", typ)
		}
		wantInt := typ >= FieldUint8 && typ <= FieldFlags
		wantAddr := typ == FieldIPv4 || typ == FieldIPv6 || typ == FieldAddr
		if typ.Integer() != wantInt || typ.Address() != wantAddr {
			t.Errorf("%v: Integer %v Address %v", typ, typ.Integer(), typ.Address())
		}
	}
}
