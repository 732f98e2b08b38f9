"""A worker started under a common 1,024 open-file soft limit raises it for its sockets."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from streams.kafka.topics import ensure_topics
from streams.local.processes import free_port
from streams.local.worker import WorkerProcess
from streams.sandbox.faults import Faults
from streams.sandbox.server import SandboxServer
from streams.settings import Settings
from streams.worker.limits import UNLIMITED, open_files_needed

from .conftest import APP_ID, APP_SECRET, Services, worker_env

resource = pytest.importorskip("resource")
pytestmark = pytest.mark.integration
COMMON_SOFT_LIMIT = 1024


@contextmanager
def soft_open_file_limit(limit: int) -> Iterator[None]:
    """This process's soft limit lowered, so that the child it starts inherits it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def soft_limit_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError(f"no open-file limit in /proc/{pid}/limits")


async def test_a_worker_raises_a_low_soft_limit_to_what_its_concurrency_needs(
    services: Services,
) -> None:
    need = open_files_needed(Settings())
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != UNLIMITED and hard < need:
        pytest.skip(f"the hard open-file limit here ({hard}) is below the need ({need})")
    if len(os.listdir("/proc/self/fd")) > COMMON_SOFT_LIMIT // 2:
        pytest.skip("this test process holds too many files to lower its own limit")
    prefix = f"it-limits-{uuid.uuid4().hex[:8]}."
    async with SandboxServer(apps={APP_ID: APP_SECRET}, faults=Faults()) as sandbox:
        env = {
            **worker_env(services, sandbox.url, prefix, partitions=1),
            "INVOICE_SYNC_WORKER_ID": f"{prefix}worker",
        }
        topics = [f"{prefix}invoices.{t}" for t in ("issued", "confirmed", "failed", "dlq")]
        await ensure_topics(services.bootstrap, topics, partitions=1, replication=1)
        worker = WorkerProcess(
            env, http_port=free_port(), log_path=services.data_dir / f"{prefix}worker.log"
        )
        try:
            with soft_open_file_limit(COMMON_SOFT_LIMIT):
                await worker.start()
            assert worker.pid is not None
            assert soft_limit_of(worker.pid) == need
        finally:
            await worker.stop()
