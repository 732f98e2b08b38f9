"""The worker's HTTP API: health and invoice lookups."""
