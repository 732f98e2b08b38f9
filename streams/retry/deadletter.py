"""Dead-letter records: the original key and value, untouched, plus context headers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

# Header names are part of the ops contract (docs/events.md); `dlq` tooling reads them.
H_REASON_CODE = "reason_code"
H_REASON = "reason"
H_EXCEPTION = "exception_class"
H_SOURCE_TOPIC = "source_topic"
H_SOURCE_PARTITION = "source_partition"
H_SOURCE_OFFSET = "source_offset"
H_ATTEMPTS = "attempts"
H_FIRST_FAILURE = "first_failure_at"
H_LAST_FAILURE = "last_failure_at"
H_WORKER = "worker_id"
H_FIELD = "field"
#: set by a replay: which DLQ offset a re-published record came from
H_REPLAYED_FROM = "replayed_from_dlq_offset"


@dataclass(frozen=True)
class DeadLetter:
    key: bytes | None
    value: bytes
    reason_code: str
    reason: str
    exception_class: str
    source_topic: str
    source_partition: int
    source_offset: int
    attempts: int
    first_failure_at: datetime
    last_failure_at: datetime
    worker_id: str
    field: str | None = None
    #: a replayed record that failed again keeps naming the DLQ record it came from
    replayed_from: bytes | None = None

    def headers(self) -> list[tuple[str, bytes]]:
        pairs = [
            (H_REASON_CODE, self.reason_code),
            (H_REASON, self.reason),
            (H_EXCEPTION, self.exception_class),
            (H_SOURCE_TOPIC, self.source_topic),
            (H_SOURCE_PARTITION, str(self.source_partition)),
            (H_SOURCE_OFFSET, str(self.source_offset)),
            (H_ATTEMPTS, str(self.attempts)),
            (H_FIRST_FAILURE, self.first_failure_at.isoformat()),
            (H_LAST_FAILURE, self.last_failure_at.isoformat()),
            (H_WORKER, self.worker_id),
        ]
        if self.field is not None:
            pairs.append((H_FIELD, self.field))
        encoded = [(name, value.encode()) for name, value in pairs]
        if self.replayed_from is not None:
            encoded.append((H_REPLAYED_FROM, self.replayed_from))
        return encoded
