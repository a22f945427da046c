// Package bus is orderflow's RabbitMQ client: connections that reconnect by themselves (a
// process has one for its consumers and one for its publisher), the broker topology, a
// confirming publisher and concurrent consumers.
//
// Reconnection is this package's own loop rather than amqp091-go's opt-in Recovery: the
// library's recovery retries at a fixed interval a bounded number of times (then the
// connection stays dead for good), and it reopens the same *amqp.Channel values with delivery
// tags restarting at 1, so a handler that acks a delivery received before the drop acks an
// unrelated message on the recovered channel. Here every (re)connection gets new channels:
// acks for deliveries of a dead channel fail harmlessly and the broker redelivers them.
package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"orderflow/configuration"
)

// ErrClosed is returned by operations on a Conn that has been closed.
var ErrClosed = errors.New("bus: connection closed")

// ErrTopology reports that the broker refused to declare the topology with a channel
// exception, typically PRECONDITION_FAILED because a queue or exchange of the same name
// exists with other arguments or of another type. Retrying does not help until someone
// deletes the existing object or changes the settings; Conn keeps retrying meanwhile.
var ErrTopology = errors.New("declaring the topology failed")

// Back-off between connection attempts: doubled after each failure, capped.
const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 5 * time.Second
	// unavailableLogInterval spaces the warnings of a broker outage: the first failed
	// attempt is logged, then one every this often (the others at debug level), so that an
	// outage of an hour does not write a line every maxBackoff for each connection.
	unavailableLogInterval = time.Minute
)

// dialTimeout bounds opening the TCP connection, and then the AMQP handshake on it.
const dialTimeout = 5 * time.Second

// closeTimeout bounds the closing handshake. A broker that stopped answering without
// closing the connection (a network partition) would otherwise hold Close until the
// heartbeats time out, 30 s; past it the socket is closed, and the broker requeues the
// unacked messages when it notices, as it does after a clean close.
const closeTimeout = 2 * time.Second

// Options tune a Conn; the zero value means the defaults.
type Options struct {
	// Name is the connection name shown in the RabbitMQ management UI.
	Name string
	// DeliveryLimit is the x-delivery-limit of the queues (DefaultDeliveryLimit when 0).
	// Every process must use the same value: RabbitMQ refuses to redeclare a queue with
	// different arguments.
	DeliveryLimit int
	// Queues lists the consumer queues to declare (SystemQueues when nil).
	Queues []Queue
}

// Conn is a connection to RabbitMQ. It dials in the background, declares the topology on
// every (re)connection, and reconnects with capped exponential back-off after any drop until
// Close. Publishers and consumers open their channels on it.
type Conn struct {
	url      string
	log      *slog.Logger
	topology Topology
	name     string

	mu      sync.Mutex
	conn    *amqp.Connection // nil while disconnected
	changed chan struct{}    // closed and replaced whenever conn changes
	lastErr error
	started bool
	// blocked is set while the broker blocks publishing on the connection (a resource alarm).
	blocked atomic.Bool
	// consumers counts the consumers made on the connection (NewConsumer).
	consumers atomic.Int32
	// restoring is held while the topology is declared again (restore), and restores counts
	// those declarations, which Close waits for.
	restoring sync.Mutex
	restores  sync.WaitGroup

	closing   chan struct{}
	closeOnce sync.Once
	done      chan struct{}
}

// NewConn returns an unstarted connection to the broker of cfg. Start begins dialling.
func NewConn(cfg configuration.RabbitMQ, log *slog.Logger, opts Options) *Conn {
	if opts.Name == "" {
		opts.Name = "orderflow"
	}
	// A process holds two connections (consuming and publishing) that fail and recover
	// apart: each log line names the one it is about.
	return &Conn{
		url:      cfg.URL(),
		log:      log.With("component", "bus", "connection", opts.Name),
		topology: NewTopology(cfg.Exchange, opts.DeliveryLimit, opts.Queues),
		name:     opts.Name,
		changed:  make(chan struct{}),
		lastErr:  errors.New("not connected yet"),
		closing:  make(chan struct{}),
		done:     make(chan struct{}),
	}
}

// consumed tells whether a consumer was made on the connection: the process then cannot
// work without the broker.
func (c *Conn) consumed() bool { return c.consumers.Load() > 0 }

// Topology returns the exchanges and queues this connection declares.
func (c *Conn) Topology() Topology { return c.topology }

// Start begins connecting in the background and returns at once; it is safe to call more
// than once.
func (c *Conn) Start() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.started {
		return
	}
	c.started = true
	go c.run()
}

