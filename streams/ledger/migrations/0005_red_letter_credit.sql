-- A red-letter invoice may not exceed what remains of its original: the processor sums
-- the confirmed reds of each original before sending another one. total_with_tax (signed:
-- negative for a red) is already stored; the original's number is what was missing.
-- Only red-letter rows carry it, so the partial index holds just them.
-- Rows written before this migration keep NULL: reds confirmed earlier are not counted
-- here, and the platform's own check (422 RED_EXCEEDS_ORIGINAL) still catches them.
ALTER TABLE invoices ADD COLUMN original_invoice_number text;
CREATE INDEX invoices_original ON invoices (seller_tax_id, original_invoice_number)
    WHERE original_invoice_number IS NOT NULL;
