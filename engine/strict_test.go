package engine

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/wfpnats/wfp/events"
	"github.com/wfpnats/wfp/internal/testkit"
)

// rawRequest sends body to an API endpoint as a client in another
// language would, and returns the error code and message of the answer
// ("" for a success) and its body.
func rawRequest(t *testing.T, nc *nats.Conn, endpoint, body string) (code, msg string, data []byte) {
	t.Helper()
	m, err := nc.Request(events.Subjects{Prefix: events.DefaultPrefix}.API(endpoint), []byte(body), 10*time.Second)
	if err != nil {
		t.Fatalf("%s %s: %v", endpoint, body, err)
	}
	return m.Header.Get(micro.ErrorCodeHeader), m.Header.Get(micro.ErrorHeader), m.Data
}

const strictCallout = "6f1c2b3a-9d4e-4f5a-8b6c-7d8e9f0a1b2c"

// Every request is read strictly: what the engine does not understand is
// refused with FWP_E_INVALID_PARAMETER naming the field, never ignored,
// and nothing is written.
func TestStrictInputIsRefusedNamingTheField(t *testing.T) {
	srv := testkit.Server(t)
	nc := testkit.Conn(t, srv)
	e := startEngine(t, nc)
	if code, msg, _ := rawRequest(t, nc, EndpointCalloutAdd, `{"calloutKey":"`+strictCallout+`","name":"c"}`); code != "" {
		t.Fatalf("callout add: %s %s", code, msg)
	}
	const block = `"name":"f","layer":"ALE_AUTH_CONNECT_V4","action":"block"`
	const zero = "00000000-0000-0000-0000-000000000000"
	for _, tc := range []struct {
		endpoint, body string
		names          string // what the message must name
	}{
		// Unknown fields, at the top and nested, on every endpoint.
		{EndpointFilterAdd, `{` + block + `,"conditons":[{"field":"IP_REMOTE_PORT","value":"23"}]}`, `"conditons"`},
		{EndpointFilterAdd, `{` + block + `,"conditions":[{"field":"IP_REMOTE_PORT","vaule":"23"}]}`, `"vaule"`},
		{EndpointCalloutAdd, `{"name":"c","layr":"ALE_AUTH_CONNECT_V4"}`, `"layr"`},
		{EndpointCalloutDelete, `{"calloutKey":"` + strictCallout + `","force":true}`, `"force"`},
		{EndpointFilterDelete, `{"filterId":1,"why":"x"}`, `"why"`},
		{EndpointFilterGet, `{"filterId":1,"x":1}`, `"x"`},
		{EndpointFilterList, `{"callout":"` + strictCallout + `"}`, `"callout"`},
		{EndpointCalloutList, `{"all":true}`, `"all"`},
		{EndpointTxApply, `{"ops":[{"op":"filter.add","filter":{` + block + `,"conditons":[]}}]}`, `"conditons"`},
		{EndpointTxApply, `{"opz":[]}`, `"opz"`},
		{EndpointTxApply, `[{"op":"filter.add","filter":{` + block + `,"wieght":3}}]`, `"wieght"`},
		// encoding/json alone would take these: a field in another case
		// (filling FilterID), and a field given twice (the last wins).
		{EndpointFilterDelete, `{"filterId":1,"filterid":2}`, `"filterid" (did you mean "filterId"?)`},
		{EndpointFilterAdd, `{` + block + `,"Action":"permit"}`, `"Action"`},
		{EndpointFilterAdd, `{` + block + `,"name":"g"}`, "name: given twice"},
		// Trailing data, on both tx forms too.
		{EndpointFilterAdd, `{` + block + `} {"name":"g"}`, "trailing data"},
		{EndpointFilterAdd, `{` + block + `}x`, "trailing data"},
		{EndpointFilterGet, `{"filterId":1}]`, "trailing data"},
		{EndpointTxApply, `{"ops":[{"op":"filter.add","filter":{` + block + `}}]} []`, "trailing data"},
		{EndpointTxApply, `[{"op":"filter.add","filter":{` + block + `}}] {}`, "trailing data"},
		// Keys: malformed or zero, wherever a key goes.
		{EndpointFilterAdd, `{"filterKey":"` + zero + `",` + block + `}`, "filterKey"},
		{EndpointFilterAdd, `{"filterKey":"{` + zero + `}",` + block + `}`, "filterKey"},
		{EndpointCalloutAdd, `{"calloutKey":"` + zero + `","name":"c"}`, "calloutKey"},
		{EndpointCalloutDelete, `{"calloutKey":"` + zero + `"}`, "calloutKey"},
		{EndpointFilterDelete, `{"filterKey":"` + zero + `"}`, "filterKey"},
		{EndpointFilterGet, `{"filterKey":"nope"}`, "filterKey"},
		{EndpointFilterList, `{"calloutKey":"` + zero + `"}`, "calloutKey"},
		{EndpointFilterList, `{"providerKey":"12345"}`, "providerKey"},
		{EndpointFilterAdd, `{` + block + `,"providerKey":"` + zero + `"}`, "providerKey"},
		// Control characters and direction overrides in what reaches a terminal.
		{EndpointFilterAdd, `{"name":"red \u001b[31m","layer":"ALE_AUTH_CONNECT_V4","action":"block"}`, "name: control character"},
		{EndpointFilterAdd, `{"name":"tab\there","layer":"ALE_AUTH_CONNECT_V4","action":"block"}`, "name: control character"},
		{EndpointFilterAdd, `{` + block + `,"description":"evil \u202e txt.exe"}`, "description: control character"},
		{EndpointFilterAdd, `{` + block + `,"conditions":[{"field":"IP_REMOTE_PORT","value":"2\u00073"}]}`, "conditions[0].value"},
		{EndpointCalloutAdd, `{"name":"c\u009b2J"}`, "name: control character"},
		// Negative numbers.
		{EndpointFilterAdd, `{` + block + `,"notifyTimeoutMs":-1}`, "notifyTimeoutMs"},
		{EndpointTxApply, `{"ops":[{"op":"filter.add","filter":{` + block + `}}],"notifyTimeoutMs":-1}`, "notifyTimeoutMs"},
		{EndpointFilterList, `{"limit":-1}`, "limit"},
		// WFP names.
		{EndpointFilterAdd, `{"name":"f","layer":"L","action":"block"}`, `layer: "L" is not a WFP layer`},
		{EndpointFilterAdd, `{"name":"f","layer":"custom:","action":"block"}`, "layer"},
		{EndpointFilterAdd, `{"name":"f","layer":"custom:two words","action":"block"}`, "layer"},
		{EndpointCalloutAdd, `{"name":"c","layer":"ALE_AUTH_CONECT_V4"}`, "layer"},
		{EndpointFilterAdd, `{` + block + `,"conditions":[{"field":"IP_REMOTE_PROT","value":"23"}]}`, `conditions[0].field: "IP_REMOTE_PROT"`},
		{EndpointFilterAdd, `{` + block + `,"subLayerKey":"NOT_A_SUBLAYER"}`, "subLayerKey"},
		{EndpointFilterList, `{"layer":"L1"}`, "layer"},
		{EndpointTxApply, `[{"op":"filter.add","filter":{"name":"f","layer":"L","action":"block"}}]`, "ops[0] (filter.add): layer"},
	} {
		code, msg, _ := rawRequest(t, nc, tc.endpoint, tc.body)
		if code != string(CodeInvalidParameter) || !strings.Contains(msg, tc.names) {
			t.Errorf("%s %s:\n  got %s %q\n  want %s naming %s", tc.endpoint, tc.body, code, msg, CodeInvalidParameter, tc.names)
		}
	}
	if s := e.Stats(); s.Seq != 1 || s.Filters != 0 {
		t.Fatalf("refused requests wrote to the log: %+v", s)
	}
}

