-- The relays are woken from within their own process when a transaction that wrote events
-- commits (outbox.Wake), and poll for anything else. NOTIFY made every such commit take one
-- database-wide lock and hold it through its WAL flush, so that order intakes committed one
-- at a time and one slow flush stalled them all.
DROP TRIGGER "outbox_notify_insert" ON "outbox";
DROP FUNCTION "outbox_notify"();
