-- Drop index "order_user_id" from table: "orders"
DROP INDEX "order_user_id";
-- Create index "order_user_id_id" to table: "orders"
CREATE INDEX "order_user_id_id" ON "orders" ("user_id", "id") INCLUDE ("status");
