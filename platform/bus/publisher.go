package bus

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Publishing errors.
var (
	// ErrNacked: the broker refused the message (a publisher-confirm nack).
	ErrNacked = errors.New("bus: message nacked by the broker")
	// ErrReturned: the message matched no queue (a mandatory message returned).
	ErrReturned = errors.New("bus: message returned unroutable")
	// ErrRefused: the broker closed the channel over the message, a precondition it failed
	// (larger than the broker's max_message_size, say).
	ErrRefused = errors.New("bus: message refused by the broker")
	// ErrBlocked: the broker blocks publishing on the connection (a memory or disk alarm);
	// publishing now would block the caller until the alarm clears.
	ErrBlocked = errors.New("bus: publishing blocked by the broker")
)

// publisherChannels is how many channels publish at once; more concurrent publishers wait.
const publisherChannels = 4

// Message is one message to publish on the exchange.
type Message struct {
	// ID is the AMQP message_id: the event id.
	ID string
	// Type is the AMQP type: the CloudEvents type.
	Type string
	// RoutingKey routes the message on the topic exchange.
	RoutingKey string
	// ContentType is the AMQP content_type (events.ContentType for events).
	ContentType string
	// Body is the message body: the CloudEvents envelope.
	Body []byte
	// Time is the AMQP timestamp.
	Time time.Time
	// Headers become AMQP headers.
	Headers map[string]string
}

// Publisher publishes persistent, mandatory messages on the topology's exchange with
// publisher confirms. It is safe for concurrent use; a message counts as published only when
// the broker confirmed it and did not return it. A message that failed may still have
// reached a queue (the confirm was lost with the connection): consumers tolerate duplicates.
type Publisher struct {
	conn     *Conn
	exchange string
	slots    chan struct{}

	mu   sync.Mutex
	idle []*pubChannel
}

// NewPublisher returns a publisher on conn. In a process that also consumes, conn should be a
// connection of its own, as Module's is (see ProvidePublisher).
func NewPublisher(conn *Conn) *Publisher {
	return &Publisher{conn: conn, exchange: conn.topology.Exchange, slots: make(chan struct{}, publisherChannels)}
}

// WaitReady blocks until the connection is up, ctx ends, or the connection is closed; see
// Conn.WaitReady.
func (p *Publisher) WaitReady(ctx context.Context) error { return p.conn.WaitReady(ctx) }

// Publish publishes one message and waits for its confirm, within ctx.
func (p *Publisher) Publish(ctx context.Context, m Message) error {
	return p.PublishBatch(ctx, []Message{m})[0]
}

// PublishBatch publishes msgs in order on one channel with all their confirms outstanding,
// then waits for every confirm, within ctx. It returns one error per message, nil for each
// one the broker confirmed; a message after one that failed to be sent fails too.
func (p *Publisher) PublishBatch(ctx context.Context, msgs []Message) []error {
	errs := p.publishBatch(ctx, msgs)
	failed := 0
	for _, err := range errs {
		if err != nil {
			failed++
		}
	}
	published.WithLabelValues("confirmed").Add(float64(len(errs) - failed))
	published.WithLabelValues("failed").Add(float64(failed))
	return errs
}

