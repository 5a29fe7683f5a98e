package engine_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/wfpnats/wfp/engine"
	"github.com/wfpnats/wfp/events"
	"github.com/wfpnats/wfp/internal/testkit"
)

// A management client adds a callout object and filters, lists them, and
// gets refusals it can test with errors.Is.
func ExampleClient() {
	nc, stop := testkit.ExampleServer() // a NATS server with JetStream, in this process
	defer stop()
	ctx := context.Background()
	eng, err := engine.Start(ctx, nc, engine.Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		panic(err)
	}
	defer eng.Close()

	client := engine.NewClient(nc)
	co, err := client.AddCallout(ctx, events.Callout{Key: "6f1c2b3a-9d4e-4f5a-8b6c-7d8e9f0a1b2c", Name: "telnet inspector"})
	if err != nil {
		panic(err)
	}
	for _, port := range []string{"23", "992"} {
		f, err := client.AddFilter(ctx, events.Filter{
			Name: "inspect port " + port, Layer: "ALE_AUTH_CONNECT_V4",
			Action: events.ActionCalloutInspection, CalloutKey: co.Key,
			Conditions: []events.Condition{{Field: "IP_REMOTE_PORT", Value: port}},
		})
		if err != nil {
			panic(err)
		}
		fmt.Printf("added %q with id %d\n", f.Name, f.ID) // the id is the add's place in the log
	}

	list, err := client.ListFilters(ctx, engine.ListFiltersRequest{CalloutKey: co.Key})
	if err != nil {
		panic(err)
	}
	fmt.Printf("%d filters name the callout as of log sequence %d\n", len(list.Filters), list.Seq)

	err = client.DeleteCallout(ctx, co.Key)
	fmt.Println(errors.Is(err, engine.ErrInUse), err)
	// Output:
	// added "inspect port 23" with id 2
	// added "inspect port 992" with id 3
	// 2 filters name the callout as of log sequence 3
	// true FWP_E_IN_USE: callout 6f1c2b3a-9d4e-4f5a-8b6c-7d8e9f0a1b2c is named by 2 filter(s); delete them first
}
