-- Modify "idempotency_keys" table
ALTER TABLE "idempotency_keys" ADD CONSTRAINT "idempotency_keys_key_length" CHECK ((char_length((key)::text) >= 1) AND (char_length((key)::text) <= 255));
