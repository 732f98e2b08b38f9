"""The bench process's own garbage collector, kept out of the timed phases.

The bench process hosts the sandbox, the publisher and the consumer that timestamps
confirmations. Its full collections walk everything the run has accumulated (the
sandbox's stored invoices, the send and confirm timestamps) and grew to 60-200 ms
pauses every ~11 s; each one stalled the sandbox's answers and the timestamps, and
showed up as the pipeline's p99 (docs/performance.md, item 15). Reference
counting still frees what a phase discards; cycles wait for the collection between
phases.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.collect()
