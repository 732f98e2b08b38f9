"""Who may see and change what: API tokens, the audit trail, payload encryption."""
