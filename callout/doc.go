// Package callout is the agent SDK: the code a callout driver links to be
// told about the filters that name its callout, the way WFP calls a
// callout's notifyFn.
//
// An agent is registered for one callout key with a Handler, much like an
// http.Handler is registered for a path. Here each filter gets a state of
// the callout's own, made at add and released at delete (Example runs
// this):
//
//	type portState struct{ port string }
//
//	agent, err := callout.Register(ctx, js, calloutKey, callout.HandlerFunc(
//		func(ctx context.Context, t callout.NotifyType, f *callout.Filter) error {
//			switch t {
//			case callout.AddFilter:
//				f.Context = &portState{port: f.Conditions[0].Value} // kept per filter, see Agent.Lookup
//			case callout.DeleteFilter:
//				if st, ok := f.Context.(*portState); ok { // nil for filters added before us (R4)
//					log.Printf("released port %s", st.port)
//				}
//			}
//			return nil // unknown types: ignore and succeed (R5)
//		}))
//
// js is a nats.go jetstream.JetStream; callout.WithStream names another
// stream and subject prefix than the defaults.
//
// The handler is called from one goroutine, in log order.
//
// The classify half of a callout (its classifyFn) is a Classifier,
// registered WithClassifier or as a Handler that implements it too. The
// agent then serves classify: engines ask it, on its own subject, what the
// callout says about traffic that matched a filter it holds, and it calls
// the Classifier with the filter and the Context its AddFilter left (R6),
// from many goroutines at once; the Verdict (Continue, Permit or Block,
// with an optional note) is the callout's answer. Agent.Lookup reads the
// same contexts from any goroutine, for a classify path of one's own.
//
// Modes follow the seed text. Live (the default) starts at "now": no
// AddFilter for filters that already exist (R2), but DeleteFilter for every
// deleted filter naming the callout, also old ones, with a nil Context (R4).
// Replay first delivers every current filter once with Initial set, closes
// Synced, then goes on live with no gap and no duplicate (R3). A durable
// live agent (WithDurable) resumes where it stopped after a restart.
//
// An agent announces itself to the engines (id, callout, instance, mode,
// whether it wants post-commit) while it runs and says bye when it
// closes. One agent id runs once: Register fails with ErrAgentIDInUse
// while another running instance holds it. Every subject and name an
// agent uses is fixed by its callout and agent id (events.Subjects.Agent,
// Result, AgentInbox, events.AgentConsumer), so NATS permissions can
// confine it to its own; see `engine permissions`. A handler
// error on a live AddFilter refuses the filter (R7): the agent answers the
// engine with the error text, and the engine takes the filter back. The
// filters of a transaction reach the handler all together, never in part,
// also across a durable agent's restart; an agent registered
// WithPostCommit then gets AddFilterPostCommit for each of them it holds
// (R8).
//
// The log is compacted: a delete replaces its filter's add and itself
// leaves after the stream's horizon. An agent that has not read its
// callout's subjects for longer than that (a connection down, a handler
// far behind, a durable agent stopped) may have missed deletes for good;
// it notices and resyncs from a snapshot, as an informer relists: held
// filters that are gone get DeleteFilter with their Context (once, R6),
// filters added meanwhile get AddFilter with Initial set. Stats reports
// Resyncs and CaughtUp.
//
// Agent.Stats are the agent's counters; Agent.Collector exposes them, with
// its position and lag, as Prometheus metrics (the SDK registers nothing
// by itself). A long replay logs its progress (WithProgressInterval).
package callout
