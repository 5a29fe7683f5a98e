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
	EndpointCalloutGet    = "callout.get"
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
// Keys may be given in any case, with or without braces; the layer with or
// without its FWPM_LAYER_ prefix.
//
// A listing comes in pages, each well within the server's max payload:
// the first request has no Cursor, each next one the Next of the page
// before (and the same template). Every page shows the filters as of the
// first page's Seq.
type ListFiltersRequest struct {
	CalloutKey  string `json:"calloutKey,omitempty"`
	Layer       string `json:"layer,omitempty"`
	ProviderKey string `json:"providerKey,omitempty"`
	// Cursor continues a listing: the Next of its previous page.
	Cursor string `json:"cursor,omitempty"`
	// Limit caps the filters in one page (0: as many as fit).
	Limit int `json:"limit,omitempty"`
}

// normalised checks the template's keys and layer and returns it in the
// form filters are stored in, so that "{ABC...}" finds "abc...".
func (r ListFiltersRequest) normalised() (projection.Template, error) {
	t := projection.Template{CalloutKey: r.CalloutKey, Layer: r.Layer, ProviderKey: r.ProviderKey}
	if err := optionalKey("calloutKey", &t.CalloutKey); err != nil {
		return t, err
	}
	if err := optionalKey("providerKey", &t.ProviderKey); err != nil {
		return t, err
	}
	if t.Layer != "" {
		var err error
		if t.Layer, err = layerName("layer", t.Layer); err != nil {
			return t, err
		}
	}
	return t, nil
}

// ListFiltersResponse is one page of the matching filters, in id order,
// as of Seq: the log position an agent can resume live from without a gap
// (R3a). Next is the cursor of the next page; it is empty on the last.
type ListFiltersResponse struct {
	Seq     uint64           `json:"seq"`
	Filters []*events.Filter `json:"filters"`
	Next    string           `json:"next,omitempty"`
}

// ListCalloutsRequest asks for a page of callout objects: the first with
// no Cursor, the next ones with the Next of the page before.
type ListCalloutsRequest struct {
	Cursor string `json:"cursor,omitempty"`
	// Limit caps the callouts in one page (0: as many as fit).
	Limit int `json:"limit,omitempty"`
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

// CalloutInfoResponse answers callout get: the callout object, the
// filters naming it and its agents, and the log position the answer
// reflects.
type CalloutInfoResponse struct {
	Callout CalloutInfo `json:"callout"`
	Seq     uint64      `json:"seq"`
}

// ListCalloutsResponse is one page of the callout objects, in key order,
// as of Seq; Next is the cursor of the next page, empty on the last.
type ListCalloutsResponse struct {
	Seq      uint64        `json:"seq"`
	Callouts []CalloutInfo `json:"callouts"`
	Next     string        `json:"next,omitempty"`
}
