package api

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	promtest "github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/crypto/bcrypt"

	"orderflow/configuration"
	"orderflow/internal/testutil"
	"orderflow/platform/httpserver"
)

// The unit tests of places run in a synctest bubble: its clock moves only when every
// goroutine in it waits, so their waits are exact, and synctest.Wait tells when a request is
// waiting for a place.

// timedTake takes a place of p for a request of ctx, and returns whether it got one and how
// long it waited.
func timedTake(p *places, ctx context.Context) (bool, time.Duration) {
	begin := time.Now()
	took := p.take(ctx)
	return took, time.Since(begin)
}

func TestPlacesBoundTheRequestsAtOnce(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		p := newPlaces(2, 100*time.Millisecond)
		if !p.take(context.Background()) || !p.take(context.Background()) {
			t.Fatal("two places, and a take of one of them failed")
		}
		took, waited := timedTake(p, context.Background())
		if took {
			t.Fatal("a third request took one of two places")
		}
		if waited != 100*time.Millisecond {
			t.Errorf("gave up after %v, want the 100ms it may wait", waited)
		}
		p.release()
		if !p.take(context.Background()) {
			t.Error("a released place could not be taken")
		}
	})
}

func TestPlacesKeepHalfTheRequestsTime(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		p := newPlaces(1, time.Second)
		p.take(context.Background())
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		took, waited := timedTake(p, ctx)
		if took {
			t.Fatal("took a place nobody freed")
		}
		if waited != time.Second {
			t.Errorf("a request with 2s left gave up after %v, want once 1s was left (after 1s)", waited)
		}
		// One with less than that left does not wait, and one that ran out takes no free place.
		short, cancelShort := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancelShort()
		if took, waited := timedTake(p, short); took || waited != 0 {
			t.Errorf("a request with 500ms left took a place (%v) after %v, want no place and no wait", took, waited)
		}
		p.release()
		ended, cancelEnded := context.WithCancel(context.Background())
		cancelEnded()
		if p.take(ended) {
			t.Error("a request whose context had ended took a place")
		}
	})
}

// TestPlacesWaitEndsAtOnce: a request waiting for a place stops waiting as soon as its
// context ends, without a place, or a place is freed, which it gets.
func TestPlacesWaitEndsAtOnce(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name string
		end  func(p *places, cancel context.CancelFunc)
		want bool
	}{
		{"the request's context ends", func(_ *places, cancel context.CancelFunc) { cancel() }, false},
		{"a place is freed", func(p *places, _ context.CancelFunc) { p.release() }, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				p := newPlaces(1, time.Minute)
				p.take(context.Background())
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				got := make(chan bool)
				go func() { got <- p.take(ctx) }()
				synctest.Wait() // it waits for the place
				c.end(p, cancel)
				begin := time.Now()
				if took := <-got; took != c.want {
					t.Errorf("took a place: %v, want %v", took, c.want)
				}
				if waited := time.Since(begin); waited != 0 {
					t.Errorf("the wait went on for %v", waited)
				}
			})
		})
	}
}

// busyEnv is an API with one place, for which a request waits at most 300 ms.
func busyEnv(t *testing.T) *env {
	return newEnvWith(t, func(c *configuration.Config) {
		c.HTTP.MaxRequestsInFlight = 1
		c.HTTP.RequestTimeout = configuration.Duration(600 * time.Millisecond)
	}, bcrypt.MinCost)
}

