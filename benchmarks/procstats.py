"""CPU time, RSS and thread counts of this (host) process plus its engine worker processes.

With `isolation="process"` V8 runs in engine worker processes (`codemode.engines.shared("process")
.worker_pids()`), so every resource figure must add theirs to the host's; in-process there are
none. Linux only (reads /proc).

* CPU: the host's `time.process_time()` (every thread, ns resolution) plus utime+stime of each
  worker from /proc/<pid>/stat (every thread, exited ones included; clock ticks, 10 ms). A
  worker that appears during a measurement is charged from its start; one that vanishes keeps
  its last reading.
* `settle()`: wait until host and workers have used (almost) no CPU for a while, so background
  work (isolate pools refilling, a spare worker starting) is neither timed nor missed.
* Smoke runs (`make bench-smoke`, `--smoke` on every benchmark script): `enter_smoke_mode()`
  marks this process and the benchmark processes it starts (an environment variable), and
  `settle()` then returns at once: a smoke run checks that the benchmarks still run against
  the public API, and must stay fast on a busy machine. The one exception is the warm exec it
  checks for gross regressions (`settle(..., in_smoke=True)`): unsettled, its isolate pool is
  still filling and it measures isolate creation instead.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass

CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
SMOKE_ENV = "CODEMODE_BENCH_SMOKE"


def enter_smoke_mode() -> None:
    """Mark this process and every benchmark process it starts as a smoke run."""
    os.environ[SMOKE_ENV] = "1"


def smoke_mode() -> bool:
    return os.environ.get(SMOKE_ENV) == "1"


def engine_pids(isolation: str, extra: tuple[object, ...] = ()) -> list[int]:
    """The engine worker processes serving sessions of `isolation` (none in-process), plus those
    of the engine objects in `extra` (a `ProcessEngine` a benchmark created itself)."""
    pids: list[int] = []
    if isolation == "process":
        from codemode import engines

        pids += engines.shared("process").worker_pids()  # type: ignore[attr-defined]
    for engine in extra:
        pids += engine.worker_pids()  # type: ignore[attr-defined]
    return pids


def cpu_seconds(pid: int | str = "self") -> float:
    """utime + stime of a whole process (all its threads, exited ones included)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14 and 15 of stat(5)


def rss_bytes(pid: int | str = "self") -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def thread_count(pid: int | str = "self") -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


@dataclass
class Footprint:
    """RSS and threads of the host and its engine workers, and their sums."""

    host_rss: int
    host_threads: int
    engine_rss: int
    engine_threads: int
    engine_pids: tuple[int, ...]

    @property
    def rss(self) -> int:
        return self.host_rss + self.engine_rss

    @property
    def threads(self) -> int:
        return self.host_threads + self.engine_threads


def footprint(isolation: str) -> Footprint:
    engine_rss = engine_threads = 0
    alive = []
    for pid in engine_pids(isolation):
        try:
            engine_rss += rss_bytes(pid)
            engine_threads += thread_count(pid)
            alive.append(pid)
        except (FileNotFoundError, ProcessLookupError):
            pass  # it exited between the listing and the read
    return Footprint(rss_bytes(), thread_count(), engine_rss, engine_threads, tuple(sorted(alive)))


class CpuMeter:
    """CPU used by the host and its engine workers since the meter was created (or `reset`)."""

    def __init__(self, isolation: str, extra: tuple[object, ...] = ()) -> None:
        self.isolation = isolation
        self.extra = extra
        self.reset()

    def reset(self) -> None:
        self._host0 = time.process_time()
        self._last: dict[int, float] = {}
        self._start: dict[int, float] = {}
        self._poll(first=True)

    def _poll(self, first: bool = False) -> None:
        for pid in engine_pids(self.isolation, self.extra):
            try:
                value = cpu_seconds(pid)
            except (FileNotFoundError, ProcessLookupError):
                continue
            if pid not in self._start:
                self._start[pid] = value if first else 0.0  # a new worker: charged from its start
            self._last[pid] = value

    def host(self) -> float:
        return time.process_time() - self._host0

    def engines(self) -> float:
        self._poll()
        return sum(self._last[pid] - self._start[pid] for pid in self._last)

    def split(self) -> tuple[float, float]:
        """(host seconds, engine worker seconds) so far."""
        return self.host(), self.engines()

    def total(self) -> float:
        host, engines = self.split()
        return host + engines


async def settle(isolation: str, max_seconds: float = 8.0, window: float = 0.1, needed: int = 3,
                 extra: tuple[object, ...] = (), in_smoke: bool = False) -> bool:
    """Wait until host and workers have been quiet for `needed` windows in a row.

    Quiet: the host used < 3 % of a core and the workers together at most one clock tick.
    Returns False if that did not happen within `max_seconds`; in a smoke run, True at once
    (`in_smoke`: waits there too, for at most 3 s).
    """
    if smoke_mode():
        if not in_smoke:
            return True
        max_seconds = min(max_seconds, 3.0)
    deadline = time.perf_counter() + max_seconds
    quiet = 0
    while quiet < needed:
        if time.perf_counter() > deadline:
            return False
        meter = CpuMeter(isolation, extra)
        await asyncio.sleep(window)
        host, engines = meter.split()
        quiet = quiet + 1 if host < window * 0.03 and engines <= 1.0 / CLK_TCK + 1e-9 else 0
    return True
