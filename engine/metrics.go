package engine

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Prometheus metrics. The engine's counters are the ones Stats reads and
// the API's are its micro service's (micro.go): the collector reads them
// when it is scraped rather than counting anything twice. Only the
// histograms are kept here.

// metrics holds the engine's histograms.
type metrics struct {
	requests   *prometheus.HistogramVec // request arrival to answer, by endpoint
	writes     prometheus.Histogram     // write request arrival to its events stored
	notifyWait *prometheus.HistogramVec // an add's wait for its callout's agents, by outcome
}

// latencyBuckets span half a millisecond (an fsynced write) to about 16 s
// (an add that waits out its agents' notify timeout).
var latencyBuckets = prometheus.ExponentialBuckets(0.0005, 2, 16)

func newMetrics() *metrics {
	return &metrics{
		requests: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "wfp", Subsystem: "engine", Name: "request_duration_seconds",
			Help:    "Time from an API request's arrival to its answer, waits for agents included.",
			Buckets: latencyBuckets,
		}, []string{"endpoint"}),
		writes: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "wfp", Subsystem: "engine", Name: "write_duration_seconds",
			Help:    "Time from a write request's arrival to its events being stored in the log (queue, validation, group commit, fence retries).",
			Buckets: latencyBuckets,
		}),
		notifyWait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "wfp", Subsystem: "engine", Name: "notify_wait_seconds",
			Help:    "Time an add waited for its callout's agents to answer its ADD notification (R7), by outcome: accepted, refused or unanswered.",
			Buckets: latencyBuckets,
		}, []string{"outcome"}),
	}
}

// answered observes one API answer (apiService.answered).
func (m *metrics) answered(endpoint, _ string, took time.Duration) {
	m.requests.WithLabelValues(endpoint).Observe(took.Seconds())
}

// notified observes the end of an add's wait for its agents.
func (m *metrics) notified(rej *Rejection, took time.Duration) {
	outcome := "accepted"
	switch {
	case rej == nil:
	case rej.Code == CodeTimeout:
		outcome = "unanswered"
	default:
		outcome = "refused"
	}
	m.notifyWait.WithLabelValues(outcome).Observe(took.Seconds())
}

// Collector returns a Prometheus collector of the engine's metrics, for
// the caller to register (the engine registers nothing by itself):
//
//	reg := prometheus.NewRegistry()
//	reg.MustRegister(e.Collector())
//	http.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
//
// Its metrics carry no label naming the engine: register one engine per
// registry, or wrap it (prometheus.WrapRegistererWith) to tell several
// apart. README.md lists the metrics.
func (e *Engine) Collector() prometheus.Collector { return engineCollector{e} }

type engineCollector struct{ e *Engine }

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("wfp_engine_"+name, help, labels, nil)
}

