"""The ledger's batched write statements: one conditional write and one history INSERT
per wave, each over a JSON array of rows so a wave of any size is a single round trip."""

COLUMNS = (
    "seller_tax_id, invoice_number, state, content_hash, kind, issue_date, total_with_tax, "
    "source_event_id, source_partition, source_offset, attempts, platform_ref, accepted_at, "
    "receipt_id, error_code, error_message, error_field, issued_at, created_at, updated_at, "
    "confirmed_at, next_attempt_at, failures, original_invoice_number"
)

# A wave's rows travel as JSON arrays, one per change, in these columns' order
# (``streams/ledger/rows.py`` lays them out): asyncpg checks and encodes every element
# of 25 parallel arrays one by one, which cost the worker ~30 µs of CPU per row; one
# JSON text costs ~8. The payload, binary and a kilobyte, goes beside it as bytea[].
INPUT = (
    ("seller_tax_id", "text"), ("invoice_number", "text"), ("state", "text"),
    ("content_hash", "text"), ("kind", "text"), ("issue_date", "date"),
    ("total_with_tax", "numeric"), ("source_event_id", "text"), ("source_partition", "int"),
    ("source_offset", "bigint"), ("attempts", "int"), ("platform_ref", "text"),
    ("accepted_at", "timestamptz"), ("receipt_id", "text"), ("error_code", "text"),
    ("error_message", "text"), ("error_field", "text"), ("issued_at", "timestamptz"),
    ("confirmed_at", "timestamptz"), ("next_attempt_at", "timestamptz"), ("failures", "int"),
    ("payload_key_id", "text"), ("original_invoice_number", "text"),
    # the state the change expects the row in; NULL: no row yet
    ("previous", "text"),
)  # fmt: skip
HISTORY_INPUT = (
    ("seller_tax_id", "text"), ("invoice_number", "text"), ("from_state", "text"),
    ("to_state", "text"), ("event_id", "text"), ("reason_code", "text"), ("detail", "text"),
    ("worker_id", "text"),
    # false: a history-only note, written whatever happens to the row
    ("checked", "bool"),
)  # fmt: skip


def _fields(columns: tuple[tuple[str, str], ...]) -> str:
    return ", ".join(
        f"r->>{i} AS {name}" if kind == "text" else f"(r->>{i})::{kind} AS {name}"
        for i, (name, kind) in enumerate(columns)
    )


_INPUT_COLUMNS = ", ".join(name for name, _ in INPUT[:-1]) + ", payload"
_HISTORY_COLUMNS = ", ".join(name for name, _ in HISTORY_INPUT[:-1])

