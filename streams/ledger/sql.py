"""The ledger's batched write statements: one UPSERT and one history INSERT per wave,
each over arrays (``unnest``) so a wave of any size is a single round trip."""

COLUMNS = (
    "seller_tax_id, invoice_number, state, content_hash, kind, issue_date, total_with_tax, "
    "source_event_id, source_partition, source_offset, attempts, platform_ref, accepted_at, "
    "receipt_id, error_code, error_message, error_field, issued_at, created_at, updated_at, "
    "confirmed_at, next_attempt_at, failures"
)

UPSERT = """
INSERT INTO invoices (seller_tax_id, invoice_number, state, content_hash, kind, issue_date,
    total_with_tax, payload, source_event_id, source_partition, source_offset, attempts,
    platform_ref, accepted_at, receipt_id, error_code, error_message, error_field, issued_at,
    confirmed_at, next_attempt_at, failures, payload_key_id)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::date[],
    $7::numeric[], $8::bytea[], $9::text[], $10::int[], $11::bigint[], $12::int[], $13::text[],
    $14::timestamptz[], $15::text[], $16::text[], $17::text[], $18::text[], $19::timestamptz[],
    $20::timestamptz[], $21::timestamptz[], $22::int[], $23::text[])
ON CONFLICT (seller_tax_id, invoice_number) DO UPDATE SET
    state = EXCLUDED.state,
    content_hash = EXCLUDED.content_hash,
    kind = EXCLUDED.kind,
    issue_date = EXCLUDED.issue_date,
    total_with_tax = EXCLUDED.total_with_tax,
    payload = COALESCE(EXCLUDED.payload, invoices.payload),
    payload_key_id = CASE WHEN EXCLUDED.payload IS NULL THEN invoices.payload_key_id
                          ELSE EXCLUDED.payload_key_id END,
    source_event_id = EXCLUDED.source_event_id,
    source_partition = EXCLUDED.source_partition,
    source_offset = EXCLUDED.source_offset,
    attempts = EXCLUDED.attempts,
    platform_ref = EXCLUDED.platform_ref,
    accepted_at = EXCLUDED.accepted_at,
    receipt_id = EXCLUDED.receipt_id,
    error_code = EXCLUDED.error_code,
    error_message = EXCLUDED.error_message,
    error_field = EXCLUDED.error_field,
    issued_at = EXCLUDED.issued_at,
    confirmed_at = EXCLUDED.confirmed_at,
    next_attempt_at = EXCLUDED.next_attempt_at,
    failures = EXCLUDED.failures,
    updated_at = now()
"""

HISTORY_INSERT = """
INSERT INTO invoice_history (seller_tax_id, invoice_number, from_state, to_state, event_id,
    reason_code, detail, worker_id)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
    $7::text[], $8::text[])
"""
