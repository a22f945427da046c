package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

// FuzzDecode feeds arbitrary message bodies to Decode. Whatever it is given, Decode must
// not panic, must fail only with ErrMalformed or ErrUnknownType, and what it accepts must
// encode again (NewEnvelope, Encode) into a body that decodes to the same envelope and
// event, and that is its own canonical form (encoding it once more gives the same bytes).
//
// Without -fuzz, the seeds below and testdata/fuzz/FuzzDecode run as ordinary tests.
func FuzzDecode(f *testing.F) {
	for _, e := range samples() {
		env, err := NewEnvelope("0b4d9a4c-6f0e-4d5e-9a51-6c1f1d1c2a10", SourceWorker, at, e)
		if err != nil {
			f.Fatal(err)
		}
		b, err := env.Encode()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		// The same body with one part changed at a time.
		for _, edit := range [][2]string{
			{`"total":`, `"total":1e999999999,"x":`},
			{`"total":`, `"total":-1e-999999999,"x":`},
			{`"orderId":7`, `"orderId":1e400`},
			{`"orderId":7`, `"orderId":9223372036854775808`},
			{`"orderId":7`, `"orderId":7.5`},
			{`"orderId":7`, `"orderId":"7"`},
			{`"orderId":7`, `"orderId":null`},
			{`"specversion":"1.0"`, `"specversion":"0.3"`},
			{`"type":"orderflow.order`, `"type":"orderflow.ORDER`},
			{`"time":"2026-12-01T10:30:00.123456Z"`, `"time":"9999-12-31T23:59:59-23:59"`},
			{`"time":"2026-12-01T10:30:00.123456Z"`, `"time":"0000-01-01T00:00:00+01:00"`},
			{`"time":"2026-12-01T10:30:00.123456Z"`, `"time":"2026-12-01T10:30:00.123456+05:30"`},
			{`"datacontenttype":"application/json"`, `"datacontenttype":"text/plain"`},
			{`"userId":3`, `"userId":3,"userId":4`},
			{`"quantity":2`, `"quantity":-2`},
			{`"price":99.99`, `"price":99.999`},
			{`"price":99.99`, `"price":"99.99"`},
			{`"price":99.99`, `"price":9.999e1`},
			{`"expiredAfter":"10m0s"`, `"expiredAfter":"-10m"`},
			{`"items":[`, `"items":[{},`},
			{`{"specversion"`, `{"extension":{"nested":[[[[]]]]},"specversion"`},
		} {
			if bytes.Contains(b, []byte(edit[0])) {
				f.Add(bytes.Replace(b, []byte(edit[0]), []byte(edit[1]), 1))
			}
		}
	}
	for _, s := range []string{
		``, `null`, `[]`, `{}`, `"x"`, `{"data":null}`, "\x00", `{"specversion":"1.0"`,
		strings.Repeat(`[`, 10000) + strings.Repeat(`]`, 10000),
		`{"specversion":"1.0","id":"a","source":"s","type":"t","time":"2026-01-01T00:00:00Z","datacontenttype":"application/json","data":{}}`,
	} {
		f.Add([]byte(s))
	}

	f.Fuzz(func(t *testing.T, body []byte) {
		env, ev, err := Decode(body)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnknownType) {
				t.Fatalf("Decode(%q) failed with %v, which is neither ErrMalformed nor ErrUnknownType", body, err)
			}
			if ev != nil {
				t.Fatalf("Decode(%q) returned the event %#v with the error %v", body, ev, err)
			}
			return
		}
		again, err := NewEnvelope(env.ID, env.Source, env.Time, ev)
		if err != nil {
			t.Fatalf("Decode(%q) accepted an event that NewEnvelope refuses: %v", body, err)
		}
		b1, err := again.Encode()
		if err != nil {
			t.Fatalf("Decode(%q) accepted an event that does not encode: %v", body, err)
		}
		env2, ev2, err := Decode(b1)
		if err != nil {
			t.Fatalf("re-encoded %q does not decode: %v", b1, err)
		}
		if env2.ID != env.ID || env2.Source != env.Source || env2.Type != env.Type || !env2.Time.Equal(env.Time) {
			t.Fatalf("envelope changed in a round trip:\n%+v\n%+v", env, env2)
		}
		// Money compares by value and times by instant: compare the payloads' encodings.
		j1, err1 := json.Marshal(ev)
		j2, err2 := json.Marshal(ev2)
		if err1 != nil || err2 != nil || reflect.TypeOf(ev) != reflect.TypeOf(ev2) || !bytes.Equal(j1, j2) {
			t.Fatalf("event changed in a round trip:\n%T %s (%v)\n%T %s (%v)", ev, j1, err1, ev2, j2, err2)
		}
		third, err := NewEnvelope(env2.ID, env2.Source, env2.Time, ev2)
		if err != nil {
			t.Fatal(err)
		}
		b2, err := third.Encode()
		if err != nil || !bytes.Equal(b1, b2) {
			t.Fatalf("encoding is not canonical:\n%s\n%s (%v)", b1, b2, err)
		}
	})
}

// TestDecodeHugeExponent guards against amounts whose exponent would make exact decimal
// arithmetic run for minutes (a power of ten with a billion digits): such a message must be
// refused as malformed, not keep a consumer busy.
func TestDecodeHugeExponent(t *testing.T) {
	t.Parallel()
	body := encode(t, samples()[1])
	for _, total := range []string{"1e999999999", "1e-999999999", "0e-999999999", "1e99999999999", "1e41", "1e-41"} {
		done := make(chan error, 1)
		go func() {
			_, _, err := Decode(bytes.Replace(body, []byte(`"total":10.00`), []byte(`"total":`+total), 1))
			done <- err
		}()
		select {
		case err := <-done:
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("total %s: got %v, want ErrMalformed", total, err)
			}
		case <-time.After(time.Minute):
			t.Fatalf("total %s: Decode still busy after a minute", total)
		}
	}
}
