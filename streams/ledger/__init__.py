"""The ledger: every invoice's state and history in PostgreSQL."""
