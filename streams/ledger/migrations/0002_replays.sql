-- Every re-publication of a dead letter (`invoice-sync dlq replay`): who, when, which DLQ
-- record, for which invoice, and how the publication ended. Append-only.
CREATE TABLE dlq_replays (
    id             bigserial   PRIMARY KEY,
    at             timestamptz NOT NULL DEFAULT now(),
    who            text        NOT NULL,
    dlq_topic      text        NOT NULL,
    dlq_partition  integer     NOT NULL,
    dlq_offset     bigint      NOT NULL,
    invoice_key    text,
    corrected      boolean     NOT NULL DEFAULT false,
    result         text        NOT NULL CHECK (result IN ('published', 'failed')),
    detail         text
);
CREATE INDEX dlq_replays_record ON dlq_replays (dlq_topic, dlq_partition, dlq_offset);
CREATE INDEX dlq_replays_invoice ON dlq_replays (invoice_key);

CREATE FUNCTION dlq_replays_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'dlq_replays is append-only';
END;
$$;
CREATE TRIGGER dlq_replays_append_only
    BEFORE UPDATE OR DELETE ON dlq_replays
    FOR EACH ROW EXECUTE FUNCTION dlq_replays_is_append_only();
