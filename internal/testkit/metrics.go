package testkit

import (
	"io"
	"net/http"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Metrics are Prometheus metric families by name, as a test gathered or
// scraped them.
type Metrics map[string]*dto.MetricFamily

// Gather collects c through a pedantic registry, which also checks that
// c collects what it describes.
func Gather(t testing.TB, c prometheus.Collector) Metrics {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := Metrics{}
	for _, mf := range mfs {
		out[mf.GetName()] = mf
	}
	return out
}

// Scrape gets url, a metrics endpoint, and parses its answer with the
// Prometheus text parser.
func Scrape(t testing.TB, url string) Metrics {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %s\n%s", url, resp.Status, body)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: not the Prometheus text format: %v", url, err)
	}
	return mfs
}

// Value is the value of the metric of family name whose labels include
// labels (name, value, name, value, ...): a counter's or gauge's value,
// a histogram's sample count; -1 when there is no such metric.
func (m Metrics) Value(name string, labels ...string) float64 {
	mf := m[name]
	if mf == nil {
		return -1
	}
next:
	for _, metric := range mf.Metric {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, l := range metric.Label {
				found = found || (l.GetName() == labels[i] && l.GetValue() == labels[i+1])
			}
			if !found {
				continue next
			}
		}
		switch {
		case metric.Counter != nil:
			return metric.Counter.GetValue()
		case metric.Gauge != nil:
			return metric.Gauge.GetValue()
		case metric.Histogram != nil:
			return float64(metric.Histogram.GetSampleCount())
		case metric.Untyped != nil:
			return metric.Untyped.GetValue()
		}
	}
	return -1
}
