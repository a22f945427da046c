package api

import (
	"context"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"
)

// maxLimiterKeys bounds the number of e-mail addresses (and, separately, of client
// addresses) whose login budget is remembered. When a map reaches it, buckets that have
// refilled are forgotten first; if that frees nothing, the map is emptied.
const maxLimiterKeys = 100_000

// loginLimiter slows down password guessing: a token bucket per lower-cased e-mail address
// and one per client (an IPv4 address, or an IPv6 /64 network: see clientKey), each holding up to perMinute tokens and refilled evenly
// over a minute. Every login attempt takes a token from both buckets before the password is
// checked; a successful login gives them back, so only failed attempts count.
//
// The client address is the connection's peer (http.Request.RemoteAddr). Behind a reverse
// proxy every request would come from the proxy; X-Forwarded-For is deliberately not read,
// because without a configured list of trusted proxies any client could set it to escape the
// limit.
//
// Checks of a user's current password (checkCurrentPassword) take from a bucket of the user's
// instead of its address's, of the same size: only the user's token reaches it, so that
// failed logins for the address, which anyone can send, cannot keep the user from changing a
// password.
type loginLimiter struct {
	now func() time.Time

	mu        sync.Mutex
	accounts  bucketSet
	checks    bucketSet // by user id
	addresses bucketSet
}

// bucketSet is one family of buckets sharing a rate.
type bucketSet struct {
	capacity float64
	perSec   float64
	buckets  map[string]*bucket
}

// bucket is a token bucket: tokens available at time at.
type bucket struct {
	tokens float64
	at     time.Time
}

// newLoginLimiter allows perAccount failed attempts per minute per e-mail address and
// perAddress per client address.
func newLoginLimiter(perAccount, perAddress int, now func() time.Time) *loginLimiter {
	return &loginLimiter{
		now:       now,
		accounts:  newBucketSet(perAccount),
		checks:    newBucketSet(perAccount),
		addresses: newBucketSet(perAddress),
	}
}

func newBucketSet(perMinute int) bucketSet {
	n := float64(max(perMinute, 1))
	return bucketSet{capacity: n, perSec: n / 60, buckets: make(map[string]*bucket)}
}

// take takes one token from the bucket of account and of address, or from neither. When
// either is empty it reports false, how long until both hold a token again, and whether the
// address's bucket, which failed logins for every account and wrong current passwords of
// every user take from, is one of the empty ones.
func (l *loginLimiter) take(account, address string) (ok bool, wait time.Duration, byAddress bool) {
	return l.takeFrom(&l.accounts, account, address)
}

// refund gives back the tokens that take took for a login that succeeded.
func (l *loginLimiter) refund(account, address string) { l.refundTo(&l.accounts, account, address) }

// takeCheck is take for a check of the current password of user id.
func (l *loginLimiter) takeCheck(id int, address string) (ok bool, wait time.Duration, byAddress bool) {
	return l.takeFrom(&l.checks, strconv.Itoa(id), address)
}

// refundCheck gives back the tokens that takeCheck took for a check that succeeded.
func (l *loginLimiter) refundCheck(id int, address string) {
	l.refundTo(&l.checks, strconv.Itoa(id), address)
}

func (l *loginLimiter) takeFrom(set *bucketSet, key, address string) (bool, time.Duration, bool) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.addresses.get(address, now)
	if b.tokens < 1 {
		// Refused by its address: the attempt makes no bucket for its key, so that a client
		// past its budget cannot fill the limiter with the keys it tries.
		wait := l.addresses.wait(b)
		if a := set.find(key, now); a != nil {
			wait = max(wait, set.wait(a))
		}
		return false, wait, true
	}
	a := set.get(key, now)
	if a.tokens >= 1 {
		a.tokens--
		b.tokens--
		return true, 0, false
	}
	return false, set.wait(a), false
}

