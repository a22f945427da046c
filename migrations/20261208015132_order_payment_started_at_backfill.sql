-- The orders in processing when this runs were claimed by the worker before it recorded its
-- claims, or moved there by an administrator, which it cannot tell apart now: all of them
-- count as claimed, so that a redelivery resumes their payments as it did before. A file of
-- its own, so that the update takes row locks only, not the lock that adding the column held.
UPDATE "orders" SET "payment_started_at" = "updated_at" WHERE "status" = 'processing' AND "payment_started_at" IS NULL;