# Every change names the state it expects the row in (previous, NULL: no row yet). A
# row in another state, or CONFIRMED, means another writer (a rebalance, the resume
# loop, the receipt poller) got there first: the change is skipped, and the keys it
# skipped come back. History ($3, in the changes' order) is written in the same
# statement, only for keys that changed or were never in question. One statement, so
# atomic without BEGIN and COMMIT: a wave's write is one round trip where a
# transaction of two statements took four.
APPLY = f"""
WITH input AS (
    SELECT {_fields(INPUT)}, p.payload
    FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS e(r, ord)
    JOIN unnest($2::bytea[]) WITH ORDINALITY AS p(payload, ord) USING (ord)
),
inserted AS (
    INSERT INTO invoices ({_INPUT_COLUMNS})
    SELECT {_INPUT_COLUMNS} FROM input WHERE previous IS NULL
    ON CONFLICT (seller_tax_id, invoice_number) DO NOTHING
    RETURNING seller_tax_id, invoice_number
),
updated AS (
    UPDATE invoices AS i SET
        state = n.state,
        content_hash = n.content_hash,
        kind = n.kind,
        issue_date = n.issue_date,
        total_with_tax = n.total_with_tax,
        payload = COALESCE(n.payload, i.payload),
        payload_key_id = CASE WHEN n.payload IS NULL THEN i.payload_key_id
                              ELSE n.payload_key_id END,
        source_event_id = n.source_event_id,
        source_partition = n.source_partition,
        source_offset = n.source_offset,
        attempts = n.attempts,
        platform_ref = n.platform_ref,
        accepted_at = n.accepted_at,
        receipt_id = n.receipt_id,
        error_code = n.error_code,
        error_message = n.error_message,
        error_field = n.error_field,
        issued_at = n.issued_at,
        confirmed_at = n.confirmed_at,
        next_attempt_at = n.next_attempt_at,
        failures = n.failures,
        original_invoice_number = n.original_invoice_number,
        updated_at = now()
    FROM input AS n
    WHERE n.previous IS NOT NULL
      AND i.seller_tax_id = n.seller_tax_id AND i.invoice_number = n.invoice_number
      AND i.state = n.previous AND i.state <> 'CONFIRMED'
    RETURNING i.seller_tax_id, i.invoice_number
),
applied AS (
    SELECT seller_tax_id, invoice_number FROM inserted
    UNION ALL
    SELECT seller_tax_id, invoice_number FROM updated
),
history AS (
    INSERT INTO invoice_history ({_HISTORY_COLUMNS})
    SELECT {_HISTORY_COLUMNS}
    FROM (SELECT {_fields(HISTORY_INPUT)}, ord
          FROM jsonb_array_elements($3::jsonb) WITH ORDINALITY AS e(r, ord)) AS h
    WHERE NOT h.checked
       OR EXISTS (SELECT 1 FROM applied a
                  WHERE a.seller_tax_id = h.seller_tax_id AND a.invoice_number = h.invoice_number)
    ORDER BY h.ord
)
-- The rows that were not written (a lost race, rare) rather than the hundreds that
-- were: the caller wants the former, and every row returned is decoded on its loop.
SELECT n.seller_tax_id, n.invoice_number FROM input n
WHERE NOT EXISTS (SELECT 1 FROM applied a
                  WHERE a.seller_tax_id = n.seller_tax_id AND a.invoice_number = n.invoice_number)
"""

# The absolute total of the CONFIRMED red-letter invoices against each original, 0 for
# none: one statement for a whole wave, each original an index-bound probe of
# invoices_original (the equality implies the index's NOT NULL predicate).
CREDITED = """
SELECT k.s AS seller_tax_id, k.n AS invoice_number,
       COALESCE(sum(abs(i.total_with_tax)), 0) AS credited
FROM unnest($1::text[], $2::text[]) AS k(s, n)
LEFT JOIN invoices i
    ON i.seller_tax_id = k.s AND i.original_invoice_number = k.n AND i.state = 'CONFIRMED'
GROUP BY k.s, k.n
"""

# Per unfinished state: how many, how many parked (waiting for an original or for a
# retry time), and the age of the oldest, from the history entry that moved it into
# its state. Off the partial index of unfinished states: cheap at any ledger size.
UNFINISHED_SUMMARY = """
SELECT i.state, count(*) AS n,
       count(*) FILTER (WHERE i.state = 'RECEIVED' OR i.next_attempt_at > now()) AS parked,
       extract(epoch FROM now() - min(coalesce(e.at, i.updated_at)))::float8 AS oldest
FROM invoices i
LEFT JOIN LATERAL (
    SELECT h.at FROM invoice_history h
    WHERE h.seller_tax_id = i.seller_tax_id
      AND h.invoice_number = i.invoice_number
      AND h.to_state = i.state
      AND h.from_state IS DISTINCT FROM h.to_state
    ORDER BY h.id DESC LIMIT 1) e ON true
WHERE i.state IN ('RECEIVED', 'SUBMITTING', 'PENDING')
GROUP BY i.state
"""

# A full scan (seconds at 5M rows): run rarely.
FINAL_COUNTS = """
SELECT state, count(*) AS n FROM invoices WHERE state IN ('CONFIRMED', 'FAILED') GROUP BY state
"""
