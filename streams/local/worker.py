"""A worker as a real child process (``python -m streams worker``), for the local stack
and the integration tests: started with its settings, ready when ``/readyz`` says so."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Mapping
from pathlib import Path

import aiohttp

from streams.local.processes import spawn_child


class WorkerProcess:
    def __init__(self, env: Mapping[str, str], *, http_port: int, log_path: Path) -> None:
        self._env = dict(env)
        self.http_port = http_port
        self._log_path = log_path
        self.process: asyncio.subprocess.Process | None = None

    @property
    def log_path(self) -> Path:
        return self._log_path

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    async def start(self, ready_timeout: float = 90.0, *, require_ready: bool = True) -> None:
        """Returns once the worker is in its consumer group and, with ``require_ready``,
        ready (``/readyz`` 200); without it, an unready worker (bad credentials) will do."""
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        # glibc gives each thread arenas of its own (faust consumes in a thread); two
        # keep the worker's memory from creeping up with fragmentation on long runs.
        env = {"MALLOC_ARENA_MAX": "2", **os.environ, **self._env,
               "INVOICE_SYNC_HTTP_PORT": str(self.http_port)}  # fmt: skip
        self.process = await spawn_child(
            [sys.executable, "-m", "streams", "worker"], env=env, log_path=self._log_path
        )
        await self._wait_ready(ready_timeout, require_ready)

    async def _wait_ready(self, timeout: float, require_ready: bool) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        url = f"http://127.0.0.1:{self.http_port}/readyz"
        async with aiohttp.ClientSession() as session:
            while loop.time() < deadline:
                assert self.process is not None
                if self.process.returncode is not None:
                    raise RuntimeError(
                        f"worker exited with {self.process.returncode}:\n{self.log_tail()}"
                    )
                try:
                    async with session.get(url, timeout=aiohttp.ClientTimeout(total=1)) as resp:
                        # Ready and in the group (joining can take seconds); a member
                        # may get no partition when there are more members than those.
                        body = await resp.json()
                        healthy = resp.status == 200 or not require_ready
                        if healthy and body["assigned_partitions"] is not None:
                            return
                except (aiohttp.ClientError, TimeoutError):
                    pass
                await asyncio.sleep(0.2)
        raise TimeoutError(f"worker not ready after {timeout:.0f}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self._log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    async def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM (the worker drains its batch and commits), SIGKILL if it hangs."""
        process, self.process = self.process, None
        if process is None or process.returncode is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), timeout)
        except TimeoutError:
            process.kill()
            await process.wait()

    def kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()

    async def __aenter__(self) -> WorkerProcess:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()