func (p *Publisher) publishBatch(ctx context.Context, msgs []Message) []error {
	errs := make([]error, len(msgs))
	if len(msgs) == 0 {
		return errs
	}
	// failFrom fails msgs[from:] that have no error yet; earlier ones were confirmed.
	failFrom := func(from int, err error) []error {
		for i := from; i < len(errs); i++ {
			if errs[i] == nil {
				errs[i] = err
			}
		}
		return errs
	}
	fail := func(err error) []error { return failFrom(0, err) }
	if p.conn.blocked.Load() {
		return fail(ErrBlocked)
	}
	select {
	case p.slots <- struct{}{}:
	case <-ctx.Done():
		return fail(fmt.Errorf("publish: %w", ctx.Err()))
	}
	defer func() { <-p.slots }()
	pc, err := p.acquire(ctx)
	if err != nil {
		return fail(fmt.Errorf("publish: %w", err))
	}
	healthy := false
	defer func() { p.release(pc, healthy) }()

	// sent is how many messages were written, unconfirmed the first of them whose confirm did
	// not come (sent when each one came), and failure why the batch stopped short.
	confirms := make([]*amqp.DeferredConfirmation, len(msgs))
	sent, failure := len(msgs), error(nil)
	for i, m := range msgs {
		confirms[i], err = pc.ch.PublishWithDeferredConfirmWithContext(ctx, p.exchange, m.RoutingKey,
			true,  // mandatory: an unroutable message comes back as a return
			false, // immediate
			publishing(m))
		if err != nil {
			// The channel may have closed over a message already written: the ones before
			// are told apart below, as after any close.
			sent, failure = i, fmt.Errorf("publish %s: %w", m.ID, err)
			break
		}
	}
	unconfirmed := sent
	for i, dc := range confirms[:sent] {
		ack, err := dc.WaitContext(ctx)
		if err == nil && !ack && pc.ch.IsClosed() {
			err = pc.closeReason()
		}
		if err != nil {
			unconfirmed, failure = i, fmt.Errorf("no confirm of %s: %w", msgs[i].ID, err)
			break
		}
		if !ack {
			errs[i] = fmt.Errorf("publish %s: %w", msgs[i].ID, ErrNacked)
		}
	}
	// A return arrives before the confirm of its message, so every return of the messages
	// confirmed has reached the drain goroutine by now: a returned message fails, also when
	// the confirm of one after it did not come.
	returned := pc.takeReturns()
	for i, m := range msgs[:unconfirmed] {
		if r, ok := returned[m.ID]; ok && errs[i] == nil {
			errs[i] = fmt.Errorf("publish %s with key %s: %w (%d %s)", m.ID, m.RoutingKey, ErrReturned, r.ReplyCode, r.ReplyText)
		}
	}
	if failure != nil {
		p.conn.restore(failure)
		// The broker takes a channel's messages in order and closes the channel at the first
		// that fails a precondition, so the first unconfirmed one is taken as refused and the
		// ones after it as not taken. Were it one whose confirm only trailed (a queue confirms
		// once it has the message), that one is held back and published again after its
		// delay, a duplicate, and the refused one is tried again with the others.
		if reason := (*amqp.Error)(nil); unconfirmed < sent && errors.As(failure, &reason) && reason.Code == amqp.PreconditionFailed {
			m := msgs[unconfirmed]
			errs[unconfirmed] = fmt.Errorf("publish %s: %w: %w", m.ID, ErrRefused, reason)
		}
		return failFrom(unconfirmed, failure)
	}
	healthy = true
	return errs
}

func publishing(m Message) amqp.Publishing {
	var headers amqp.Table
	if len(m.Headers) > 0 {
		headers = make(amqp.Table, len(m.Headers))
		for k, v := range m.Headers {
			headers[k] = v
		}
	}
	return amqp.Publishing{
		Headers:      headers,
		ContentType:  m.ContentType,
		DeliveryMode: amqp.Persistent,
		MessageId:    m.ID,
		Timestamp:    m.Time,
		Type:         m.Type,
		Body:         m.Body,
	}
}

// acquire returns an idle open channel or opens a new one (waiting for the connection),
// within ctx.
func (p *Publisher) acquire(ctx context.Context) (*pubChannel, error) {
	p.mu.Lock()
	for len(p.idle) > 0 {
		pc := p.idle[len(p.idle)-1]
		p.idle = p.idle[:len(p.idle)-1]
		if !pc.ch.IsClosed() {
			p.mu.Unlock()
			return pc, nil
		}
		pc.close()
	}
	p.mu.Unlock()
	// Opening a channel waits for the broker's answers, which a broker that stopped
	// answering holds until the heartbeats time out: give up on it when ctx ends, and close
	// the channel if it opens after all.
	type result struct {
		pc  *pubChannel
		err error
	}
	opened := make(chan result, 1)
	go func() {
		pc, err := p.open(ctx)
		opened <- result{pc, err}
	}()
	select {
	case r := <-opened:
		return r.pc, r.err
	case <-ctx.Done():
		go func() {
			if r := <-opened; r.pc != nil {
				r.pc.close()
			}
		}()
		if err := p.conn.Check(ctx); err != nil {
			return nil, fmt.Errorf("wait for rabbitmq: %w (%v)", ctx.Err(), err)
		}
		return nil, fmt.Errorf("open channel: the broker does not answer: %w", ctx.Err())
	}
}

