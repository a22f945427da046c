-- Create index "order_status_id" to table: "orders"
CREATE INDEX "order_status_id" ON "orders" ("status", "id");