// TestAnOperationWithoutAPlaceIsAnswered503 holds the API's only place and checks that an
// operation then waits its time and is answered 503 with Retry-After, as the API answers,
// without running; and that what is not an operation does not wait.
//
// It runs alone, as it counts the orders' outcomes.
func TestAnOperationWithoutAPlaceIsAnswered503(t *testing.T) {
	e := busyEnv(t)
	tok := e.adminToken()
	p := e.product("1.00", 5)
	for range 3 { // each frees its place
		if res := e.do(http.MethodGet, "/api/products", tok, "", ""); res.StatusCode != http.StatusOK {
			t.Fatalf("GET /api/products = %d", res.StatusCode)
		}
	}
	if !e.h.places.take(context.Background()) { // as a request being worked on would
		t.Fatal("the only place was not free")
	}
	unavailable, rejected := ordersCreated.WithLabelValues("unavailable"), ordersCreated.WithLabelValues("rejected")
	unavailableBefore, rejectedBefore := promtest.ToFloat64(unavailable), promtest.ToFloat64(rejected)

	begin := time.Now()
	res := e.do(http.MethodGet, "/api/products", tok, "", "")
	waited := time.Since(begin)
	body := problemBody(t, res, http.StatusServiceUnavailable)
	if !strings.Contains(fmt.Sprint(body["detail"]), "http.maxRequestsInFlight") {
		t.Errorf("detail %q, want it to name http.maxRequestsInFlight", body["detail"])
	}
	if res.Header.Get("Retry-After") != "1" || res.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("headers %v, want Retry-After: 1 and the API's Cache-Control: no-store", res.Header)
	}
	if waited < 250*time.Millisecond || waited > 5*time.Second {
		t.Errorf("answered after %v, want after the 300ms a request may wait", waited)
	}

	res = e.do(http.MethodPost, "/api/orders", tok, "application/json", fmt.Sprintf(`{"items":[{"productId":%d,"quantity":1}]}`, p))
	problemBody(t, res, http.StatusServiceUnavailable)
	if n := e.client.Order.Query().CountX(context.Background()); n != 0 {
		t.Errorf("%d orders stored by a request answered 503 for want of a place", n)
	}
	if stock := e.stock(p); stock != 5 {
		t.Errorf("stock %d, want 5", stock)
	}
	if d, r := promtest.ToFloat64(unavailable)-unavailableBefore, promtest.ToFloat64(rejected)-rejectedBefore; d != 1 || r != 0 {
		t.Errorf("the refused order counted %v times unavailable and %v times rejected, want once unavailable", d, r)
	}

	// Neither the contract nor an unknown path waits.
	if res := e.do(http.MethodGet, "/openapi.yaml", "", "", ""); res.StatusCode != http.StatusOK {
		t.Errorf("GET /openapi.yaml with no place free = %d, want 200", res.StatusCode)
	}
	if res := e.do(http.MethodGet, "/api/nothing-here", tok, "", ""); res.StatusCode != http.StatusNotFound {
		t.Errorf("an unknown path with no place free = %d, want 404", res.StatusCode)
	}

	e.h.places.release()
	if res := e.do(http.MethodGet, "/api/products", tok, "", ""); res.StatusCode != http.StatusOK {
		t.Errorf("with the place free again = %d, want 200", res.StatusCode)
	}
}

// TestASlowBodyHoldsNoPlace checks that a request takes a place only once its body has
// arrived: a client that sends a body slowly, or never finishes it, keeps no other request
// waiting.
func TestASlowBodyHoldsNoPlace(t *testing.T) {
	t.Parallel()
	e := busyEnv(t)
	tok := e.adminToken()
	// The API's handler, told when the slow request reaches it: its headers are read, and
	// it waits for the rest of the body.
	arrived := make(chan struct{})
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			close(arrived)
		}
		e.srv.Config.Handler.ServeHTTP(w, r)
	}))
	defer ts.Close()
	conn, err := net.Dial("tcp", ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, err = io.WriteString(conn, "POST /api/orders HTTP/1.1\r\nHost: orderflow\r\nAuthorization: Bearer "+tok+
		"\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"items\":")
	if err != nil {
		t.Fatal(err)
	}
	<-arrived
	req, err := http.NewRequest(http.MethodGet, ts.URL+"/api/products", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	res, err := ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Errorf("beside a body that never ends = %d, want 200", res.StatusCode)
	}
}

// TestAWaitingRequestWhoseClientLeftIsDropped checks that a request waiting for a place
// stops waiting when its client goes away, behind WithTimeout as the process serves it
// (whose request contexts outlive their clients): it does not run later for nobody.
//
// It runs alone, as it reads the number of waiting requests.
func TestAWaitingRequestWhoseClientLeftIsDropped(t *testing.T) {
	e := busyEnv(t)
	tok := e.adminToken()
	p := e.product("1.00", 5)
	ts := httptest.NewServer(httpserver.WithTimeout(e.srv.Config.Handler, 10*time.Second))
	defer ts.Close()
	if !e.h.places.take(context.Background()) {
		t.Fatal("the only place was not free")
	}
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ts.URL+"/api/orders",
		strings.NewReader(fmt.Sprintf(`{"items":[{"productId":%d,"quantity":1}]}`, p)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	gone := make(chan error, 1)
	go func() {
		res, err := ts.Client().Do(req)
		if err == nil {
			res.Body.Close()
		}
		gone <- err
	}()
	waiting := func(want float64) {
		t.Helper()
		testutil.Eventually(t, 5*time.Second, fmt.Sprintf("%v requests waiting", want), func() bool {
			return promtest.ToFloat64(requestsWaiting) == want
		})
	}
	waiting(1)
	cancel() // the client gives up and closes its connection
	if err := <-gone; err == nil {
		t.Fatal("the client got an answer while the place was held")
	}
	waiting(0)
	e.h.places.release()
	time.Sleep(200 * time.Millisecond)
	if n := e.client.Order.Query().CountX(context.Background()); n != 0 {
		t.Errorf("%d orders stored for a client that had left while its request waited", n)
	}
}
