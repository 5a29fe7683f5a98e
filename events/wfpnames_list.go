package events

// The lists below were taken from Microsoft's documentation, checked
// against the SDK header fwpmu.h:
//
//   - Layers: "Filtering Layer Identifiers" (win32 docs, FWP, the
//     management FWPM_LAYER_* list), plus the layers fwpmu.h defines but
//     that page does not list (the *_FAST layers, INBOUND_RESERVED2,
//     OUTBOUND_NETWORK_CONNECTION_POLICY_V4/V6). ALE_AUTH_ROUTE_V4/V6, which
//     only the WDK's copy of the page names and no header defines, is left
//     out.
//   - Sublayers: "Filtering Sublayer Identifiers" (names), with the GUIDs
//     of fwpmu.h. The header's undocumented MPSSVC_* and
//     IPSEC_SECURITY_REALM sublayers are left out.
//   - Conditions: "Filtering Condition Identifiers" (every FWPM_CONDITION_*
//     with its FWP_DATA_TYPE). Knowingly incomplete: conditions newer than
//     that page, and the names of the bits of FLAGS and L2_FLAGS (values of
//     flag fields are written as numbers). The page types IP_NEXTHOP_ADDRESS
//     as FWP_V4_ADDR_MASK only; it is FieldAddr here like the other
//     address fields that exist on V4 and V6 layers.
//
// Which conditions are available at which layer ("Filtering Conditions
// Available at Each Filtering Layer") is not encoded: a condition on a
// field the layer never supplies simply never matches.

var layerNames = []string{
	"INBOUND_IPPACKET_V4", "INBOUND_IPPACKET_V4_DISCARD", "INBOUND_IPPACKET_V6", "INBOUND_IPPACKET_V6_DISCARD",
	"OUTBOUND_IPPACKET_V4", "OUTBOUND_IPPACKET_V4_DISCARD", "OUTBOUND_IPPACKET_V6", "OUTBOUND_IPPACKET_V6_DISCARD",
	"IPFORWARD_V4", "IPFORWARD_V4_DISCARD", "IPFORWARD_V6", "IPFORWARD_V6_DISCARD",
	"INBOUND_TRANSPORT_V4", "INBOUND_TRANSPORT_V4_DISCARD", "INBOUND_TRANSPORT_V6", "INBOUND_TRANSPORT_V6_DISCARD",
	"OUTBOUND_TRANSPORT_V4", "OUTBOUND_TRANSPORT_V4_DISCARD", "OUTBOUND_TRANSPORT_V6", "OUTBOUND_TRANSPORT_V6_DISCARD",
	"STREAM_V4", "STREAM_V4_DISCARD", "STREAM_V6", "STREAM_V6_DISCARD",
	"DATAGRAM_DATA_V4", "DATAGRAM_DATA_V4_DISCARD", "DATAGRAM_DATA_V6", "DATAGRAM_DATA_V6_DISCARD",
	"INBOUND_ICMP_ERROR_V4", "INBOUND_ICMP_ERROR_V4_DISCARD", "INBOUND_ICMP_ERROR_V6", "INBOUND_ICMP_ERROR_V6_DISCARD",
	"OUTBOUND_ICMP_ERROR_V4", "OUTBOUND_ICMP_ERROR_V4_DISCARD", "OUTBOUND_ICMP_ERROR_V6", "OUTBOUND_ICMP_ERROR_V6_DISCARD",
	"ALE_RESOURCE_ASSIGNMENT_V4", "ALE_RESOURCE_ASSIGNMENT_V4_DISCARD", "ALE_RESOURCE_ASSIGNMENT_V6", "ALE_RESOURCE_ASSIGNMENT_V6_DISCARD",
	"ALE_AUTH_LISTEN_V4", "ALE_AUTH_LISTEN_V4_DISCARD", "ALE_AUTH_LISTEN_V6", "ALE_AUTH_LISTEN_V6_DISCARD",
	"ALE_AUTH_RECV_ACCEPT_V4", "ALE_AUTH_RECV_ACCEPT_V4_DISCARD", "ALE_AUTH_RECV_ACCEPT_V6", "ALE_AUTH_RECV_ACCEPT_V6_DISCARD",
	"ALE_AUTH_CONNECT_V4", "ALE_AUTH_CONNECT_V4_DISCARD", "ALE_AUTH_CONNECT_V6", "ALE_AUTH_CONNECT_V6_DISCARD",
	"ALE_FLOW_ESTABLISHED_V4", "ALE_FLOW_ESTABLISHED_V4_DISCARD", "ALE_FLOW_ESTABLISHED_V6", "ALE_FLOW_ESTABLISHED_V6_DISCARD",
	"INBOUND_MAC_FRAME_ETHERNET", "OUTBOUND_MAC_FRAME_ETHERNET", "INBOUND_MAC_FRAME_NATIVE", "OUTBOUND_MAC_FRAME_NATIVE",
	"INGRESS_VSWITCH_ETHERNET", "EGRESS_VSWITCH_ETHERNET",
	"INGRESS_VSWITCH_TRANSPORT_V4", "INGRESS_VSWITCH_TRANSPORT_V6", "EGRESS_VSWITCH_TRANSPORT_V4", "EGRESS_VSWITCH_TRANSPORT_V6",
	"IPSEC_KM_DEMUX_V4", "IPSEC_KM_DEMUX_V6", "IPSEC_V4", "IPSEC_V6", "IKEEXT_V4", "IKEEXT_V6",
	"RPC_UM", "RPC_EPMAP", "RPC_EP_ADD", "RPC_PROXY_CONN", "RPC_PROXY_IF",
	"KM_AUTHORIZATION",
	"NAME_RESOLUTION_CACHE_V4", "NAME_RESOLUTION_CACHE_V6",
	"ALE_RESOURCE_RELEASE_V4", "ALE_RESOURCE_RELEASE_V6",
	"ALE_ENDPOINT_CLOSURE_V4", "ALE_ENDPOINT_CLOSURE_V6",
	"ALE_CONNECT_REDIRECT_V4", "ALE_CONNECT_REDIRECT_V6",
	"ALE_BIND_REDIRECT_V4", "ALE_BIND_REDIRECT_V6",
	"STREAM_PACKET_V4", "STREAM_PACKET_V6",
	// In fwpmu.h, not on the documentation page.
	"INBOUND_TRANSPORT_FAST", "OUTBOUND_TRANSPORT_FAST",
	"INBOUND_MAC_FRAME_NATIVE_FAST", "OUTBOUND_MAC_FRAME_NATIVE_FAST",
	"INBOUND_RESERVED2",
	"OUTBOUND_NETWORK_CONNECTION_POLICY_V4", "OUTBOUND_NETWORK_CONNECTION_POLICY_V6",
}

