// Package classify decides what a layer's filters do with one piece of
// traffic, the way the Windows Filtering Platform's filter engine does:
// which filters match, in which order they are evaluated, what their
// callouts say and what the final decision is. It is pure: no I/O, and it
// imports only events and the standard library.
//
// Compile a layer's filters once (condition values are parsed then), then
// call (*Layer).Classify for each input; Validate checks one condition the
// way Compile does, for refusing a filter at add time.
//
// # Matching
//
// A filter matches when its conditions hold. Conditions on the same field
// are OR-ed, conditions on different fields AND-ed, and a filter without
// conditions matches everything (FWPM_FILTER0, FWPS_FILTER0). The
// OR_CONDITIONS flag changes nothing: in WFP it is the runtime marker
// (FWPS_FILTER_FLAG_OR_CONDITIONS) that a filter has several conditions on
// one field, which are OR-ed anyway.
//
// A condition is never met when its field is missing from the input, when
// the input is an address of the other family, or when the condition did
// not compile (unknown field, match type the field does not allow, value
// that does not parse: (*Layer).Invalid lists them). A condition on an
// unknown field makes its filter match nothing.
//
// Values are compared by the field's type (events.ConditionField):
//
//   - integers (uint8 to uint64, flags): decimal or 0x hex; equal,
//     not-equal, greater, less, range, and the three flags-* tests of a
//     bitmask ("flags-all-set 0x5" needs bits 0 and 2).
//   - IPv4, IPv6, and either-family addresses: "10.1.2.3", "10.0.0.0/8",
//     "2001:db8::/32". Equal, not-equal and prefix take an optional
//     /prefix-length and test membership of the network (a plain address
//     is a one-address network); greater, less and range compare plain
//     addresses of one family as numbers.
//   - MAC addresses ("00:11:22:33:44:55"): equal, not-equal.
//   - strings (application ids and other blobs): compared case-insensitively
//     (both sides lower-cased); equal, not-equal, greater, less (byte order)
//     and prefix. Note that WFP's FWP_MATCH_PREFIX, despite its name, is
//     documented to test the end of the value; ours tests the beginning, as
//     named, so "\device\harddiskvolume1\program files\" covers every
//     application under that directory.
//   - security identifiers and descriptors: opaque text; equal and
//     not-equal, exact.
//
// A range is written "lo-hi", both ends included, lo <= hi: "1024-65535",
// "10.0.0.1-10.0.0.9". Ranges of strings are not supported ("-" is
// common in them).
//
// # Order
//
// Filters are evaluated sublayer by sublayer, from the highest sublayer
// weight to the lowest, and within a sublayer from the highest filter weight
// to the lowest, ties by filter id (oldest first), then key. A filter
// without a subLayerKey is in FWPM_SUBLAYER_UNIVERSAL, as in WFP. The
// engine stores no sublayer objects, so sublayer weights come from
// WithSubLayerWeights; a sublayer without one weighs
// DefaultSubLayerWeight, except FWPM_SUBLAYER_INSPECTION, documented as the
// lowest, which weighs 0; sublayers of equal weight go by key.
//
// # Decision
//
// Within a sublayer, matched filters are evaluated in order until one
// permits or blocks; the rest of that sublayer is not evaluated (WFP
// "Filter Arbitration"):
//
//   - permit and block decide.
//   - callout-inspection asks its callout and goes on whatever it says.
//   - callout-terminating and callout-unknown ask their callout and decide
//     on its permit or block. On continue, callout-unknown goes on, but
//     callout-terminating, which must decide, blocks.
//   - A callout that returns an error (or no valid verdict) does not stop
//     classify: an inspection filter goes on, a terminating or unknown one
//     blocks. Classify stops only if ctx ends.
//   - Unregistered callouts (R8; the Registry does not know the key): an
//     inspection filter is skipped, a terminating or unknown one acts as a
//     block filter, or as a permit filter when it has
//     PERMIT_IF_CALLOUT_UNREGISTERED.
//
// Every sublayer is evaluated, and their decisions combine by WFP's
// override policy, simplified: a block is final and ends evaluation; a
// permit stands unless a later sublayer blocks; a hard permit (a filter
// with CLEAR_ACTION_RIGHT that permits, itself or through its callout) can
// be overridden only by a callout's block, a veto. With every filter in
// one sublayer this is simply: the first permit or block decides.
//
// When no filter decides, the traffic is permitted: WFP permits what no
// filter blocks.
package classify