// Names are stored in one form, whichever form the request used, and
// every query finds them in any form: keys in either case and in braces,
// layers and fields with or without their FWPM_ prefix.
func TestNamesAndKeysAreNormalised(t *testing.T) {
	srv := testkit.Server(t)
	nc := testkit.Conn(t, srv)
	startEngine(t, nc)
	c := NewClient(nc)
	ctx := context.Background()
	upper := strings.ToUpper(strictCallout)
	if _, err := c.AddCallout(ctx, events.Callout{Key: "{" + upper + "}", Name: "c", Layer: "fwpm_layer_ale_auth_connect_v4"}); err != nil {
		t.Fatal(err)
	}
	f, err := c.AddFilter(ctx, events.Filter{Name: "f", Layer: "FWPM_LAYER_ALE_AUTH_CONNECT_V4", Action: events.ActionCalloutInspection,
		CalloutKey: upper, SubLayerKey: "FWPM_SUBLAYER_UNIVERSAL",
		Conditions: []events.Condition{{Field: "fwpm_condition_ip_remote_port", Value: "23"}, {Field: "custom:APP_TAG", Value: "x"}}})
	if err != nil {
		t.Fatal(err)
	}
	if f.Layer != "ALE_AUTH_CONNECT_V4" || f.CalloutKey != strictCallout || f.SubLayerKey != events.SubLayerUniversal ||
		f.Conditions[0].Field != "IP_REMOTE_PORT" || f.Conditions[1].Field != "custom:APP_TAG" {
		t.Fatalf("stored %+v: want the canonical names", f)
	}
	if _, err := c.AddFilter(ctx, events.Filter{Name: "own", Layer: "custom:LAB_LAYER", Action: events.ActionBlock}); err != nil {
		t.Fatalf("a custom: layer: %v", err)
	}
	for _, q := range []ListFiltersRequest{
		{CalloutKey: strictCallout}, {CalloutKey: upper}, {CalloutKey: "{" + upper + "}"},
		{Layer: "ale_auth_connect_v4"}, {Layer: "FWPM_LAYER_ALE_AUTH_CONNECT_V4", CalloutKey: "{" + strictCallout + "}"},
	} {
		list, err := c.ListFilters(ctx, q)
		if err != nil || len(list.Filters) != 1 || list.Filters[0].ID != f.ID {
			t.Errorf("list %+v: %v, %v; want filter %d", q, list, err, f.ID)
		}
	}
	if got, err := c.GetFilter(ctx, FilterRef{FilterKey: "{" + strings.ToUpper(f.Key) + "}"}); err != nil || got.ID != f.ID {
		t.Fatalf("get by an upper-case braced key: %v, %v", got, err)
	}
	if err := c.DeleteFilter(ctx, FilterRef{FilterKey: strings.ToUpper(f.Key)}); err != nil {
		t.Fatalf("delete by an upper-case key: %v", err)
	}
}

// The bare-array form of a transaction is read as strictly as the object.
func TestParseTxIsStrictInBothForms(t *testing.T) {
	for _, bad := range []string{
		`[{"op":"filter.delete","filterId":1,"filterid":2}]`,
		`{"ops":[{"op":"filter.delete","filterId":1}],"extra":0}`,
		`[{"op":"filter.delete","filterId":1}]]`,
		``,
	} {
		if _, err := ParseTx([]byte(bad)); err == nil {
			t.Errorf("ParseTx(%s) accepted", bad)
		}
	}
	for _, good := range []string{`[{"op":"filter.delete","filterId":1}]`, ` {"ops":[{"op":"filter.delete","filterId":1}]}` + "\n"} {
		r, err := ParseTx([]byte(good))
		if err != nil || len(r.Ops) != 1 || r.Ops[0].FilterID != 1 {
			t.Errorf("ParseTx(%s) = %+v, %v", good, r, err)
		}
	}
}
