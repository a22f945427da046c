-- Drop index "notification_order_id" from table: "notifications"
DROP INDEX "notification_order_id";
