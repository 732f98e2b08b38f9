"""Following the output topics the way a finance system would, to see what happened."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

import orjson
from aiokafka import AIOKafkaConsumer


@dataclass
class Outcomes:
    """Everything seen on ``invoices.confirmed``, ``invoices.failed`` and the DLQ, by key."""

    confirmed: dict[bytes, list[dict[str, object]]] = field(default_factory=dict)
    failed: dict[bytes, list[dict[str, object]]] = field(default_factory=dict)
    #: the headers of every dead letter, by key
    dead_letters: dict[bytes, list[dict[str, bytes]]] = field(default_factory=dict)
    #: when the first confirmation of each key arrived (its ``occurred_at``)
    confirmed_at: dict[bytes, datetime] = field(default_factory=dict)

    def settled(self, key: bytes) -> bool:
        return key in self.confirmed or key in self.failed

    def failure_codes(self, keys: set[bytes]) -> Counter[str]:
        return Counter(str(self.failed[k][-1]["reason_code"]) for k in keys if k in self.failed)

    def dead_lettered(self, keys: set[bytes] | None = None) -> int:
        """Distinct records dead-lettered: a redelivered failure is dead-lettered again
        (at-least-once), and its source partition and offset tell the repeats apart."""
        return len({
            (h.get("source_partition"), h.get("source_offset"))
            for key, letters in self.dead_letters.items() if keys is None or key in keys
            for h in letters
        })  # fmt: skip

    def dead_letter_records(self) -> int:
        return sum(len(letters) for letters in self.dead_letters.values())


class OutcomeTracker:
    """Consumes the three output topics from the beginning into ``outcomes``."""

    def __init__(self, bootstrap: str, confirmed: str, failed: str, dlq: str) -> None:
        self._topics = {confirmed: "confirmed", failed: "failed", dlq: "dlq"}
        self._consumer = AIOKafkaConsumer(
            *self._topics,
            bootstrap_servers=bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        self.outcomes = Outcomes()
        self.changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._consumer.start()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self._consumer.stop()

    async def _run(self) -> None:
        out = self.outcomes
        while True:
            batches = await self._consumer.getmany(timeout_ms=200)
            for tp, messages in batches.items():
                kind = self._topics[tp.topic]
                for message in messages:
                    key = message.key or b""
                    if kind == "dlq":
                        out.dead_letters.setdefault(key, []).append(dict(message.headers or ()))
                        continue
                    event = orjson.loads(message.value)
                    if kind == "confirmed":
                        out.confirmed.setdefault(key, []).append(event)
                        out.confirmed_at.setdefault(
                            key, datetime.fromisoformat(str(event["occurred_at"]))
                        )
                    else:
                        out.failed.setdefault(key, []).append(event)
            if batches:
                self.changed.set()
