package main

import (
	"strings"
	"testing"
)

func TestWorkerRSSTarget(t *testing.T) {
	for _, tc := range []struct {
		name               string
		peak, burst, limit int
		want, wantNot      string
	}{
		{"limited by the configuration", 3000, 5000, 3000,
			"3000 payments in flight at most, not the burst's 5000: orders.maxPaymentsInFlight 3000", ""},
		{"the whole burst in flight", 5000, 5000, 6000, "5000 payments in flight at most", "not the burst"},
		{"short of the burst though the limit allows it", 4200, 5000, 5000, "4200 payments in flight at most, not the burst's 5000", "maxPaymentsInFlight"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := workerRSSTarget(tc.peak, tc.burst, tc.limit)
			if !strings.Contains(got, tc.want) || tc.wantNot != "" && strings.Contains(got, tc.wantNot) {
				t.Errorf("workerRSSTarget(%d, %d, %d) = %q, want it to say %q", tc.peak, tc.burst, tc.limit, got, tc.want)
			}
		})
	}
}

func TestPaymentsLimit(t *testing.T) {
	if got, err := paymentsLimit(overrides{}, 5000); got != 5000 || err != nil {
		t.Errorf("without -set: %d, %v; want the burst, 5000", got, err)
	}
	if got, err := paymentsLimit(overrides{"ORDERFLOW_ORDERS_MAXPAYMENTSINFLIGHT": "300"}, 5000); got != 300 || err != nil {
		t.Errorf("with -set ...=300: %d, %v; want 300", got, err)
	}
	if _, err := paymentsLimit(overrides{"ORDERFLOW_ORDERS_MAXPAYMENTSINFLIGHT": "many"}, 5000); err == nil {
		t.Error("with -set ...=many: no error")
	}
}
