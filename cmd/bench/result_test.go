package main

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestResultWithoutFigures checks that a phase without latencies (none measured, or a second
// of a fixed-rate phase without calls) is written as JSON, its missing figures as null.
func TestResultWithoutFigures(t *testing.T) {
	var seconds bySecond
	seconds.add(0, 5*time.Millisecond)
	seconds.add(2, 7*time.Millisecond) // no call was due in second 1
	p := phase{Rate: 0.5, Elapsed: 3 * time.Second}
	p.finish(seconds.seconds[0])
	p.SecondP99 = seconds.p99s()
	empty := phase{Elapsed: time.Second}
	empty.finish(nil)
	res := &Result{Name: "figures", Tables: []Table{{Title: "t", Data: []map[string]any{{"fixedRate": p, "empty": empty}}}}}
	res.target("p99", empty.P99, "ms", 25, false)
	dir := t.TempDir()
	if err := res.write(dir); err != nil {
		t.Fatalf("write: %v", err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "figures.json"))
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Tables []struct {
			Data []map[string]struct {
				P50       *float64   `json:"p50Ms"`
				P99       *float64   `json:"p99Ms"`
				SecondP99 []*float64 `json:"secondP99Ms"`
			} `json:"data"`
		} `json:"tables"`
		Targets []struct {
			Measured *float64 `json:"measured"`
			Met      bool     `json:"met"`
		} `json:"targets"`
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	fr, e := got.Tables[0].Data[0]["fixedRate"], got.Tables[0].Data[0]["empty"]
	if fr.P99 == nil || *fr.P99 != 5 || len(fr.SecondP99) != 3 || fr.SecondP99[1] != nil || *fr.SecondP99[2] != 7 {
		t.Errorf("fixed-rate phase written as %s", b)
	}
	if e.P50 != nil || e.P99 != nil {
		t.Errorf("phase without latencies written as %s", b)
	}
	if len(got.Targets) != 1 || got.Targets[0].Measured != nil || got.Targets[0].Met {
		t.Errorf("target without a figure written as %s", b)
	}
	if !math.IsNaN(p.SecondP99[1]) {
		t.Errorf("the phase's own second without calls is %v, want NaN", p.SecondP99[1])
	}
}
