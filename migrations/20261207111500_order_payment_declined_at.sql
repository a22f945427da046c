-- Modify "orders" table
ALTER TABLE "orders" ADD COLUMN "payment_declined_at" timestamptz NULL;
