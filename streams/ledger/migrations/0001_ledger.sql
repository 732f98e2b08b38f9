-- One row per invoice identity (seller tax id + invoice number): where it is now.
CREATE TABLE invoices (
    seller_tax_id    text        NOT NULL,
    invoice_number   text        NOT NULL,
    state            text        NOT NULL
        CHECK (state IN ('RECEIVED', 'SUBMITTING', 'PENDING', 'CONFIRMED', 'FAILED')),
    content_hash     text        NOT NULL,
    kind             text,
    issue_date       date,
    total_with_tax   numeric(20, 2),
    -- the issued event exactly as received: replay and dead-lettering need the original bytes
    payload          bytea,
    source_partition integer,
    source_offset    bigint,
    source_event_id  text,
    attempts         integer     NOT NULL DEFAULT 0,
    platform_ref     text,
    accepted_at      timestamptz,
    receipt_id       text,
    error_code       text,
    error_message    text,
    error_field      text,
    issued_at        timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    confirmed_at     timestamptz,
    PRIMARY KEY (seller_tax_id, invoice_number)
);

-- "History of one seller across months": index-bound range scans.
CREATE INDEX invoices_seller_issue_date ON invoices (seller_tax_id, issue_date);
-- Lookups by number alone (ops rarely know the seller).
CREATE INDEX invoices_number ON invoices (invoice_number);
-- The receipt poller and the stuck-invoice sweep only ever look at unfinished rows.
CREATE INDEX invoices_unfinished ON invoices (state, updated_at)
    WHERE state IN ('RECEIVED', 'SUBMITTING', 'PENDING');

-- Append-only: every state change, so "what happened to invoice X" has an exact answer.
CREATE TABLE invoice_history (
    id               bigserial   PRIMARY KEY,
    seller_tax_id    text        NOT NULL,
    invoice_number   text        NOT NULL,
    at               timestamptz NOT NULL DEFAULT now(),
    from_state       text,
    to_state         text        NOT NULL,
    event_id         text,
    reason_code      text,
    detail           text,
    worker_id        text
);
CREATE INDEX invoice_history_invoice ON invoice_history (seller_tax_id, invoice_number, id);

CREATE FUNCTION invoice_history_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'invoice_history is append-only';
END;
$$;
CREATE TRIGGER invoice_history_append_only
    BEFORE UPDATE OR DELETE ON invoice_history
    FOR EACH ROW EXECUTE FUNCTION invoice_history_is_append_only();