// Close stops reconnecting and closes the connection (and with it every channel), waiting
// at most closeTimeout for the broker. Stop consumers before, so that their handlers can
// still ack.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() { close(c.closing) })
	c.mu.Lock()
	started := c.started
	c.mu.Unlock()
	if started {
		<-c.done
	}
	c.restores.Wait() // the connection is closed: a declaration in progress has failed
	return nil
}

// Check reports whether the connection is up, for /readyz. While the broker refuses the
// topology, its error wraps ErrTopology and says what to do.
func (c *Conn) Check(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == nil || c.conn.IsClosed() {
		return fmt.Errorf("rabbitmq: %w", c.lastErr)
	}
	return nil
}

// WaitReady blocks until the connection is up (and the topology declared), ctx ends, or the
// Conn is closed. It returns nil at once when the connection is up, even with an ended ctx,
// which makes it also the check whether the connection is up now.
func (c *Conn) WaitReady(ctx context.Context) error {
	for {
		conn, changed := c.current()
		if conn != nil {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("wait for rabbitmq: %w (%v)", ctx.Err(), c.Check(ctx))
		case <-c.closing:
			return ErrClosed
		}
	}
}

// current returns the live connection (nil while disconnected) and a channel closed at the
// next change.
func (c *Conn) current() (*amqp.Connection, <-chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.conn, c.changed
}

func (c *Conn) set(conn *amqp.Connection, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.conn = conn
	if err != nil {
		c.lastErr = err
	}
	close(c.changed)
	c.changed = make(chan struct{})
}

// channel opens a channel on the current connection, waiting for a connection while there is
// none, until ctx ends or the Conn is closed.
func (c *Conn) channel(ctx context.Context) (*amqp.Channel, error) {
	for {
		select {
		case <-c.closing:
			return nil, ErrClosed
		default:
		}
		conn, changed := c.current()
		if conn != nil {
			ch, err := conn.Channel()
			if err == nil {
				return ch, nil
			}
			if !conn.IsClosed() {
				return nil, fmt.Errorf("open channel: %w", err)
			}
			// The connection died and run has not noticed yet: wait for the change.
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, fmt.Errorf("wait for rabbitmq: %w (%v)", ctx.Err(), c.Check(ctx))
		case <-c.closing:
			return nil, ErrClosed
		}
	}
}

// run dials, declares the topology, watches the connection and redials after a drop, until
// Close.
func (c *Conn) run() {
	defer close(c.done)
	backoff, connected := minBackoff, false
	var warned time.Time // when the outage was last logged as a warning
	for attempt := 1; ; attempt++ {
		conn, err := c.dial()
		if err != nil {
			select {
			case <-c.closing:
				// Close interrupted the attempt.
				c.set(nil, ErrClosed)
				return
			default:
			}
			c.set(nil, err)
			var topoErr *topologyError
			if errors.As(err, &topoErr) {
				// Not an outage: retrying helps only once someone acts on the message.
				c.log.Error("declaring the rabbitmq topology failed: "+topoErr.advice, "attempt", attempt, "retry_in", backoff, "error", topoErr.err)
			} else {
				level := slog.LevelDebug
				if attempt == 1 || time.Since(warned) >= unavailableLogInterval {
					level, warned = slog.LevelWarn, time.Now()
				}
				c.log.Log(context.Background(), level, "rabbitmq unavailable", "attempt", attempt, "retry_in", backoff, "error", err)
			}
			select {
			case <-time.After(backoff):
			case <-c.closing:
				return
			}
			backoff = min(backoff*2, maxBackoff)
			continue
		}
		// Both notify channels are buffered and drained below: an unread one would block
		// the library's reader.
		closed := conn.NotifyClose(make(chan *amqp.Error, 1))
		blocked := conn.NotifyBlocked(make(chan amqp.Blocking, 1))
		c.set(conn, nil)
		if connected {
			c.log.Info("rabbitmq connection recovered", "attempts", attempt)
		} else {
			c.log.Info("rabbitmq connected", "attempts", attempt)
		}
		attempt, backoff, connected = 0, minBackoff, true
		if !c.watch(conn, closed, blocked) {
			return
		}
	}
}

