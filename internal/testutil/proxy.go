package testutil

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// Proxy forwards TCP connections to a server, so that a test can make the network between
// them fail: Cut, as a server that went away, Silence, as a network partition, or Strand, as
// a failover to another server behind the same address.
type Proxy struct {
	ln     net.Listener
	target string
	silent atomic.Bool
	// pairs counts the forwarded connections; those up to stranded are silent.
	pairs, stranded atomic.Int64

	mu    sync.Mutex
	down  bool
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// StartProxy forwards a local port to target (host:port) until the test ends.
func StartProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(func() {
		ln.Close()
		p.Cut()
		p.wg.Wait()
	})
	return p
}

// Connections is the number of connections it has forwarded so far.
func (p *Proxy) Connections() int64 { return p.pairs.Load() }

// Port is the local port that forwards to the target.
func (p *Proxy) Port() int { return p.ln.Addr().(*net.TCPAddr).Port }

// Cut closes every connection it carries and refuses new ones (accepts and closes them at
// once), until Restore.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for c := range p.conns {
		c.Close()
		delete(p.conns, c)
	}
}

// Restore forwards new connections again after Cut.
func (p *Proxy) Restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = false
}

// Silence stops forwarding for good without closing anything: whatever either side sends is
// dropped, and neither sees an error until its own timeouts, such as heartbeats, expire.
func (p *Proxy) Silence() { p.silent.Store(true) }

// Strand silences the connections it carries now, for good, and forwards new ones: as a
// failover that leaves the connections made before it to a server that went away without
// closing them, while the address reaches a server that answers.
func (p *Proxy) Strand() { p.stranded.Store(p.pairs.Load()) }

func (p *Proxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			continue
		}
		p.mu.Lock()
		down := p.down
		p.mu.Unlock()
		if down {
			c.Close()
			continue
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		if !p.track(c, up) {
			continue
		}
		pair := p.pairs.Add(1)
		p.wg.Add(2)
		go p.pipe(c, up, pair)
		go p.pipe(up, c, pair)
	}
}

// track registers a forwarded pair, or closes it when the proxy was cut meanwhile.
func (p *Proxy) track(a, b net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.down {
		a.Close()
		b.Close()
		return false
	}
	p.conns[a], p.conns[b] = struct{}{}, struct{}{}
	return true
}

// pipe copies src to dst, dropping what it reads once the proxy is silent or the pair
// stranded, until either side closes.
func (p *Proxy) pipe(dst, src net.Conn, pair int64) {
	defer p.wg.Done()
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !p.silent.Load() && pair > p.stranded.Load() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
