-- Validate the foreign key that the previous file added NOT VALID: this scans
-- "idempotency_keys" under locks that let orders and keys be read and written meanwhile.
ALTER TABLE "idempotency_keys" VALIDATE CONSTRAINT "idempotency_keys_orders_idempotency_keys";
