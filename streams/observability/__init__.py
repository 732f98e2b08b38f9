"""What the worker tells operators: Prometheus metrics and structured, masked logs."""

from streams.observability.logs import configure_logging, redact
from streams.observability.metrics import Metrics

__all__ = ["Metrics", "configure_logging", "redact"]
