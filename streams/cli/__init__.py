"""The ``invoice-sync`` command line."""
