package bus

import (
	"bytes"
	"context"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"orderflow/internal/testenv"
	"orderflow/internal/testutil"
)

// TestPublisherDeclaresADeletedExchangeAgain: an exchange deleted by hand while a process is
// connected closes every publishing channel with 404 NOT_FOUND; the connection declares its
// topology again, and publishing resumes without a reconnection.
func TestPublisherDeclaresADeletedExchangeAgain(t *testing.T) {
	t.Parallel()
	cfg := rabbitConfig(t)
	c := startConn(t, cfg, Options{Queues: testQueues()})
	publish(t, c, 0)
	admin := testenv.AdminChannel(t, cfg)
	if err := admin.ExchangeDelete(cfg.Exchange, false, false); err != nil {
		t.Fatal(err)
	}
	p := NewPublisher(c)
	i := 0
	testutil.Eventually(t, 10*time.Second, "a message published after the exchange was deleted", func() bool {
		i++
		return p.Publish(context.Background(), message(testKey, i)) == nil
	})
	// Bound again, the queue got it.
	testutil.Eventually(t, 30*time.Second, "the message in the queue", func() bool {
		return queueLength(t, admin, c.Topology().QueueName("c")) == 2
	})
}

// TestConsumerDeclaresADeletedQueueAgain: a queue deleted by hand while the worker consumes
// it cancels the consumer, and subscribing again fails with 404 NOT_FOUND; the connection
// declares its topology again, and the consumer gets the messages published from then on.
func TestConsumerDeclaresADeletedQueueAgain(t *testing.T) {
	t.Parallel()
	cfg := rabbitConfig(t)
	c := startConn(t, cfg, Options{Queues: testQueues()})
	seen := newCounter()
	cons := NewConsumer(c, "c", 10, func(_ context.Context, d Delivery) error {
		seen.add(d.MessageID)
		return nil
	})
	cons.Start()
	t.Cleanup(func() { _ = cons.Stop(context.Background()) })
	publish(t, c, 0)
	testutil.Eventually(t, 10*time.Second, "the first delivery", func() bool { return seen.distinct() == 1 })
	admin := testenv.AdminChannel(t, cfg)
	if _, err := admin.QueueDelete(c.Topology().QueueName("c"), false, false, false); err != nil {
		t.Fatal(err)
	}
	p := NewPublisher(c)
	i := 0
	// Until the queue is back, messages are returned as unroutable.
	testutil.Eventually(t, 15*time.Second, "a delivery after the queue was deleted", func() bool {
		i++
		_ = p.Publish(context.Background(), message(testKey, i))
		time.Sleep(50 * time.Millisecond)
		return seen.distinct() > 1
	})
}

// TestConsumerAsksForADayToAcknowledge: a subscription asks for a consumer timeout of a day,
// so that a worker keeping its messages through a database outage does not have them
// redelivered, and counted toward the delivery limit, every 30 minutes (the broker's default).
func TestConsumerAsksForADayToAcknowledge(t *testing.T) {
	t.Parallel()
	cfg := rabbitConfig(t)
	c := startConn(t, cfg, Options{Queues: testQueues()})
	cons := NewConsumer(c, "c", 10, func(context.Context, Delivery) error { return nil })
	cons.Start()
	t.Cleanup(func() { _ = cons.Stop(context.Background()) })
	queue := c.Topology().QueueName("c")
	var line string
	testutil.Eventually(t, 60*time.Second, "the consumer listed with its arguments", func() bool {
		out, err := testenv.Rabbitmqctl("list_consumers", "-q", "-p", cfg.VHost, "queue_name", "arguments")
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(out, "\n") {
			if strings.HasPrefix(l, queue+"\t") {
				line = l
				return true
			}
		}
		return false
	})
	if !regexp.MustCompile(`"x-consumer-timeout",(long,)?86400000\}`).MatchString(line) {
		t.Errorf("consumer %q, want x-consumer-timeout 86400000 ms", line)
	}
}

// silentAfterNotFound forwards to target until the broker sends a NOT_FOUND, then forwards
// nothing more either way: a broker that stops answering right after its 404. It returns its
// port.
func silentAfterNotFound(t *testing.T, target string) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	var silent atomic.Bool
	pipe := func(dst, src net.Conn, fromBroker bool) {
		defer dst.Close()
		defer src.Close()
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 && !silent.Load() {
				_, _ = dst.Write(buf[:n])
				if fromBroker && bytes.Contains(buf[:n], []byte("NOT_FOUND")) {
					silent.Store(true)
				}
			}
			if err != nil {
				return
			}
		}
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				_ = c.Close()
				continue
			}
			go pipe(up, c, false)
			go pipe(c, up, true)
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestPublishIsNotHeldByRestore: the topology is declared again in the background, so that a
// broker that stops answering right after its 404 holds the declaration, not the publish,
// which its context bounds.
func TestPublishIsNotHeldByRestore(t *testing.T) {
	t.Parallel()
	direct := rabbitConfig(t)
	cfg := direct
	cfg.Port = silentAfterNotFound(t, net.JoinHostPort(direct.Host, strconv.Itoa(direct.Port)))
	c := NewConn(cfg, testLogger(), Options{Name: cfg.Exchange, Queues: testQueues()})
	c.Start()
	deleteAtCleanup(t, direct, c.Topology()) // not through the proxy, silent by then
	t.Cleanup(func() { _ = c.Close() })
	ready, cancelReady := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancelReady()
	if err := c.WaitReady(ready); err != nil {
		t.Fatal(err)
	}
	publish(t, c, 0)
	if err := testenv.AdminChannel(t, direct).ExchangeDelete(cfg.Exchange, false, false); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	start := time.Now()
	err := NewPublisher(c).Publish(ctx, message(testKey, 1))
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("a publish with a context of 1 s returned after %v (%v)", took.Round(time.Millisecond), err)
	}
	if err == nil {
		t.Error("a publish to the deleted exchange succeeded")
	}
}