// watch waits for conn to drop (true) or for Close (false).
func (c *Conn) watch(conn *amqp.Connection, closed <-chan *amqp.Error, blocked <-chan amqp.Blocking) bool {
	for {
		select {
		case b, ok := <-blocked:
			if !ok {
				blocked = nil
				continue
			}
			c.blocked.Store(b.Active)
			if b.Active {
				c.log.Warn("rabbitmq blocked publishing on this connection", "reason", b.Reason)
			} else {
				c.log.Info("rabbitmq unblocked publishing on this connection")
			}
		case amqpErr := <-closed:
			err := errors.New("connection closed")
			if amqpErr != nil {
				err = amqpErr
			}
			c.set(nil, err)
			c.blocked.Store(false)
			c.log.Warn("rabbitmq connection lost, reconnecting", "error", err)
			return true
		case <-c.closing:
			c.set(nil, ErrClosed)
			if err := conn.CloseDeadline(time.Now().Add(closeTimeout)); err != nil && !errors.Is(err, amqp.ErrClosed) {
				c.log.Warn("close rabbitmq connection", "error", err)
			}
			return false
		}
	}
}

// dial opens a connection and declares the topology on it. Close interrupts it by closing
// the socket: a broker that stopped answering would otherwise hold the handshake until
// dialTimeout, and a declaration until the heartbeats time out.
func (c *Conn) dial() (*amqp.Connection, error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-c.closing:
			cancel()
		case <-ctx.Done():
		}
	}()
	stopAbort := func() bool { return true }
	props := amqp.NewConnectionProperties()
	props.SetClientConnectionName(c.name)
	conn, err := amqp.DialConfig(c.url, amqp.Config{
		Properties: props,
		Heartbeat:  10 * time.Second,
		Dial: func(network, addr string) (net.Conn, error) {
			sock, err := (&net.Dialer{Timeout: dialTimeout}).DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			// As amqp.DefaultDial does: heartbeats start after the handshake, so that a
			// broker that does not answer it must not stall the attempt forever.
			if err := sock.SetDeadline(time.Now().Add(dialTimeout)); err != nil {
				_ = sock.Close()
				return nil, err
			}
			stopAbort = context.AfterFunc(ctx, func() { _ = sock.Close() })
			return sock, nil
		},
	})
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	err = c.topology.declare(conn)
	if !stopAbort() && err == nil {
		err = ErrClosed // Close came after the declarations, and closed the socket
	}
	if err != nil {
		_ = conn.Close()
		var amqpErr *amqp.Error
		// A soft (channel) exception from the server is the broker refusing the declaration
		// itself; anything else, such as the connection dropping, is an outage.
		if errors.As(err, &amqpErr) && amqpErr.Server && amqpErr.Recover {
			advice := "the broker refused a declaration"
			if amqpErr.Code == amqp.PreconditionFailed {
				advice = "a queue or exchange of that name exists with other settings; delete it, or change the settings to match it"
			}
			return nil, &topologyError{advice: advice, err: err}
		}
		return nil, err
	}
	return conn, nil
}

// restore declares the topology again on the live connection when err, a publisher's or
// consumer's failure, is the broker's 404 NOT_FOUND: an exchange or queue of the topology was
// deleted by hand while the connection was up. Declarations happen only when a connection is
// made, so without this publishing (a channel closed at every message) or consuming (no
// queue to subscribe to) would fail until the connection dropped. The declaration runs in the
// background, since the broker's answers are not bounded by the caller's context (a publish,
// a subscription); the caller's next attempt finds the topology back. One restore runs at a
// time; a failure meanwhile is left to the next.
func (c *Conn) restore(err error) {
	var amqpErr *amqp.Error
	if !errors.As(err, &amqpErr) || amqpErr.Code != amqp.NotFound {
		return
	}
	conn, _ := c.current()
	if conn == nil || !c.restoring.TryLock() {
		return // a new connection declares the topology anyway, or a restore runs
	}
	c.mu.Lock()
	select {
	case <-c.closing:
		c.mu.Unlock()
		c.restoring.Unlock()
		return
	default:
		c.restores.Add(1) // before Close waits: Close takes c.mu after closing
	}
	c.mu.Unlock()
	go func() {
		defer c.restores.Done()
		defer c.restoring.Unlock()
		if derr := c.topology.declare(conn); derr != nil {
			if !conn.IsClosed() {
				c.log.Error("declaring the rabbitmq topology again failed", "after", amqpErr.Reason, "error", derr)
			}
			return
		}
		c.log.Warn("part of the rabbitmq topology was gone; declared it again", "error", amqpErr.Reason)
	}()
}

// topologyError is an ErrTopology: what to do about it, and the broker's refusal.
type topologyError struct {
	advice string
	err    error
}

func (e *topologyError) Error() string {
	return fmt.Sprintf("%v (%s): %v", ErrTopology, e.advice, e.err)
}

func (e *topologyError) Is(target error) bool { return target == ErrTopology }

func (e *topologyError) Unwrap() error { return e.err }
