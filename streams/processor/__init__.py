"""The stream processor: validate, record, deliver, emit. It knows the ledger and the
platform only through the narrow ports in ``ports.py``."""
