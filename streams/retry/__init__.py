"""Retry timing and the dead-letter record format."""
