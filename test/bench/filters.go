package main

import (
	"fmt"
	"strconv"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"

	"github.com/wfpnats/wfp/events"
)

// benchLayer is the layer of every benchmark filter.
const benchLayer = "ALE_AUTH_CONNECT_V4"

// benchFilter is the filter every scenario adds: two conditions, a
// 40-byte name, an inspection action naming calloutKey. Key and ID are left
// to the caller (the engine fills both).
func benchFilter(i int, calloutKey string) events.Filter {
	return events.Filter{
		Name:   fmt.Sprintf("bench filter %027d", i), // 13 + 27 = 40 bytes
		Layer:  benchLayer,
		Weight: uint64(i % 16),
		Conditions: []events.Condition{
			{Field: "IP_REMOTE_PORT", Match: events.MatchEqual, Value: strconv.Itoa(1024 + i%60000)},
			{Field: "IP_REMOTE_ADDRESS", Match: events.MatchPrefix, Value: "10.1.2.0/24"},
		},
		Action:     events.ActionCalloutInspection,
		CalloutKey: calloutKey,
	}
}

func newKey() string { return uuid.NewString() }

// rawMsg is a message of exactly the shape of the template add event (same
// payload, same headers) on a fresh filter subject under prefix, with a
// fresh Nats-Msg-Id: what a raw baseline publishes in place of an add.
func rawMsg(tmpl events.Message, prefix, calloutKey string) *nats.Msg {
	key := newKey()
	h := make(nats.Header, len(tmpl.Header))
	for k, v := range tmpl.Header {
		h[k] = v
	}
	h[events.HeaderMsgID] = []string{nuid.Next()}
	h[events.HeaderFilterKey] = []string{key}
	return &nats.Msg{Subject: prefix + ".filter." + calloutKey + "." + key, Data: tmpl.Data, Header: h}
}
