"""Dead-letter tooling: read the DLQ topic (``reader``) and replay records (``replay``)."""

from streams.dlq.reader import DeadLetterRecord, DlqFilter, Position, parse_position, read_dlq
from streams.dlq.replay import Replay, ReplayEntry, ReplayLog, corrected_payload, replay_records

__all__ = [
    "DeadLetterRecord",
    "DlqFilter",
    "Position",
    "Replay",
    "ReplayEntry",
    "ReplayLog",
    "corrected_payload",
    "parse_position",
    "read_dlq",
    "replay_records",
]
