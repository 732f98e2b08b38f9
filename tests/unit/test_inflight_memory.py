"""What an invoice in flight costs in memory: the worker holds a few thousand at once."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from datetime import UTC, date, datetime

import orjson

from streams.demo.feed import generate
from streams.events import jsonbytes
from streams.events.outputs import confirmed_event, encode
from streams.processor.decode import Decoder
from streams.processor.records import RawRecord
from streams.validation.rules import DomainRules

TODAY = date(2026, 12, 1)


def _traced_bytes(build: Callable[[], object]) -> int:
    """Bytes still allocated by what ``build()`` returned."""
    tracemalloc.start()
    try:
        kept = build()
        size = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    del kept
    return size


def test_a_decoded_invoice_keeps_its_body_and_a_summary_not_the_parsed_tree() -> None:
    items = list(generate(200, today=TODAY, run_id=1, invalid_fraction=0, red_fraction=0,
                          resend_fraction=0))  # fmt: skip
    raws = [RawRecord("issued", 0, i, item.key, item.value) for i, item in enumerate(items)]
    decoder = Decoder(DomainRules(), max_bytes=1 << 20, today=lambda: TODAY)
    per_event = _traced_bytes(lambda: [decoder.decode(raw) for raw in raws]) / len(raws)
    body = sum(len(raw.value) for raw in raws) / len(raws)
    # The whole parsed invoice plus orjson's 4 KB buffer made this ~8.5 KB.
    assert per_event < 3 * body, f"{per_event:.0f} bytes per decoded event"


def test_kept_json_is_sized_to_its_content() -> None:
    objects = [{"n": i, "text": "x" * 300} for i in range(200)]
    length = sum(len(orjson.dumps(o)) for o in objects)
    assert _traced_bytes(lambda: [jsonbytes.dumps(o) for o in objects]) < 1.5 * length
    # What jsonbytes exists for: orjson's own result keeps a far larger buffer.
    assert _traced_bytes(lambda: [orjson.dumps(o) for o in objects]) > 3 * length


def test_output_events_are_right_sized_too() -> None:
    def confirmation(i: int) -> dict[str, object]:
        return confirmed_event(invoice_number=f"{i:08d}", seller_tax_id="91310000MA1K00000X",
                               platform_ref=f"P-{i}", accepted_at=datetime.now(UTC),
                               source_event_id=f"e-{i}", attempts=1)  # fmt: skip

    events = [confirmation(i) for i in range(200)]
    length = sum(len(encode(e)) for e in events)
    assert _traced_bytes(lambda: [encode(e) for e in events]) < 1.5 * length
