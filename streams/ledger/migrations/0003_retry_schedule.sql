-- An invoice in long backoff is parked in the ledger instead of holding its batch (and
-- with it the partition): it stays SUBMITTING with the time of its next attempt, and
-- the failures so far count against the retry budget across parks.
ALTER TABLE invoices ADD COLUMN next_attempt_at timestamptz;
ALTER TABLE invoices ADD COLUMN failures integer NOT NULL DEFAULT 0;
CREATE INDEX invoices_retry_due ON invoices (next_attempt_at) WHERE state = 'SUBMITTING';
