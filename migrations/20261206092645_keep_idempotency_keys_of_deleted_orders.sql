-- Modify "idempotency_keys" table. The new foreign key is added NOT VALID, so that this
-- file, which holds a lock on "orders" that blocks its reads and writes, does not also scan
-- "idempotency_keys" under it; the next file validates it under a lock that blocks neither.
ALTER TABLE "idempotency_keys" DROP CONSTRAINT "idempotency_keys_orders_idempotency_keys", ALTER COLUMN "order_id" DROP NOT NULL, ADD CONSTRAINT "idempotency_keys_orders_idempotency_keys" FOREIGN KEY ("order_id") REFERENCES "orders" ("id") ON UPDATE NO ACTION ON DELETE SET NULL NOT VALID;
