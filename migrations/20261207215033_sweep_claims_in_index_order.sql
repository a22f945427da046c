-- The expiry sweep claims stale orders a batch at a time in the order of (created_at, id),
-- each batch after the last order the batch before claimed: this index gives them in that
-- order, reading no order twice and sorting none, however many share a created_at.
-- Drop index "order_status_created_at" from table: "orders"
DROP INDEX "order_status_created_at";
-- Create index "order_status_created_at_id" to table: "orders"
CREATE INDEX "order_status_created_at_id" ON "orders" ("status", "created_at", "id");