var subLayers = []struct{ name, key string }{
	{"EDGE_TRAVERSAL", "ba69dc66-5176-4979-9c89-26a7b46a8327"},
	{"TEREDO", "ba69dc66-5176-4979-9c89-26a7b46a8327"}, // the pre-Windows 7 name of EDGE_TRAVERSAL
	{"INSPECTION", SubLayerInspection},
	{"IPSEC_DOSP", "e076d572-5d3d-48ef-802b-909eddb098bd"},
	{"IPSEC_FORWARD_OUTBOUND_TUNNEL", "a5082e73-8f71-4559-8a9a-101cea04ef87"},
	{"IPSEC_TUNNEL", "83f299ed-9ff4-4967-aff4-c309f4dab827"},
	{"LIPS", "1b75c0ce-ff60-4711-a70f-b4958cc3b2d0"},
	{"RPC_AUDIT", "758c84f4-fb48-4de9-9aeb-3ed9551ab1fd"},
	{"SECURE_SOCKET", "15a66e17-3f3c-4f7b-aa6c-812aa613dd82"},
	{"TCP_CHIMNEY_OFFLOAD", "337608b9-b7d5-4d5f-82f9-3618618bc058"},
	{"TCP_TEMPLATES", "24421dcf-0ac5-4caa-9e14-50f6e3636af0"},
	{"UNIVERSAL", SubLayerUniversal},
}