func (l *loginLimiter) refundTo(set *bucketSet, key, address string) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, x := range []struct {
		set *bucketSet
		key string
	}{{set, key}, {&l.addresses, address}} {
		b := x.set.get(x.key, now)
		b.tokens = min(b.tokens+1, x.set.capacity)
	}
}

// get returns key's bucket, refilled up to now, made full when key has none.
func (s *bucketSet) get(key string, now time.Time) *bucket {
	if b := s.find(key, now); b != nil {
		return b
	}
	if len(s.buckets) >= maxLimiterKeys {
		s.prune(now)
	}
	b := &bucket{tokens: s.capacity, at: now}
	s.buckets[key] = b
	return b
}

// find returns key's bucket, refilled up to now, or nil when key has none (a full one).
func (s *bucketSet) find(key string, now time.Time) *bucket {
	b, ok := s.buckets[key]
	if !ok {
		return nil
	}
	if elapsed := now.Sub(b.at).Seconds(); elapsed > 0 {
		b.tokens = min(s.capacity, b.tokens+elapsed*s.perSec)
		b.at = now
	}
	return b
}

// prune forgets the buckets that have refilled completely, or every bucket if none has.
func (s *bucketSet) prune(now time.Time) {
	for k, b := range s.buckets {
		if b.tokens+now.Sub(b.at).Seconds()*s.perSec >= s.capacity {
			delete(s.buckets, k)
		}
	}
	if len(s.buckets) >= maxLimiterKeys {
		clear(s.buckets)
	}
}

// wait is how long b needs to hold one token.
func (s *bucketSet) wait(b *bucket) time.Duration {
	if b.tokens >= 1 {
		return 0
	}
	return time.Duration((1 - b.tokens) / s.perSec * float64(time.Second))
}

// retryAfter formats d as the whole seconds of a Retry-After header, at least 1.
func retryAfter(d time.Duration) string {
	return strconv.Itoa(max(1, int(math.Ceil(d.Seconds()))))
}

// requestInfo carries what handlers need to know about the HTTP exchange that ogen does not
// pass them: the client address, and headers to add to an error answer.
type requestInfo struct {
	// remoteAddr is the peer's "host:port", which Login counts by clientKey.
	remoteAddr string
	// retryAfter, when set by a handler, is sent as Retry-After with a 429 answer.
	retryAfter string
	// body is the request body, for naming a field of it that ogen's decoder refused.
	body []byte
	// idempotencyKeys is the number of Idempotency-Key headers, of which ogen reads the
	// first.
	idempotencyKeys int
	// orderCounted is set by CreateOrder, which counts its outcome in
	// orderflow_orders_created_total, or by NewServer's handler when the order found no
	// place; an order request refused before either is counted apart.
	orderCounted bool
}

type requestInfoKey struct{}

// withRequestInfo stores the client's address (RemoteAddr) in the request context.
func withRequestInfo(r *http.Request) (*http.Request, *requestInfo) {
	info := &requestInfo{remoteAddr: r.RemoteAddr, idempotencyKeys: len(r.Header.Values("Idempotency-Key"))}
	return r.WithContext(context.WithValue(r.Context(), requestInfoKey{}, info)), info
}

// requestInfoFrom returns the request's info, or an empty one outside an HTTP request.
func requestInfoFrom(ctx context.Context) *requestInfo {
	if info, ok := ctx.Value(requestInfoKey{}).(*requestInfo); ok {
		return info
	}
	return &requestInfo{}
}

// clientKey is the login budget's key for the peer address remoteAddr ("host:port"): an
// IPv4 address as it is, also when it comes IPv4-mapped (::ffff:a.b.c.d), and an IPv6
// address by its /64 network. A /64 is the least a network gives one IPv6 client, who can
// take any address in it at will, so counting single addresses would let it make up a new
// budget for every attempt.
func clientKey(remoteAddr string) string {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	ip = ip.Unmap().WithZone("")
	if ip.Is4() {
		return ip.String()
	}
	return netip.PrefixFrom(ip, 64).Masked().String()
}
