"""Domain rules of invoice-domain.md, checked after the schema and before the platform.

``validate.validate_invoice`` is the entry point; the other modules hold the rules
of one concern each (tax ids, invoice numbers, money) and are usable on their own.
"""
