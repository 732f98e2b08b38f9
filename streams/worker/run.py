"""Starting a worker process: topics first, then faust with our runtime beside it."""

from __future__ import annotations

import asyncio
import logging

import faust

from streams.kafka.topics import ensure_topics
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
    )


def run_worker(settings: Settings) -> None:
    """Run until SIGINT/SIGTERM; faust drains the batch in flight and commits on the way out."""
    # faust chdirs into its workdir before logging is set up, and mode's exit handler
    # swallows that error silently: make sure it exists.
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    loop.run_until_complete(prepare(settings))
    runtime = Runtime(settings, loop=loop)
    app = build_app(settings, runtime)
    worker = faust.Worker(
        app,
        runtime,
        loglevel=settings.log_level,
        # The spinner would set the root logger to DEBUG (+25% CPU, embedded-stack.md).
        quiet=True,
        redirect_stdouts=False,
        loop=loop,
        workdir=str(settings.data_dir),
    )
    worker.execute_from_commandline()
