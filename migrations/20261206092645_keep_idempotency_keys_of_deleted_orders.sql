-- Modify "idempotency_keys" table
ALTER TABLE "idempotency_keys" DROP CONSTRAINT "idempotency_keys_orders_idempotency_keys", ALTER COLUMN "order_id" DROP NOT NULL, ADD CONSTRAINT "idempotency_keys_orders_idempotency_keys" FOREIGN KEY ("order_id") REFERENCES "orders" ("id") ON UPDATE NO ACTION ON DELETE SET NULL;