// open opens a new confirming channel, waiting for the connection until ctx ends.
func (p *Publisher) open(ctx context.Context) (*pubChannel, error) {
	ch, err := p.conn.channel(ctx)
	if err != nil {
		return nil, err
	}
	if err := ch.Confirm(false /* no-wait */); err != nil {
		_ = ch.Close()
		return nil, fmt.Errorf("enable publisher confirms: %w", err)
	}
	return newPubChannel(ch), nil
}

// release keeps a channel for reuse, or closes it after a failure: its confirms and returns
// may be out of step with the next batch. The close goes on in the background: a broker that
// stopped answering would hold it, and the caller, until the heartbeats time out.
func (p *Publisher) release(pc *pubChannel, healthy bool) {
	if !healthy || pc.ch.IsClosed() {
		go pc.close()
		return
	}
	p.mu.Lock()
	p.idle = append(p.idle, pc)
	p.mu.Unlock()
}

// pubChannel is a confirming channel with its returns drained into a map.
type pubChannel struct {
	ch      *amqp.Channel
	closed  <-chan *amqp.Error // the broker's reason, when it closes the channel
	takeReq chan chan map[string]amqp.Return
	done    chan struct{}
	final   map[string]amqp.Return // what drain held when the channel closed; read after done
}

func newPubChannel(ch *amqp.Channel) *pubChannel {
	// Unbuffered: the library hands a return over before it processes the confirm that
	// follows it, which is what lets takeReturns see every return of a confirmed batch.
	returns := ch.NotifyReturn(make(chan amqp.Return))
	// Buffered: the library sends the reason before it closes the channel's confirms.
	closed := ch.NotifyClose(make(chan *amqp.Error, 1))
	pc := &pubChannel{ch: ch, closed: closed, takeReq: make(chan chan map[string]amqp.Return), done: make(chan struct{})}
	go pc.drain(returns)
	return pc
}

// drain collects the channel's returns until it closes. It must never block for long: the
// library gives up on a listener that has not taken a notification within a few seconds
// (amqp091-go's notifyAll), and a return dropped so would let its message, confirmed all
// the same, count as published.
func (pc *pubChannel) drain(returns <-chan amqp.Return) {
	got := map[string]amqp.Return{}
	defer func() {
		pc.final = got
		close(pc.done)
	}()
	for {
		select {
		case r, ok := <-returns:
			if !ok {
				return
			}
			got[r.MessageId] = r
		case reply := <-pc.takeReq:
			reply <- got
			got = map[string]amqp.Return{}
		}
	}
}

// takeReturns returns and forgets the returns received so far.
func (pc *pubChannel) takeReturns() map[string]amqp.Return {
	reply := make(chan map[string]amqp.Return, 1)
	select {
	case pc.takeReq <- reply:
		return <-reply
	case <-pc.done:
		final := pc.final
		pc.final = nil
		return final
	}
}

// closeReason is why the closed channel closed: the broker's reason (a channel exception,
// or the connection's end), or amqp.ErrClosed when there is none.
func (pc *pubChannel) closeReason() error {
	select {
	case e, ok := <-pc.closed:
		if ok && e != nil {
			return e
		}
	default:
	}
	return amqp.ErrClosed
}

func (pc *pubChannel) close() {
	_ = pc.ch.Close()
	<-pc.done
}
