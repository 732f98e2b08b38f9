"""The Python publisher API for billing systems (see ``streams.client.publisher``)."""

from streams.client.publisher import (
    DEFAULT_SOURCE,
    InvoicePublisher,
    PublishedEvent,
    build_event,
    check_event,
    event_key,
    validate_issued,
)

__all__ = [
    "DEFAULT_SOURCE",
    "InvoicePublisher",
    "PublishedEvent",
    "build_event",
    "check_event",
    "event_key",
    "validate_issued",
]
