package cronjob

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"time"

	"go.uber.org/fx"

	"orderflow/configuration"
)

// Module runs the expiry sweep at start-up and then every orders.expiryInterval until the
// app stops. It needs the *sql.DB pool (db.Module), the validated *configuration.Config, a
// *slog.Logger and the prometheus.Registerer of metrics.Module. The process must also run
// the outbox relay, which publishes the events.
var Module = fx.Module("cronjob",
	fx.Provide(
		fx.Private,
		func(pool *sql.DB, cfg *configuration.Config) *Sweeper {
			return NewSweeper(pool, cfg.Orders)
		},
		func(s *Sweeper, cfg *configuration.Config, logger *slog.Logger) *Scheduler {
			return NewScheduler(s, cfg.Orders.ExpiryInterval.D(), logger)
		},
	),
	fx.Invoke(registerMetrics),
	fx.Invoke(func(lc fx.Lifecycle, s *Scheduler) {
		lc.Append(fx.Hook{
			OnStart: func(context.Context) error { s.Start(); return nil },
			OnStop:  s.Stop,
		})
	}),
)

// runner is what the scheduler runs; *Sweeper implements it.
type runner interface {
	Run(ctx context.Context) (Result, error)
}

// Scheduler runs a sweep at start and then once per interval, one run at a time: runs never
// overlap within a process, and ticks that pass while a run is still going are dropped. A
// failed run is logged and the next tick tries again.
type Scheduler struct {
	run      runner
	interval time.Duration
	logger   *slog.Logger
	// onRun, when set, receives the outcome of every run after it is logged.
	onRun func(Result, error)

	cancel context.CancelFunc
	done   chan struct{}
}

// NewScheduler returns a scheduler that runs s every interval and logs each run on logger.
func NewScheduler(s *Sweeper, interval time.Duration, logger *slog.Logger) *Scheduler {
	return newScheduler(s, interval, logger)
}

func newScheduler(r runner, interval time.Duration, logger *slog.Logger) *Scheduler {
	return &Scheduler{run: r, interval: interval, logger: logger}
}

// Start starts the loop in a goroutine and returns at once; the first run begins immediately.
// Start must be called at most once.
func (s *Scheduler) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.done = make(chan struct{})
	go s.loop(ctx)
}

// Stop cancels the current run, if any (its open batch rolls back), and waits for the loop
// to end or for ctx to expire.
func (s *Scheduler) Stop(ctx context.Context) error {
	if s.cancel == nil {
		return nil
	}
	s.cancel()
	select {
	case <-s.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stop expiry scheduler: %w", ctx.Err())
	}
}

func (s *Scheduler) loop(ctx context.Context) {
	defer close(s.done)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		next := time.Now().Add(s.interval)
		res, err := s.run.Run(ctx)
		if err != nil && ctx.Err() != nil {
			// Stopping interrupted the run; what it committed stays, the rest waits for
			// the next start.
			s.logger.Info("expiry sweep interrupted by shutdown", slog.Int("expired", res.Expired))
			expired.Add(float64(res.Expired))
			return
		}
		logResult(s.logger, res, err)
		observeRun(res, err)
		if s.onRun != nil {
			s.onRun(res, err)
		}
		// A run longer than the interval is followed by the next one at once, not by a
		// burst of the ticks it missed.
		timer.Reset(max(time.Until(next), 0))
	}
}
