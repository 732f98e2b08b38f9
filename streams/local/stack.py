"""One call for a broker and a database: containers when asked for and Docker answers,
else the embedded stack. Both are started together and stopped together, whatever
happens in between."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from streams.local.containers import KafkaContainerBroker, PostgresContainer
from streams.local.docker import docker_available
from streams.local.postgres import EmbeddedPostgres
from streams.local.tansu import TansuBroker


class Broker(Protocol):
    @property
    def bootstrap(self) -> str: ...
    async def start(self) -> None: ...
    async def stop(self) -> None: ...


class Database(Protocol):
    @property
    def url(self) -> str: ...
    async def start(self) -> None: ...
    async def stop(self) -> None: ...


@dataclass(frozen=True)
class LocalStack:
    bootstrap: str
    database_url: str
    kind: Literal["containers", "embedded"]
    #: our child processes (embedded only), for tests that check nothing outlives us
    pids: tuple[int, ...] = ()


@asynccontextmanager
async def local_stack(
    data_dir: Path, *, prefer_containers: bool, database: str = "invoice_sync"
) -> AsyncIterator[LocalStack]:
    """Kafka + PostgreSQL until the block exits.

    Embedded layout under ``data_dir``: ``postgres/`` (kept between runs) and
    ``logs/tansu.log``. Containers keep nothing.
    """
    use_containers = prefer_containers and await asyncio.to_thread(docker_available)
    broker: Broker
    db: Database
    if use_containers:
        broker, db = KafkaContainerBroker(), PostgresContainer(database)
    else:
        broker = TansuBroker(log_path=data_dir / "logs" / "tansu.log")
        db = EmbeddedPostgres(data_dir / "postgres", database)
    async with AsyncExitStack() as stack:
        # Registered before starting: stop() is safe on a service that never started.
        stack.push_async_callback(db.stop)
        stack.push_async_callback(broker.stop)
        # Together, since a Kafka container takes many seconds; gathered without
        # cancelling the sibling, so neither is still starting while we stop both.
        results = await asyncio.gather(broker.start(), db.start(), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        pids = tuple(
            pid
            for service in (broker, db)
            if isinstance(service, TansuBroker | EmbeddedPostgres)
            and (pid := service.pid) is not None
        )
        yield LocalStack(
            bootstrap=broker.bootstrap,
            database_url=db.url,
            kind="containers" if use_containers else "embedded",
            pids=pids,
        )
