package api

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"orderflow/api/oas"
	"orderflow/internal/group"
)

// intake stores new orders, and stores the orders that are waiting together in one round
// trip and one transaction: PostgreSQL then flushes its log once for all of them, and each
// order costs the API and the database one statement instead of a round trip and a commit.
//
// The orders waiting together are written by one of their requests (group.Writer): one
// writer at a time under a moderate load, up to writers while a whole group of maxGroup
// waits.
type intake struct {
	db     *sql.DB
	log    *slog.Logger
	groups *group.Writer[*orderJob]
}

// orderJob is one order in the intake: its request's context, OrderStatement's input, and
// the result.
type orderJob struct {
	ctx context.Context
	orderInput

	done  chan struct{} // closed once order and err are set
	order *oas.Order
	err   error
	// alone is set when the job's group failed as a whole and stored nothing: the job's
	// request stores its order by itself, so that one order's error is its own.
	alone bool
}

// errGroupNotSent marks a group's failure before any of it reached PostgreSQL.
var errGroupNotSent = errors.New("group not sent")

func newIntake(db *sql.DB, log *slog.Logger, writers, maxGroup int) *intake {
	return &intake{db: db, log: log, groups: group.NewWriter[*orderJob](writers, maxGroup)}
}

// store stores job's order and returns it, or nil when OrderStatement stored nothing.
func (in *intake) store(job *orderJob) (*oas.Order, error) {
	job.done = make(chan struct{})
	in.groups.Write(job, job.done, in.storeGroup)
	if job.alone {
		return in.storeAlone(job)
	}
	return job.order, job.err
}

// storeAlone stores job's order by itself.
func (in *intake) storeAlone(job *orderJob) (*oas.Order, error) {
	o, err := insertOrder(job.ctx, in.db, job.orderInput)
	if err == nil {
		intakeGroupOrders.Observe(1)
	}
	return o, err
}

// answerEnded answers the orders of group whose request has ended while they waited, and
// returns the others.
func answerEnded(group []*orderJob) []*orderJob {
	live := group[:0] // a group is the writer's own copy
	for _, j := range group {
		if err := j.ctx.Err(); err != nil {
			j.err = err
			close(j.done)
			continue
		}
		live = append(live, j)
	}
	return live
}

// storeGroup stores the orders of group and answers them: one order by itself, several in
// one transaction. When the transaction fails and surely stored nothing (PostgreSQL reported
// the error, which rolls it back), each order is stored by its own request. When the outcome
// is unknown (the connection broke, or the time ran out, after the commit may have been
// sent), every order of the group gets the error, as a single order would: storing them
// again could store them twice.
func (in *intake) storeGroup(group []*orderJob) {
	group = answerEnded(group)
	defer func() {
		for _, j := range group {
			close(j.done)
		}
	}()
	if len(group) < 2 { // one order, or none whose request is still there
		for _, j := range group {
			j.order, j.err = in.storeAlone(j)
		}
		return
	}
	ctx, cancel := groupContext(group)
	defer cancel()
	err := in.insertGroup(ctx, group)
	switch {
	case err == nil:
		intakeGroupOrders.Observe(float64(len(group)))
	case storedNothing(err):
		in.log.Warn("storing orders together failed, each is stored by itself", "orders", len(group), "error", err)
		for _, j := range group {
			j.order, j.alone = nil, true
		}
	default:
		for _, j := range group {
			j.order, j.err = nil, err
		}
	}
}

// storedNothing tells whether a group's err means that none of it was stored.
func storedNothing(err error) bool {
	return errors.Is(err, errGroupNotSent) || pgCode(err) != ""
}

// groupContext is a group's context: it ends when the last of the group's requests would
// end, not when the request that writes it ends.
func groupContext(group []*orderJob) (context.Context, context.CancelFunc) {
	ctx := context.WithoutCancel(group[0].ctx)
	var last time.Time
	for _, j := range group {
		d, ok := j.ctx.Deadline()
		if !ok {
			return context.WithCancel(ctx)
		}
		if d.After(last) {
			last = d
		}
	}
	return context.WithDeadline(ctx, last)
}

// lockProducts locks products $1 in id order, as OrderStatement does for one order: a group
// takes the locks of all its orders' products first, so that two transactions never wait
// for each other.
const lockProducts = `SELECT FROM products WHERE id = ANY($1::bigint[]) ORDER BY id FOR NO KEY UPDATE`

// insertGroup runs OrderStatement for every order of group in one pipeline, which
// PostgreSQL runs as one transaction: all of them are stored, or none.
func (in *intake) insertGroup(ctx context.Context, group []*orderJob) error {
	var ids []int64
	for _, j := range group {
		ids = append(ids, j.ids...)
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)

	conn, err := in.db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("insert orders: %w: %w", errGroupNotSent, err)
	}
	defer conn.Close()
	return conn.Raw(func(driverConn any) error {
		c := driverConn.(*stdlib.Conn).Conn()
		b := &pgx.Batch{}
		b.Queue(lockProducts, ids)
		for _, j := range group {
			b.Queue(OrderStatement, j.args()...)
		}
		res := c.SendBatch(ctx, b)
		defer res.Close()
		if _, err := res.Exec(); err != nil {
			return fmt.Errorf("insert orders: lock products: %w", err)
		}
		for _, j := range group {
			rows, err := res.Query()
			if err != nil {
				return fmt.Errorf("insert orders: %w", err)
			}
			j.order, err = scanOrder(rows, j.orderInput)
			rows.Close()
			if err != nil {
				return err
			}
		}
		// The transaction commits at the end of the pipeline, which Close reads.
		if err := res.Close(); err != nil {
			return fmt.Errorf("insert orders: %w", err)
		}
		return nil
	})
}
