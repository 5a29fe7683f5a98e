package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/wfpnats/wfp/events"
	"github.com/wfpnats/wfp/internal/testkit"
)

// addBlockFilters adds n block filters in transactions of per operations
// and returns their ids in order.
func addBlockFilters(t *testing.T, c *Client, n int, name string, per int) []uint64 {
	t.Helper()
	var ids []uint64
	for len(ids) < n {
		var ops []TxOp
		for i := len(ids); i < n && len(ops) < per; i++ {
			ops = append(ops, TxOp{Op: OpFilterAdd, Filter: &events.Filter{Name: fmt.Sprintf("%s %d", name, i),
				Layer: "ALE_AUTH_CONNECT_V4", Action: events.ActionBlock,
				Conditions: []events.Condition{{Field: "IP_REMOTE_PORT", Value: fmt.Sprint(i)}}}})
		}
		resp, err := c.ApplyTx(context.Background(), ops)
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range resp.Events {
			ids = append(ids, ev.Filter.ID)
		}
	}
	return ids
}

// listPage asks for one page of filters as a client in another language
// would.
func listPage(t *testing.T, nc *nats.Conn, req ListFiltersRequest) (ListFiltersResponse, string, string) {
	t.Helper()
	body, _ := json.Marshal(req)
	code, msg, data := rawRequest(t, nc, EndpointFilterList, string(body))
	var resp ListFiltersResponse
	if code == "" {
		if err := json.Unmarshal(data, &resp); err != nil {
			t.Fatal(err)
		}
	}
	return resp, code, msg
}

func ids(fs []*events.Filter) []uint64 {
	out := make([]uint64, len(fs))
	for i, f := range fs {
		out[i] = f.ID
	}
	return out
}

// Every page of a listing shows the state as of its first page, although
// filters are deleted and added between pages, and although the later
// pages are served by another engine than the first.
func TestListingPagesShowOneSequence(t *testing.T) {
	srv := testkit.Server(t)
	nc := testkit.Conn(t, srv)
	a := startEngine(t, nc)
	startEngine(t, testkit.Conn(t, srv)) // b
	c := NewClient(nc)
	want := addBlockFilters(t, c, 50, "f", MaxTxOps)

	p, code, msg := listPage(t, nc, ListFiltersRequest{Limit: 20})
	if code != "" || len(p.Filters) != 20 || p.Next == "" {
		t.Fatalf("first page: %s %s, %d filters, next %q", code, msg, len(p.Filters), p.Next)
	}
	got, asOf := ids(p.Filters), p.Seq

	// The state moves on: filters of the later pages go, new ones come.
	for _, id := range want[30:35] {
		if err := c.DeleteFilter(context.Background(), FilterRef{FilterID: id}); err != nil {
			t.Fatal(err)
		}
	}
	addBlockFilters(t, c, 5, "later", MaxTxOps)
	// Only b answers from now on: it never served this listing.
	a.Close()

	for p.Next != "" {
		p, code, msg = listPage(t, nc, ListFiltersRequest{Cursor: p.Next, Limit: 20})
		if code != "" {
			t.Fatalf("page after %v: %s %s", got, code, msg)
		}
		if p.Seq != asOf {
			t.Fatalf("page as of %d, the listing is as of %d", p.Seq, asOf)
		}
		got = append(got, ids(p.Filters)...)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("listing as of %d: %v\nwant %v", asOf, got, want)
	}
	// A new listing sees the new state.
	now, err := c.ListFilters(context.Background(), ListFiltersRequest{}, WithPageSize(7))
	if err != nil || len(now.Filters) != 50 || now.Seq <= asOf {
		t.Fatalf("new listing: %d filters as of %d, %v; want 50 after %d", len(now.Filters), now.Seq, err, asOf)
	}
}

