"""Starting a worker process: topics first, then faust with our runtime beside it."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import sys
import threading
from typing import Any

import faust

from streams.kafka.security import aiokafka_options
from streams.kafka.topics import ensure_topics
from streams.observability.logs import configure_logging
from streams.settings import Settings
from streams.worker.app import build_app
from streams.worker.runtime import Runtime

log = logging.getLogger(__name__)


async def prepare(settings: Settings) -> None:
    """Create missing topics. Existing topics, whatever their partition count, are used
    as they are: ops may have created them with their own settings."""
    await ensure_topics(
        settings.kafka_bootstrap,
        settings.all_topics,
        partitions=settings.topic_partitions,
        replication=settings.topic_replication,
        client_options=aiokafka_options(settings),
    )


class _Worker(faust.Worker):
    """faust's worker with our logging: JSON lines (or human lines on a terminal), buyer
    data masked, and the configured secrets never printed."""

    def __init__(self, *args: Any, settings: Settings, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._settings = settings

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        # mode replaces the root handlers while starting, so this is the one place our
        # setup sticks.
        s = self._settings
        configure_logging(s.log_level, s.log_json, secrets=s.secret_values())

    def _schedule_shutdown(self, signal: signal.Signals) -> None:
        # A stop that cannot finish (the broker or the database already gone: aiokafka
        # then waits on a group coordinator that will never answer) must not keep the
        # process alive. Exiting loses nothing: offsets are committed only for finished
        # batches, and the rest is read again by the next worker.
        grace = self._settings.shutdown_grace_seconds
        timer = threading.Timer(grace, _exit_now, args=(grace,))
        timer.daemon = True
        timer.start()
        super()._schedule_shutdown(signal)


def _exit_now(grace: float) -> None:
    log.error("stopping took longer than %.0fs (INVOICE_SYNC_SHUTDOWN_GRACE_SECONDS): "
              "exiting now; uncommitted work is read again on restart", grace)  # fmt: skip
    logging.shutdown()
    os._exit(1)


def run_worker(settings: Settings) -> None:
    """Run until SIGINT/SIGTERM; faust drains the batch in flight and commits on the way out."""
    # faust chdirs into its workdir before logging is set up, and mode's exit handler
    # swallows that error silently: make sure it exists.
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    use_uvloop()
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    loop.run_until_complete(prepare(settings))
    runtime = Runtime(settings, loop=loop)
    app = build_app(settings, runtime)
    worker = _Worker(
        app,
        runtime,
        settings=settings,
        loglevel=settings.log_level,
        # The spinner would set the root logger to DEBUG (+25% CPU, embedded-stack.md).
        quiet=True,
        redirect_stdouts=False,
        loop=loop,
        workdir=str(settings.data_dir),
    )
    tune_gc()
    share_the_gil()
    worker.execute_from_commandline()


def use_uvloop() -> None:
    """Run the worker's event loops on uvloop: the main one and the one faust's consumer
    thread makes for itself (through the policy). The worker spends a fifth of its CPU
    in the event loop and its transports (aiohttp, asyncpg, aiokafka); uvloop's are
    compiled, and worker CPU per invoice fell ~20 % with it (docs/performance.md).
    uvloop is not built for Windows, where asyncio's own loop stays."""
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def tune_gc() -> None:
    """The cyclic collector cost the worker 13 % of its CPU on a backlog (4.9 s of
    38.8 s), nearly all in full collections that walk every object made at import
    (faust, aiohttp, asyncpg, ...). Those are frozen out of the collector, and the
    youngest generation is collected after 50,000 net allocations instead of 700:
    reference counting frees nearly all the hot path allocates, and cycles are still
    collected. At 20,000 the 512 requests in flight kept each young collection at
    ~16 ms, 0.5 s of a 60k backlog's 20 s of CPU; at 50,000 it is 0.1-0.2 s, with
    the same peak RSS (docs/performance.md, item 33)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 10, 10)


def share_the_gil() -> None:
    """Let the worker's other threads have the GIL within 1 ms instead of 5.

    pyreqwest's runtime thread needs the GIL to hand each platform answer back, and
    faust's consumer thread to hand each fetch over. On a backlog the event loop's
    thread holds the GIL for long stretches, and a thread asking for it waits until
    the loop blocks or the switch interval forces it out: up to 5 ms by default, with
    the answers and the fetch waiting behind it. At 1 ms, seven alternating pairs on
    60k backlogs all came out faster, by 5-18 % (mean ~10 %), at the same or less CPU
    per invoice; 0.5 ms was no better than 1 (docs/performance.md, item 35)."""
    sys.setswitchinterval(0.001)
