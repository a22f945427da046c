// Package testutil holds small helpers shared by tests.
package testutil

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// ToFloat64Metric collects c and returns the value of its metric called name, summed over
// its label values, failing the test when there is none.
func ToFloat64Metric(t testing.TB, c prometheus.Collector, name string) float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(c); err != nil {
		t.Fatal(err)
	}
	return Gathered(t, reg, name)
}

// Gathered returns the value of the gauge or counter called name in g, summed over its
// label values, failing the test when there is none.
func Gathered(t testing.TB, g prometheus.Gatherer, name string) float64 {
	t.Helper()
	families, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		sum := 0.0
		for _, m := range f.GetMetric() {
			switch f.GetType() {
			case dto.MetricType_GAUGE:
				sum += m.GetGauge().GetValue()
			case dto.MetricType_COUNTER:
				sum += m.GetCounter().GetValue()
			default:
				t.Fatalf("metric %s is a %s, not a gauge or counter", name, f.GetType())
			}
		}
		return sum
	}
	t.Fatalf("no metric %s", name)
	return 0
}