// Callout listings are paged the same way, filter counts included.
func TestCalloutPagesShowOneSequence(t *testing.T) {
	srv := testkit.Server(t)
	nc := testkit.Conn(t, srv)
	startEngine(t, nc)
	c := NewClient(nc)
	ctx := context.Background()
	var keys []string
	for i := range 5 {
		co, err := c.AddCallout(ctx, events.Callout{Key: fmt.Sprintf("%08d-0000-4000-8000-000000000000", i+1), Name: fmt.Sprint("c", i)})
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, co.Key)
	}
	f, err := c.AddFilter(ctx, events.Filter{Name: "f", Layer: "ALE_AUTH_CONNECT_V4", Action: events.ActionCalloutInspection, CalloutKey: keys[4]})
	if err != nil {
		t.Fatal(err)
	}
	page := func(cursor string) ListCalloutsResponse {
		body, _ := json.Marshal(ListCalloutsRequest{Cursor: cursor, Limit: 2})
		code, msg, data := rawRequest(t, nc, EndpointCalloutList, string(body))
		var resp ListCalloutsResponse
		if code != "" || json.Unmarshal(data, &resp) != nil {
			t.Fatalf("callout page: %s %s %s", code, msg, data)
		}
		return resp
	}
	p := page("")
	asOf := p.Seq
	got := p.Callouts
	if err := c.DeleteFilter(ctx, FilterRef{FilterID: f.ID}); err != nil {
		t.Fatal(err)
	}
	for _, k := range keys[2:4] {
		if err := c.DeleteCallout(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	for p.Next != "" {
		p = page(p.Next)
		if p.Seq != asOf {
			t.Fatalf("page as of %d, want %d", p.Seq, asOf)
		}
		got = append(got, p.Callouts...)
	}
	if len(got) != 5 || got[4].Key != keys[4] || got[4].FilterCount != 1 {
		t.Fatalf("callouts as of %d: %+v; want all 5, the last named by 1 filter", asOf, got)
	}
	all, err := c.ListCallouts(ctx, WithPageSize(1))
	if err != nil || len(all.Callouts) != 3 || all.Callouts[2].FilterCount != 0 {
		t.Fatalf("new listing: %+v, %v", all, err)
	}
}

// A page as of a sequence the engine no longer keeps is refused with
// FWP_E_INVALID_ENUMERATOR, not answered from another state; the client
// starts the listing again.
func TestForgottenListingIsRefusedAndRestarted(t *testing.T) {
	srv := testkit.Server(t)
	nc := testkit.Conn(t, srv)
	e := startEngine(t, nc)
	c := NewClient(nc)
	want := addBlockFilters(t, c, 10, "f", MaxTxOps)
	forget := func() {
		e.mu.Lock()
		e.state.Forget(e.state.Seq())
		e.mu.Unlock()
	}
	p, _, _ := listPage(t, nc, ListFiltersRequest{Limit: 4})
	if err := c.DeleteFilter(context.Background(), FilterRef{FilterID: want[9]}); err != nil {
		t.Fatal(err)
	}
	forget()
	if _, code, msg := listPage(t, nc, ListFiltersRequest{Cursor: p.Next, Limit: 4}); code != string(CodeInvalidEnumerator) {
		t.Fatalf("page as of a forgotten sequence: %s %s", code, msg)
	}

	// The client: the first listing loses its position after one page.
	restarts := 0
	testHookAfterPage = func(cursor string) {
		if restarts == 0 && cursor != "" {
			restarts++
			if err := c.DeleteFilter(context.Background(), FilterRef{FilterID: want[8]}); err != nil {
				t.Error(err)
			}
			forget()
		}
	}
	defer func() { testHookAfterPage = nil }()
	list, err := c.ListFilters(context.Background(), ListFiltersRequest{}, WithPageSize(4))
	if err != nil || !slices.Equal(ids(list.Filters), want[:8]) || restarts != 1 {
		t.Fatalf("listing restarted %d times: %v, %v; want %v", restarts, list, err, want[:8])
	}
}

// Pages stay within the server's max payload, however small it is
// configured, and the client reads them all.
func TestPagesFitTheMaxPayload(t *testing.T) {
	const maxPayload = 16 << 10
	srv := testkit.ServerWith(t, t.TempDir(), func(o *server.Options) { o.MaxPayload = maxPayload })
	nc := testkit.Dial(t, srv.ClientURL())
	startEngine(t, nc)
	c := NewClient(nc)
	want := addBlockFilters(t, c, 600, strings.Repeat("n", 100), 20)
	p := ListFiltersResponse{Next: ""}
	pages := 0
	for {
		body, _ := json.Marshal(ListFiltersRequest{Cursor: p.Next})
		m, err := nc.Request(events.Subjects{Prefix: events.DefaultPrefix}.API(EndpointFilterList), body, defaultWait)
		if err != nil {
			t.Fatalf("page %d: %v", pages+1, err)
		}
		if len(m.Data) > maxPayload/2+1024 {
			t.Fatalf("page %d is %d bytes, max payload %d", pages+1, len(m.Data), maxPayload)
		}
		p = ListFiltersResponse{}
		if err := json.Unmarshal(m.Data, &p); err != nil {
			t.Fatal(err)
		}
		pages++
		if p.Next == "" {
			break
		}
	}
	if pages < 10 {
		t.Fatalf("%d pages for 600 filters of ~250 bytes in 16 KiB replies", pages)
	}
	list, err := c.ListFilters(context.Background(), ListFiltersRequest{})
	if err != nil || !slices.Equal(ids(list.Filters), want) {
		t.Fatalf("client listing: %d filters, %v", len(list.Filters), err)
	}
}

// An answer larger than the server takes is not dropped, leaving the
// caller to time out: the engine logs it and answers with an error.
func TestAnswerTooLargeIsAnError(t *testing.T) {
	const maxPayload = 32 << 10
	srv := testkit.ServerWith(t, t.TempDir(), func(o *server.Options) { o.MaxPayload = maxPayload })
	nc := testkit.Dial(t, srv.ClientURL())
	var logs testkit.SyncBuffer
	e, err := Start(context.Background(), nc, Config{Logger: testLogger(&logs)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	// A transaction whose request fits but whose answer (every event, with
	// its id and time) does not.
	var ops []TxOp
	for i := range 150 {
		ops = append(ops, TxOp{Op: OpFilterAdd, Filter: &events.Filter{Name: fmt.Sprint(i), Layer: "ALE_AUTH_CONNECT_V4", Action: events.ActionBlock}})
	}
	_, err = NewClient(nc).ApplyTx(context.Background(), ops)
	var we *Error
	if !errors.As(err, &we) || we.Code != CodeInternal || !strings.Contains(we.Message, "could not send its answer") {
		t.Fatalf("tx with an answer over the max payload: %v", err)
	}
	if !strings.Contains(logs.String(), "an answer could not be sent") {
		t.Fatalf("not logged:\n%s", logs.String())
	}
	if s := e.Stats(); s.Filters != 150 {
		t.Fatalf("%d filters after the transaction, want 150 (it was written)", s.Filters)
	}
	// What went out was an error, and the stats count it as one.
	if st := microStats(t, nc)["tx-apply"]; st.NumRequests != 1 || st.NumErrors != 1 || !strings.HasPrefix(st.LastError, string(CodeInternal)+":") {
		t.Fatalf("tx-apply stats after an answer replaced by an error: %+v", st)
	}
}
