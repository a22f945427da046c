package api

import "testing"

func TestLoneSurrogate(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		body string
		at   int
	}{
		{`{"name":"plain"}`, -1},
		{`{"name":"caf\u00e9 \n \"q\""}`, -1},
		{`{"name":"\ud83d\ude00"}`, -1}, // a pair: U+1F600
		{`{"name":"\uD83D\uDE00"}`, -1},
		{`{"name":"\\ud800"}`, -1}, // an escaped backslash, then text
		{`{"name":"\ud800"}`, 9},
		{`{"name":"\ud800x"}`, 9},
		{`{"name":"\ud800\n"}`, 9},
		{`{"name":"\ud800\ud800"}`, 9},
		{`{"name":"\ude00"}`, 9},
		{`{"name":"ok","description":"\\\udfff"}`, 30},
		{`{"name":"\`, -1}, // not JSON: for the decoder to report
		{`{"name":"\u12`, -1},
	} {
		if got := loneSurrogate([]byte(tt.body)); got != tt.at {
			t.Errorf("loneSurrogate(%s) = %d, want %d", tt.body, got, tt.at)
		}
	}
}
