"""Reconciliation: the ledger against the platform's own list of what it stores."""
