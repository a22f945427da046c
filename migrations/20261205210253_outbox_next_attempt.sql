-- Modify "outbox" table
ALTER TABLE "outbox" ADD COLUMN "next_attempt_at" timestamptz NULL;
