-- Modify "users" table. The column's default is a constant, which PostgreSQL keeps in the
-- catalog instead of writing it into every row, and its check is added NOT VALID: this file
-- holds a lock on "users" that blocks its reads and writes, and neither rewrites nor scans
-- the table under it. The next file validates the check under a lock that blocks neither.
ALTER TABLE "users" ADD COLUMN "token_version" bigint NOT NULL DEFAULT 0, ADD CONSTRAINT "users_token_version_non_negative" CHECK (token_version >= 0) NOT VALID;