var (
	descRequests    = desc("requests_total", "API requests answered, by endpoint.", "endpoint")
	descRefusals    = desc("request_errors_total", "API requests answered with an error, by endpoint and error code (FWP_E_*).", "endpoint", "code")
	descWritten     = desc("events_written_total", "Events this engine wrote to the log.")
	descFenced      = desc("write_fence_retries_total", "Writes refused by the fence (another writer got there first) and validated and tried again.")
	descRetried     = desc("write_retries_total", "Writes tried again after a failure whose outcome was unknown (a timeout, a lost connection).")
	descRefused     = desc("writes_refused_total", "Writes the server refused to store (a full store, a sealed stream): answered at once with FWP_E_STORAGE.")
	descTakenBack   = desc("adds_taken_back_total", "Filter adds taken back after their callout's agents answered (R7), by reason: refused or unanswered.", "reason")
	descSeq         = desc("log_sequence", "The last log sequence the engine's state reflects.")
	descStreamLast  = desc("stream_last_sequence", "The stream's last sequence, as the server reports it when scraped.")
	descFilters     = desc("filters", "Filters in the engine's state.")
	descCallouts    = desc("callouts", "Callout objects in the engine's state.")
	descAgents      = desc("agents", "Agent instances registered, by callout.", "callout")
	descSkipped     = desc("log_messages_skipped_total", "Log messages that were not events the engine acts on (garbage, unknown types).")
	descMarkErrors  = desc("mark_errors_total", "High-water marks that could not be stored.")
	descLogLoss     = desc("log_loss", "1 while the engine refuses writes because the log lost events it acknowledged.")
	descReads       = desc("reads_waiting", "Reads waiting for the state to fold writes the log already holds (the read barrier).")
	descDropped     = desc("agent_messages_dropped_total", "Agent messages dropped unread: malformed, disagreeing with their subject, or naming no pending add.")
	descAgentsGone  = desc("agents_gone_total", "Agent instances forgotten because a ping found them gone.")
	descHeartbeats  = desc("session_heartbeats_total", "Dynamic session heartbeats heard.")
	descExpired     = desc("sessions_expired_total", "Dynamic sessions this engine ended as abandoned.")
	descCompiles    = desc("classify_compiles_total", "Compiles of a layer for classify.")
	descAsked       = desc("classify_callouts_asked_total", "Registered callouts asked by classify.")
	engineConstants = []*prometheus.Desc{descRequests, descRefusals, descWritten, descFenced, descRetried, descRefused,
		descTakenBack, descSeq, descStreamLast, descFilters, descCallouts, descAgents, descSkipped, descMarkErrors,
		descLogLoss, descReads, descDropped, descAgentsGone, descHeartbeats, descExpired, descCompiles, descAsked}
)

// scrapeTimeout bounds the one server call a scrape makes (the stream's
// last sequence).
const scrapeTimeout = 2 * time.Second

func (c engineCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range engineConstants {
		ch <- d
	}
	c.e.metrics.requests.Describe(ch)
	c.e.metrics.writes.Describe(ch)
	c.e.metrics.notifyWait.Describe(ch)
}

func (c engineCollector) Collect(ch chan<- prometheus.Metric) {
	e := c.e
	st := e.Stats()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	if e.svc != nil {
		e.svc.mu.Lock()
		eps := append([]*apiEndpoint(nil), e.svc.endpoints...)
		e.svc.mu.Unlock()
		for _, ep := range eps {
			counter(descRequests, uint64(ep.stats().NumRequests), ep.name)
			for code, n := range ep.refusals() {
				counter(descRefusals, n, ep.name, code)
			}
		}
	}
	counter(descWritten, st.Written)
	counter(descFenced, st.Fenced)
	counter(descRetried, st.Retried)
	counter(descRefused, st.Refused)
	counter(descTakenBack, st.Rejected, "refused")
	counter(descTakenBack, st.Unanswered, "unanswered")
	gauge(descSeq, float64(st.Seq))
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	if last, err := e.lastSeq(ctx); err == nil {
		gauge(descStreamLast, float64(last))
	}
	cancel()
	gauge(descFilters, float64(st.Filters))
	gauge(descCallouts, float64(st.Callouts))
	for callout, n := range e.agents.perCallout() {
		gauge(descAgents, float64(n), callout)
	}
	counter(descSkipped, st.Skipped)
	counter(descMarkErrors, st.MarkErrors)
	lost := 0.0
	if st.LogLoss != "" {
		lost = 1
	}
	gauge(descLogLoss, lost)
	gauge(descReads, float64(st.ReadsWaiting))
	counter(descDropped, st.AgentDropped)
	counter(descAgentsGone, st.AgentsGone)
	counter(descHeartbeats, st.Heartbeats)
	counter(descExpired, st.SessionsExpired)
	counter(descCompiles, st.ClassifyCompiles)
	counter(descAsked, st.CalloutsAsked)
	e.metrics.requests.Collect(ch)
	e.metrics.writes.Collect(ch)
	e.metrics.notifyWait.Collect(ch)
}
