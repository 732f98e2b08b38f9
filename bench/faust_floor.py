"""The worker's faust path with nothing behind it: what one event costs the worker
before any work of ours (decoding, validation, ledger, POST, output events).

The child process (``python -m bench.faust_floor COUNT RESULT_FILE``) runs the worker's own
``build_app``: the same app settings, fetch settings and agent loop (a fetch at a
time through ``app.fetched``, a ``RawRecord`` per event, the ack), with a stand-in runtime
whose intake acknowledges each batch at once. Its CPU (all threads, from its first
batch to its last) per event is the floor under the worker's CPU per invoice; with
the signed POST's own CPU it bounds what one worker process can reach on one core.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import faust
import orjson

from streams.observability.metrics import Metrics
from streams.processor.health import Health
from streams.processor.records import RawRecord
from streams.settings import Settings
from streams.worker.app import build_app
from streams.worker.run import share_the_gil, tune_gc, use_uvloop


class _Standin:
    """What ``build_app`` needs of ``Runtime``; its intake acks batches as they come."""

    def __init__(self, count: int, result: Path) -> None:
        self.health = Health()
        self.metrics = Metrics()
        self.ready = asyncio.Event()
        self.ready.set()
        self.intake = self
        self._count = count
        self._result = result
        self._seen = 0
        self._first: tuple[int, float, float] | None = None

    async def admit(self, records: Sequence[RawRecord], on_done: Callable[[], None]) -> None:
        on_done()
        self._seen += len(records)
        if self._first is None:
            # The group join and the first fetch are not part of the loop.
            self._first = (self._seen, time.perf_counter(), time.process_time())
            return
        if self._seen >= self._count:
            seen, started, cpu0 = self._first
            events = self._seen - seen
            result = {
                "count": events,
                "seconds": time.perf_counter() - started,
                "cpu_ms_per_item": (time.process_time() - cpu0) * 1000 / max(1, events),
            }
            # A file, not stdout: faust writes to stdout as it likes.
            self._result.write_bytes(orjson.dumps(result))
            os._exit(0)  # measured; the group and the broker need no goodbye


def _main(argv: list[str]) -> None:
    if len(argv) != 2:
        raise SystemExit("usage: python -m bench.faust_floor COUNT RESULT_FILE  "
                         "(settings: INVOICE_SYNC_*)")  # fmt: skip
    settings = Settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    use_uvloop()  # as the worker does
    runtime = _Standin(int(argv[0]), Path(argv[1]))
    app = build_app(settings, runtime)  # type: ignore[arg-type]
    worker = faust.Worker(app, quiet=True, loglevel="WARNING", redirect_stdouts=False,
                          workdir=str(settings.data_dir))  # fmt: skip
    tune_gc()  # as the worker does
    share_the_gil()
    worker.execute_from_commandline()


if __name__ == "__main__":
    _main(sys.argv[1:])
