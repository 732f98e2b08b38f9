"""invoice-sync: every issued invoice reaches the tax platform exactly once, or a person."""
