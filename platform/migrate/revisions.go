package migrate

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"ariga.io/atlas/sql/migrate"
)

// The table where the Atlas CLI records applied migrations; sharing it lets `atlas migrate
// status` and `atlas migrate apply` work on a database that orderflow migrated, and back.
const (
	revisionSchema = "atlas_schema_revisions"
	revisionTable  = "atlas_schema_revisions"
	// cloudIdentifier is a bookkeeping row the CLI keeps in the same table; it is no revision.
	cloudIdentifier = ".atlas_cloud_identifier"
	// operatorVersion is written to each revision, where the CLI writes its own version.
	operatorVersion = "orderflow"
)

// createRevisions is the CLI's definition of its revisions table.
const createRevisions = `CREATE SCHEMA IF NOT EXISTS "atlas_schema_revisions";
CREATE TABLE IF NOT EXISTS "atlas_schema_revisions"."atlas_schema_revisions" (
  "version" character varying NOT NULL,
  "description" character varying NOT NULL,
  "type" bigint NOT NULL DEFAULT 2,
  "applied" bigint NOT NULL DEFAULT 0,
  "total" bigint NOT NULL DEFAULT 0,
  "executed_at" timestamptz NOT NULL,
  "execution_time" bigint NOT NULL,
  "error" text NULL,
  "error_stmt" text NULL,
  "hash" character varying NOT NULL,
  "partial_hashes" jsonb NULL,
  "operator_version" character varying NOT NULL,
  PRIMARY KEY ("version")
)`

const revisionColumns = `version, description, type, applied, total, executed_at, execution_time,
  coalesce(error, ''), coalesce(error_stmt, ''), hash, partial_hashes, operator_version`

// execQuerier is what the revisions need of a *sql.DB or *sql.Tx.
type execQuerier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// revisions implements migrate.RevisionReadWriter on the CLI's revisions table.
type revisions struct {
	db execQuerier
}

var _ migrate.RevisionReadWriter = revisions{}

// readRevisions is revisions whose ReadRevisions answers revs, read already, instead of
// reading the table again.
type readRevisions struct {
	revisions
	revs []*migrate.Revision
}

// ReadRevisions returns the revisions read already.
func (r readRevisions) ReadRevisions(context.Context) ([]*migrate.Revision, error) {
	return r.revs, nil
}

// createRevisionTable creates the revisions table if it does not exist yet.
func createRevisionTable(ctx context.Context, db execQuerier) error {
	if _, err := db.ExecContext(ctx, createRevisions); err != nil {
		return fmt.Errorf("create revisions table: %w", err)
	}
	return nil
}

// Ident returns the revisions table.
func (revisions) Ident() *migrate.TableIdent {
	return &migrate.TableIdent{Name: revisionTable, Schema: revisionSchema}
}

// ReadRevisions returns all revisions, oldest version first; none before the table exists.
func (r revisions) ReadRevisions(ctx context.Context) ([]*migrate.Revision, error) {
	if ok, err := r.exists(ctx); !ok || err != nil {
		return nil, err
	}
	rows, err := r.db.QueryContext(ctx, `SELECT `+revisionColumns+`
FROM "atlas_schema_revisions"."atlas_schema_revisions" WHERE version <> $1 ORDER BY version`, cloudIdentifier)
	if err != nil {
		return nil, fmt.Errorf("read revisions: %w", err)
	}
	defer rows.Close()
	var revs []*migrate.Revision
	for rows.Next() {
		rev, err := scanRevision(rows)
		if err != nil {
			return nil, err
		}
		revs = append(revs, rev)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read revisions: %w", err)
	}
	return revs, nil
}

// ReadRevision returns the revision of one version, or migrate.ErrRevisionNotExist.
func (r revisions) ReadRevision(ctx context.Context, version string) (*migrate.Revision, error) {
	if ok, err := r.exists(ctx); err != nil {
		return nil, err
	} else if !ok {
		return nil, migrate.ErrRevisionNotExist
	}
	rev, err := scanRevision(r.db.QueryRowContext(ctx, `SELECT `+revisionColumns+`
FROM "atlas_schema_revisions"."atlas_schema_revisions" WHERE version = $1`, version))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, migrate.ErrRevisionNotExist
	}
	return rev, err
}

// WriteRevision inserts or updates a revision.
func (r revisions) WriteRevision(ctx context.Context, rev *migrate.Revision) error {
	partial := "null" // JSON null when there are none, as the CLI stores them
	if len(rev.PartialHashes) > 0 {
		b, err := json.Marshal(rev.PartialHashes)
		if err != nil {
			return fmt.Errorf("encode partial hashes: %w", err)
		}
		partial = string(b)
	}
	_, err := r.db.ExecContext(ctx, `INSERT INTO "atlas_schema_revisions"."atlas_schema_revisions"
  (version, description, type, applied, total, executed_at, execution_time, error, error_stmt, hash, partial_hashes, operator_version)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::jsonb, $12)
ON CONFLICT (version) DO UPDATE SET
  description = EXCLUDED.description, type = EXCLUDED.type, applied = EXCLUDED.applied,
  total = EXCLUDED.total, executed_at = EXCLUDED.executed_at, execution_time = EXCLUDED.execution_time,
  error = EXCLUDED.error, error_stmt = EXCLUDED.error_stmt, hash = EXCLUDED.hash,
  partial_hashes = EXCLUDED.partial_hashes, operator_version = EXCLUDED.operator_version`,
		rev.Version, rev.Description, int64(rev.Type), rev.Applied, rev.Total, rev.ExecutedAt,
		int64(rev.ExecutionTime), rev.Error, rev.ErrorStmt, rev.Hash, partial, rev.OperatorVersion)
	if err != nil {
		return fmt.Errorf("write revision %s: %w", rev.Version, err)
	}
	return nil
}

// DeleteRevision deletes the revision of one version.
func (r revisions) DeleteRevision(ctx context.Context, version string) error {
	_, err := r.db.ExecContext(ctx, `DELETE FROM "atlas_schema_revisions"."atlas_schema_revisions" WHERE version = $1`, version)
	if err != nil {
		return fmt.Errorf("delete revision %s: %w", version, err)
	}
	return nil
}

// exists reports whether the revisions table has been created.
func (r revisions) exists(ctx context.Context) (bool, error) {
	var ok bool
	err := r.db.QueryRowContext(ctx,
		`SELECT to_regclass('"atlas_schema_revisions"."atlas_schema_revisions"') IS NOT NULL`).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("look up revisions table: %w", err)
	}
	return ok, nil
}

func scanRevision(row interface{ Scan(...any) error }) (*migrate.Revision, error) {
	var (
		rev      migrate.Revision
		typ      int64
		execTime int64
		partial  []byte
	)
	err := row.Scan(&rev.Version, &rev.Description, &typ, &rev.Applied, &rev.Total, &rev.ExecutedAt,
		&execTime, &rev.Error, &rev.ErrorStmt, &rev.Hash, &partial, &rev.OperatorVersion)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("scan revision: %w", err)
	}
	rev.Type = migrate.RevisionType(typ)
	rev.ExecutionTime = time.Duration(execTime)
	if len(partial) > 0 && string(partial) != "null" {
		if err := json.Unmarshal(partial, &rev.PartialHashes); err != nil {
			return nil, fmt.Errorf("decode partial hashes of %s: %w", rev.Version, err)
		}
	}
	return &rev, nil
}
