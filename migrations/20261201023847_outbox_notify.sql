-- Wake the outbox relays when events are inserted. Statement-level, so that a batch insert
-- (say 500 expired orders) sends one notification, not one per row. NOTIFY is delivered at
-- commit and dropped on rollback, so relays wake only for committed events; identical
-- notifications within one transaction are folded into one.
CREATE FUNCTION "outbox_notify"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NOTIFY orderflow_outbox;
  RETURN NULL;
END;
$$;
-- Create trigger "outbox_notify_insert" on table: "outbox"
CREATE TRIGGER "outbox_notify_insert" AFTER INSERT ON "outbox" FOR EACH STATEMENT EXECUTE FUNCTION "outbox_notify"();
