package engine

import (
	"github.com/wfpnats/wfp/events"
	"github.com/wfpnats/wfp/projection"
)

// ServiceName is the NATS micro service name: `nats micro ls` shows it.
const ServiceName = "wfp-engine"

// Version is the API version the service announces.
const Version = "0.1.0"

// Endpoints, relative to "<prefix>.api.". Each takes and returns JSON.
const (
	EndpointCalloutAdd    = "callout.add"
	EndpointCalloutDelete = "callout.delete"
	EndpointCalloutList   = "callout.list"
	EndpointFilterAdd     = "filter.add"
	EndpointFilterDelete  = "filter.delete"
	EndpointFilterGet     = "filter.get"
	EndpointFilterList    = "filter.list"
	EndpointTxApply       = "tx.apply"
)

// AddFilterRequest is a filter to add, with how long to wait for the
// callout's agents to accept it (R7).
type AddFilterRequest struct {
	events.Filter
	// NotifyTimeoutMs bounds the wait for agents' answers; 0 means
	// DefaultNotifyTimeout.
	NotifyTimeoutMs int64 `json:"notifyTimeoutMs,omitempty"`
}

// FilterRef names one filter, by key or by runtime id (exactly one).
type FilterRef struct {
	FilterKey string `json:"filterKey,omitempty"`
	FilterID  uint64 `json:"filterId,omitempty"`
}

// CalloutRef names one callout object.
type CalloutRef struct {
	CalloutKey string `json:"calloutKey"`
}

// FilterResponse answers filter add and get: the filter as stored, and the
// log position the answer reflects.
type FilterResponse struct {
	Filter *events.Filter `json:"filter"`
	Seq    uint64         `json:"seq"`
}

// CalloutResponse answers callout add.
type CalloutResponse struct {
	Callout *events.Callout `json:"callout"`
	Seq     uint64          `json:"seq"`
}

// DeleteResponse answers deletes: what was deleted, at which position.
type DeleteResponse struct {
	Seq uint64 `json:"seq"`
}

// ListFiltersRequest is an enumeration template, as FwpmFilterEnum takes
// one: every non-empty field must match; the zero value lists every filter.
type ListFiltersRequest struct {
	CalloutKey  string `json:"calloutKey,omitempty"`
	Layer       string `json:"layer,omitempty"`
	ProviderKey string `json:"providerKey,omitempty"`
}

func (r ListFiltersRequest) template() projection.Template {
	return projection.Template{CalloutKey: r.CalloutKey, Layer: r.Layer, ProviderKey: r.ProviderKey}
}

// ListFiltersResponse is a snapshot of the matching filters as of Seq: the
// log position an agent can resume live from without a gap (R3a).
type ListFiltersResponse struct {
	Seq     uint64           `json:"seq"`
	Filters []*events.Filter `json:"filters"`
}

// CalloutInfo is a callout object with the number of filters naming it
// and the agents registered for it. Registered is WFP's
// FWPM_CALLOUT_FLAG_REGISTERED: the callout has live agents, so classify
// asks it; an unregistered one blocks or is skipped (R8).
type CalloutInfo struct {
	events.Callout
	FilterCount int         `json:"filterCount"`
	Agents      []AgentInfo `json:"agents"`
	Registered  bool        `json:"registered"`
}

// ListCalloutsResponse lists every callout object as of Seq.
type ListCalloutsResponse struct {
	Seq      uint64        `json:"seq"`
	Callouts []CalloutInfo `json:"callouts"`
}
