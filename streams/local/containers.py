"""Apache Kafka and PostgreSQL in containers, with the interface of the embedded ones.

testcontainers' calls block (Docker API over HTTP), so they run in a thread. Its Ryuk
sidecar removes the containers if we die without stopping them.

Kafka uses a plain ``DockerContainer``: testcontainers' ``KafkaContainer`` drives the
Confluent image's start scripts and rejects ``apache/kafka`` tags in KRaft mode. The
official image is configured from the environment; its advertised listener must be
known before start, so we bind a host port we chose rather than a random mapped one.
"""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import TYPE_CHECKING

from streams.local.processes import LocalStackError, free_port
from streams.local.tansu import wait_for_kafka_metadata

if TYPE_CHECKING:
    from testcontainers.community.postgres import PostgresContainer as _PostgresContainer
    from testcontainers.core.container import DockerContainer

KAFKA_IMAGE = "apache/kafka:3.8.0"
POSTGRES_IMAGE = "postgres:16"
_KAFKA_PORT = 9092


class KafkaContainerBroker:
    """``async with KafkaContainerBroker() as broker: broker.bootstrap`` — single-node KRaft."""

    def __init__(self, image: str = KAFKA_IMAGE, *, ready_timeout: float = 120.0) -> None:
        self._image = image
        self._ready_timeout = ready_timeout
        self._container: DockerContainer | None = None
        self._bootstrap: str | None = None

    @property
    def bootstrap(self) -> str:
        if self._bootstrap is None:
            raise LocalStackError("KafkaContainerBroker is not started")
        return self._bootstrap

    async def start(self) -> None:
        if self._container is not None:
            return
        try:
            self._bootstrap = await asyncio.to_thread(self._start_container)
            async with asyncio.timeout(self._ready_timeout):
                await wait_for_kafka_metadata(self._bootstrap)
        except TimeoutError as exc:
            await self.stop()
            raise LocalStackError(
                f"Kafka container not ready after {self._ready_timeout:.0f}s"
            ) from exc
        except BaseException:
            await self.stop()
            raise

    def _start_container(self) -> str:
        # Imported on use: testcontainers pulls in docker-py, dead weight on the embedded path.
        from testcontainers.core.container import DockerContainer

        container = DockerContainer(self._image)
        self._container = container
        host = container.get_docker_client().host()
        host_port = free_port()
        container.with_bind_ports(_KAFKA_PORT, host_port)
        for name, value in {
            "KAFKA_NODE_ID": "1",
            "KAFKA_PROCESS_ROLES": "broker,controller",
            "KAFKA_LISTENERS": f"PLAINTEXT://:{_KAFKA_PORT},CONTROLLER://:9093",
            "KAFKA_ADVERTISED_LISTENERS": f"PLAINTEXT://{host}:{host_port}",
            "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
            "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@localhost:9093",
            "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
            "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
            "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
            "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
        }.items():
            container.with_env(name, value)
        container.start()
        return f"{host}:{host_port}"

    async def stop(self) -> None:
        container, self._container = self._container, None
        self._bootstrap = None
        if container is not None:
            await asyncio.to_thread(container.stop)

    async def __aenter__(self) -> KafkaContainerBroker:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


class PostgresContainer:
    """``async with PostgresContainer() as pg: pg.url`` — a throwaway postgres:16."""

    def __init__(self, database: str = "invoice_sync", *, image: str = POSTGRES_IMAGE) -> None:
        self.database = database
        self._image = image
        self._container: _PostgresContainer | None = None
        self._url: str | None = None

    @property
    def url(self) -> str:
        if self._url is None:
            raise LocalStackError("PostgresContainer is not started")
        return self._url

    async def start(self) -> None:
        if self._container is not None:
            return
        try:
            self._url = await asyncio.to_thread(self._start_container)
        except BaseException:
            await self.stop()
            raise

    def _start_container(self) -> str:
        from testcontainers.community.postgres import PostgresContainer as Container

        container = Container(
            self._image,
            username="postgres",
            password="postgres",
            dbname=self.database,
            driver=None,
        )
        self._container = container
        container.start()
        url: str = container.get_connection_url()
        return url

    async def stop(self) -> None:
        container, self._container = self._container, None
        self._url = None
        if container is not None:
            await asyncio.to_thread(container.stop)

    async def __aenter__(self) -> PostgresContainer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
