-- Modify "orders" table
ALTER TABLE "orders" ADD COLUMN "processing_by_admin_at" timestamptz NULL;
