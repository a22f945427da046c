package migrate

import (
	"context"
	"database/sql"
	"io/fs"
	"log/slog"
	"time"
)

// ApplyFSWaiting is ApplyFS waiting at most lockWait, instead of a minute, for another
// process's migration lock.
func ApplyFSWaiting(ctx context.Context, db *sql.DB, fsys fs.FS, log *slog.Logger, lockWait time.Duration) (int, error) {
	return applyFS(ctx, db, fsys, log, lockWait)
}
