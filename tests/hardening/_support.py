"""Helpers for the hardening tests: a session on a private loop thread, and process probes."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar, get_args

import pytest

from codemode import CodeMode, ExecResult, TextItem, to_model
from codemode._output import model_items
from codemode.formats import Api

T = TypeVar("T")

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="counts native threads and RSS through /proc"
)


def engine_pids() -> list[int]:
    """The shared engine worker processes (none in-process, or before the first session)."""
    from tests.conftest import ISOLATION

    from codemode import engines

    if ISOLATION != "process":
        return []
    return engines.shared("process").worker_pids()  # type: ignore[attr-defined,no-any-return]


async def engines_settled(timeout: float = 30.0) -> None:
    """Wait until the engine workers (the spare too) are up and their pools full, so thread
    counts taken now are a steady baseline; a no-op in-process."""
    from tests.conftest import ISOLATION

    from codemode import engines

    if ISOLATION == "process":
        pool = engines.shared("process").pool  # type: ignore[attr-defined]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            workers = pool.workers()
            if len(workers) >= 2 and all(w.ready for w in workers):
                break
            await asyncio.sleep(0.02)
    await asyncio.sleep(0.3)  # pools refill in the background


async def spinning_engine_threads(samples: int = 20, gap_s: float = 2.0) -> int:
    """Threads of the engine workers found running in nearly every sample of two windows `gap_s`
    apart (a script still spinning runs on; pools refilling after a burst stop); thread states
    rather than CPU time, so a loaded machine does not matter."""
    first = await _running_threads(samples)
    if not first:
        return 0
    await asyncio.sleep(gap_s)
    return len(first & await _running_threads(samples))


async def _running_threads(samples: int) -> set[str]:
    from collections import Counter

    running: Counter[str] = Counter()
    for _ in range(samples):
        for pid in engine_pids():
            try:
                for tid in os.listdir(f"/proc/{pid}/task"):
                    with open(f"/proc/{pid}/task/{tid}/stat", encoding="ascii") as stat:
                        if stat.read().rsplit(")", 1)[1].split()[0] == "R":
                            running[f"{pid}/{tid}"] += 1
            except OSError:
                continue  # it ended meanwhile
        await asyncio.sleep(0.025)
    return {thread for thread, count in running.items() if count >= samples * 0.8}


def pid_alive(pid: int) -> bool:
    """Whether the process runs (a zombie, dead but not yet reaped, does not)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def thread_count() -> int:
    """Native threads of this process and of the engine workers (V8 isolate threads), from /proc.

    The in-process engine's isolate executor is left out: its threads (up to `ISOLATE_THREADS`)
    start as work first overlaps and then stay, which is a pool growing, not a leak.
    """
    executor = sum(thread.name.startswith("codemode-isolates") for thread in threading.enumerate())
    count = len(os.listdir("/proc/self/task")) - executor
    for pid in engine_pids():
        try:
            count += len(os.listdir(f"/proc/{pid}/task"))
        except FileNotFoundError:
            pass  # it died meanwhile
    return count


def rss_bytes() -> int:
    """Resident set size of this process, from /proc."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")  # pragma: no cover


async def settle_threads(target: int, timeout: float = 15.0) -> int:
    """Wait until the thread count drops to `target` (isolates are freed in the background)."""
    deadline = time.monotonic() + timeout
    count = thread_count()
    while count > target and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
        count = thread_count()
    return count


def texts(result: ExecResult) -> list[str]:
    return [item.text if isinstance(item, TextItem) else item.type for item in result.items]


def check_rendering(result: ExecResult) -> None:
    """What the model would receive can be built, in every API format."""
    model_items(result)
    for api in get_args(Api):
        json.dumps(to_model(result, api))


class Host:
    """A `CodeMode` session on a private event-loop thread, driven synchronously.

    For tests that cannot be coroutines (hypothesis, big tables). Every error the loop reports
    (an exception in a callback, a task nobody awaited) is recorded in `loop_errors`; a healthy
    host records none.
    """

    def __init__(self, **kwargs: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.loop_errors: list[dict[str, Any]] = []
        self.loop.set_exception_handler(lambda _loop, context: self.loop_errors.append(context))
        self._thread = threading.Thread(target=self.loop.run_forever, name="hardening-host", daemon=True)
        self._thread.start()
        self.cm = CodeMode(**kwargs)
        self.call(self.cm.start())

    def call(self, coroutine: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def run(self, fn: Callable[[], Coroutine[Any, Any, T]], timeout: float = 30.0) -> T:
        return self.call(fn(), timeout)

    def exec(self, source: str, **kwargs: Any) -> ExecResult:
        """Run `source`; a cell still running after its yield is terminated (and that is returned)."""
        result = self.call(self.cm.exec(source, **kwargs))
        check_rendering(result)
        if result.status == "running":
            assert result.cell_id is not None
            result = self.call(self.cm.wait(result.cell_id, terminate=True))
            check_rendering(result)
        self.assert_no_loop_errors()
        return result

    def assert_no_loop_errors(self) -> None:
        errors = [f"{c.get('message')}: {c.get('exception')!r}" for c in self.loop_errors]
        assert not errors, errors

    def assert_healthy(self) -> None:
        self.assert_no_loop_errors()
        result = self.exec('text("alive")', yield_time_ms=10_000)
        assert (result.status, texts(result)) == ("completed", ["alive"])

    def close(self) -> None:
        try:
            self.call(self.cm.aclose())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(5)
            self.loop.close()
