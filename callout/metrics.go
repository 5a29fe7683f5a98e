package callout

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Collector returns a Prometheus collector of the agent's metrics, for
// the caller to register (the SDK registers nothing by itself):
//
//	reg := prometheus.NewRegistry()
//	reg.MustRegister(agent.Collector())
//	http.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
//
// The metrics are the agent's Stats, read when scraped, and its lag,
// which a scrape asks the server for. Each carries the labels callout and
// agent_id, so the collectors of several agents go in one registry.
func (a *Agent) Collector() prometheus.Collector {
	labels := prometheus.Labels{"callout": a.key, "agent_id": a.id}
	d := func(name, help string, variable ...string) *prometheus.Desc {
		return prometheus.NewDesc("wfp_agent_"+name, help, variable, labels)
	}
	return &agentCollector{a: a,
		notifications: d("notifications_total", "Notifications handed to the handler, by type: add, delete, add_post_commit.", "type"),
		refused:       d("adds_refused_total", "AddFilter calls that returned an error or panicked: filters refused (R7)."),
		handlerErrors: d("handler_errors_total", "Handler calls of any type that returned an error or panicked."),
		transactions:  d("transactions_total", "Transactions delivered whole."),
		skipped:       d("events_skipped_total", "Events skipped and acknowledged: garbage, unknown types, newer schemas (R5)."),
		duplicates:    d("duplicates_total", "Adds of a filter already held, and redelivered messages."),
		tombstones:    d("tombstones_total", "Snapshot deletes of filters never held (filters deleted before the replay)."),
		held:          d("filters_held", "Filters held now."),
		txParts:       d("tx_parts_held", "Messages of an incomplete transaction held until the rest arrive."),
		logLoss:       d("log_loss", "For a durable agent, log sequences it had handled that the log no longer has (0: none)."),
		position:      d("position", "Stream sequence of the last event the agent handled."),
		lag:           d("lag", "The newest log sequence on the callout's filter subjects minus the agent's position: events still to handle."),
		replayDone:    d("replay_done", "Snapshot messages a replay agent has handled."),
		replayTotal:   d("replay_total", "Snapshot messages a replay agent has to handle (filters and tombstones)."),
		synced:        d("synced", "1 once the agent's initial state is delivered (at once for live agents)."),
	}
}

type agentCollector struct {
	a                                                             *Agent
	notifications, refused, handlerErrors, transactions, skipped  *prometheus.Desc
	duplicates, tombstones, held, txParts, logLoss, position, lag *prometheus.Desc
	replayDone, replayTotal, synced                               *prometheus.Desc
}

func (c *agentCollector) descs() []*prometheus.Desc {
	return []*prometheus.Desc{c.notifications, c.refused, c.handlerErrors, c.transactions, c.skipped, c.duplicates,
		c.tombstones, c.held, c.txParts, c.logLoss, c.position, c.lag, c.replayDone, c.replayTotal, c.synced}
}

func (c *agentCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs() {
		ch <- d
	}
}

// scrapeTimeout bounds the server call a scrape makes for the lag.
const scrapeTimeout = 2 * time.Second

func (c *agentCollector) Collect(ch chan<- prometheus.Metric) {
	a := c.a
	st := a.Stats()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v)
	}
	counter(c.notifications, st.Adds+st.Refused, "add")
	counter(c.notifications, st.Deletes, "delete")
	counter(c.notifications, st.PostCommits, "add_post_commit")
	counter(c.refused, st.Refused)
	counter(c.handlerErrors, st.HandlerErrors)
	counter(c.transactions, st.Transactions)
	counter(c.skipped, st.Skipped)
	counter(c.duplicates, st.Duplicates)
	counter(c.tombstones, st.Tombstones)
	gauge(c.held, float64(st.Held))
	gauge(c.txParts, float64(st.HeldTxParts))
	gauge(c.logLoss, float64(st.LogLoss))
	gauge(c.position, float64(st.Position))
	gauge(c.replayDone, float64(st.SnapshotDone))
	gauge(c.replayTotal, float64(st.SnapshotSize))
	synced := 0.0
	select {
	case <-a.synced:
		synced = 1
	default:
	}
	gauge(c.synced, synced)
	// The lag needs the log's end on the callout's subjects: a direct get
	// the agent's own permissions allow. Without an answer there is no
	// lag to show.
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	if last, err := lastSeqOn(ctx, a.nc, a.js, a.o.stream, a.subject); err == nil {
		gauge(c.lag, float64(last-min(last, a.n.position.Load())))
	}
}
