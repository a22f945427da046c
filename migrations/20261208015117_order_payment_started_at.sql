-- Modify "orders" table
ALTER TABLE "orders" ADD COLUMN "payment_started_at" timestamptz NULL;