var conditionFields = map[string]FieldType{
	// Windows 8 and later.
	"INTERFACE_MAC_ADDRESS":              FieldMAC,
	"MAC_LOCAL_ADDRESS":                  FieldMAC,
	"MAC_REMOTE_ADDRESS":                 FieldMAC,
	"ETHER_TYPE":                         FieldUint16,
	"VLAN_ID":                            FieldUint16,
	"VSWITCH_TENANT_NETWORK_ID":          FieldUint16,
	"NDIS_PORT":                          FieldUint32,
	"NDIS_MEDIA_TYPE":                    FieldUint32,
	"NDIS_PHYSICAL_MEDIA_TYPE":           FieldUint32,
	"L2_FLAGS":                           FieldFlags,
	"MAC_LOCAL_ADDRESS_TYPE":             FieldUint8,
	"MAC_REMOTE_ADDRESS_TYPE":            FieldUint8,
	"MAC_SOURCE_ADDRESS":                 FieldMAC,
	"MAC_DESTINATION_ADDRESS":            FieldMAC,
	"MAC_SOURCE_ADDRESS_TYPE":            FieldUint8,
	"MAC_DESTINATION_ADDRESS_TYPE":       FieldUint8,
	"IP_SOURCE_PORT":                     FieldUint16,
	"VSWITCH_ICMP_TYPE":                  FieldUint16,
	"IP_DESTINATION_PORT":                FieldUint16,
	"VSWITCH_ICMP_CODE":                  FieldUint16,
	"VSWITCH_ID":                         FieldString,
	"VSWITCH_NETWORK_TYPE":               FieldUint8,
	"VSWITCH_SOURCE_INTERFACE_ID":        FieldString,
	"VSWITCH_DESTINATION_INTERFACE_ID":   FieldString,
	"VSWITCH_SOURCE_VM_ID":               FieldString,
	"VSWITCH_DESTINATION_VM_ID":          FieldString,
	"VSWITCH_SOURCE_INTERFACE_TYPE":      FieldUint8,
	"VSWITCH_DESTINATION_INTERFACE_TYPE": FieldUint8,
	"INTERFACE":                          FieldUint64, // fwpmu.h: an alias of IP_LOCAL_INTERFACE
	"ALE_PACKAGE_ID":                     FieldSecurity,
	"ALE_ORIGINAL_APP_ID":                FieldString,

	// Windows 7 and later.
	"IP_NEXTHOP_ADDRESS":               FieldAddr,
	"IP_NEXTHOP_INTERFACE":             FieldUint64,
	"NEXTHOP_INTERFACE_TYPE":           FieldUint32,
	"NEXTHOP_TUNNEL_TYPE":              FieldUint32,
	"NEXTHOP_INTERFACE_INDEX":          FieldUint32,
	"NEXTHOP_SUB_INTERFACE_INDEX":      FieldUint32,
	"ORIGINAL_PROFILE_ID":              FieldUint32,
	"CURRENT_PROFILE_ID":               FieldUint32,
	"LOCAL_INTERFACE_PROFILE_ID":       FieldUint32,
	"ARRIVAL_INTERFACE_PROFILE_ID":     FieldUint32,
	"NEXTHOP_INTERFACE_PROFILE_ID":     FieldUint32,
	"REAUTHORIZE_REASON":               FieldUint32,
	"ALE_REAUTH_REASON":                FieldUint32,
	"ORIGINAL_ICMP_TYPE":               FieldUint16,
	"IP_PHYSICAL_ARRIVAL_INTERFACE":    FieldUint64,
	"IP_PHYSICAL_NEXTHOP_INTERFACE":    FieldUint64,
	"INTERFACE_QUARANTINE_EPOCH":       FieldUint64,
	"ALE_SIO_FIREWALL_SOCKET_PROPERTY": FieldUint32,

	// Windows Vista SP1 and later.
	"IP_ARRIVAL_INTERFACE":        FieldUint64,
	"ARRIVAL_INTERFACE_TYPE":      FieldUint32,
	"ARRIVAL_TUNNEL_TYPE":         FieldUint32,
	"ARRIVAL_INTERFACE_INDEX":     FieldUint32,
	"ARRIVAL_SUB_INTERFACE_INDEX": FieldUint32,
	"LOCAL_INTERFACE_INDEX":       FieldUint32,
	"LOCAL_INTERFACE_TYPE":        FieldUint32,
	"LOCAL_TUNNEL_TYPE":           FieldUint32,

	// Windows Vista and later.
	"IP_LOCAL_ADDRESS":                FieldAddr,
	"IP_REMOTE_ADDRESS":               FieldAddr,
	"IP_SOURCE_ADDRESS":               FieldAddr,
	"IP_DESTINATION_ADDRESS":          FieldAddr,
	"IP_LOCAL_ADDRESS_TYPE":           FieldUint8,
	"IP_DESTINATION_ADDRESS_TYPE":     FieldUint8,
	"IP_LOCAL_INTERFACE":              FieldUint64,
	"INTERFACE_TYPE":                  FieldUint32,
	"TUNNEL_TYPE":                     FieldUint32,
	"IP_FORWARD_INTERFACE":            FieldUint64,
	"IP_PROTOCOL":                     FieldUint8,
	"IP_LOCAL_PORT":                   FieldUint16,
	"ICMP_TYPE":                       FieldUint16,
	"IP_REMOTE_PORT":                  FieldUint16,
	"ICMP_CODE":                       FieldUint16,
	"EMBEDDED_LOCAL_ADDRESS_TYPE":     FieldUint8,
	"EMBEDDED_REMOTE_ADDRESS":         FieldAddr,
	"EMBEDDED_PROTOCOL":               FieldUint8,
	"EMBEDDED_LOCAL_PORT":             FieldUint16,
	"EMBEDDED_REMOTE_PORT":            FieldUint16,
	"FLAGS":                           FieldFlags,
	"DIRECTION":                       FieldUint32,
	"INTERFACE_INDEX":                 FieldUint32,
	"SUB_INTERFACE_INDEX":             FieldUint32,
	"SOURCE_INTERFACE_INDEX":          FieldUint32,
	"SOURCE_SUB_INTERFACE_INDEX":      FieldUint32,
	"DESTINATION_INTERFACE_INDEX":     FieldUint32,
	"DESTINATION_SUB_INTERFACE_INDEX": FieldUint32,
	"ALE_APP_ID":                      FieldString,
	"ALE_USER_ID":                     FieldSecurity,
	"ALE_REMOTE_USER_ID":              FieldSecurity,
	"ALE_REMOTE_MACHINE_ID":           FieldSecurity,
	"ALE_PROMISCUOUS_MODE":            FieldUint32,
	"ALE_SIO_FIREWALL_SYSTEM_PORT":    FieldUint32,
	"ALE_NAP_CONTEXT":                 FieldUint32,

	// User mode only, Windows 8, 7 and Vista.
	"QM_MODE":                  FieldUint32,
	"KM_AUTH_NAP_CONTEXT":      FieldUint32,
	"PEER_NAME":                FieldString,
	"REMOTE_ID":                FieldSecurity,
	"AUTHENTICATION_TYPE":      FieldUint32, // an IKEEXT_AUTHENTICATION_METHOD_TYPE
	"KM_TYPE":                  FieldUint32, // an IKEEXT_KEY_MODULE_TYPE
	"KM_MODE":                  FieldUint32, // an IPSEC_TOKEN_MODE
	"IPSEC_POLICY_KEY":         FieldString, // a GUID
	"REMOTE_USER_TOKEN":        FieldSecurity,
	"RPC_IF_UUID":              FieldString, // a GUID
	"RPC_IF_VERSION":           FieldUint16,
	"RPC_IF_FLAG":              FieldUint32,
	"DCOM_APP_ID":              FieldString, // a GUID
	"IMAGE_NAME":               FieldString,
	"RPC_PROTOCOL":             FieldUint8,
	"RPC_AUTH_TYPE":            FieldUint8,
	"RPC_AUTH_LEVEL":           FieldUint8,
	"SEC_ENCRYPT_ALGORITHM":    FieldUint32,
	"SEC_KEY_SIZE":             FieldUint32,
	"IP_LOCAL_ADDRESS_V4":      FieldIPv4,
	"IP_LOCAL_ADDRESS_V6":      FieldIPv6,
	"IP_REMOTE_ADDRESS_V4":     FieldIPv4,
	"IP_REMOTE_ADDRESS_V6":     FieldIPv6,
	"PIPE":                     FieldString,
	"PROCESS_WITH_RPC_IF_UUID": FieldString, // a GUID
	"RPC_EP_VALUE":             FieldString,
	"RPC_EP_FLAGS":             FieldUint32,
	"CLIENT_TOKEN":             FieldSecurity,
	"RPC_SERVER_NAME":          FieldString,
	"RPC_SERVER_PORT":          FieldUint16,
	"RPC_PROXY_AUTH_TYPE":      FieldString,
	"CLIENT_CERT_KEY_LENGTH":   FieldUint32,
	"CLIENT_CERT_OID":          FieldString,
	"NET_EVENT_TYPE":           FieldUint32,

	// Added to the page since (Windows 10).
	"ALE_PACKAGE_FAMILY_NAME":           FieldSecurity,
	"ALE_SECURITY_ATTRIBUTE_FQBN_VALUE": FieldString,
	"IPSEC_SECURITY_REALM_ID":           FieldString,
	"ALE_EFFECTIVE_NAME":                FieldString,
	"RPC_OPNUM":                         FieldUint16,
	"COMPARTMENT_ID":                    FieldUint32,
}
