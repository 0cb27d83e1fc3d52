"""Soak: one long session must not grow. RSS and thread count stay flat over many cells.

Usage:
    python benchmarks/soak.py [--isolation process|in-process|both] [--execs 10000] [--terminates 1000]
                              [--concurrent 200] [--batches 5] [--rss-tolerance-mib 5]
                              [--engine-rss-tolerance-mib 3] [--thread-tolerance 3] [--smoke]

One `CodeMode` session runs, after a warm-up (the same mix at a tenth of the size, with 8
concurrent batches: RSS creeps up to a plateau over the first bursts of hundreds of threads, as
glibc caches their stacks and heaps; then more warm-up rounds, each a twentieth of the mix and
one concurrent batch, until RSS of host + workers rose less than 1 MiB over a round, at most
`plateau_rounds`: every engine worker process has heaps of its own, reaches its plateau only
from the cells it ran, and cannot be trimmed from the host):
  * `--execs` sequential execs cycling through: plain output, a nested tool call, store/load,
    a script error, a yield then a `wait`, an import, a timer;
  * `--terminates` cells, interleaved, terminated in every state: a sync loop, a loop after an
    await, parked on a promise, a pending tool, pending timers;
  * `--batches` times, `--concurrent` cells running at once (parked on a tool); half of them are
    released and collected, half terminated.
`--isolation both` (the default) runs the soak once per mode, each in a process of its own.
RSS and the thread count are those of the host *plus* every engine worker process (with
`isolation="process"`, the default, V8 and its isolates' threads live in the workers listed by
`codemode.engines.shared("process").worker_pids()`; in-process there are none), sampled every
100 operations and right after each concurrent batch has started; host and engine shares are
kept apart too. The end values must be within the tolerances of the values measured right
after the warm-up (RSS: `--rss-tolerance-mib`, plus `--engine-rss-tolerance-mib` per engine
worker, whose allocators creep up towards a plateau of their own and cannot be trimmed from
the host); the exit status says whether they were. Both are measured once everything
is quiet (freed isolates' threads gone, the isolate pools refilled: the thread count of host
and workers unchanged, and the workers using no CPU, for half a second), after a GC and
glibc's malloc_trim(0) in the host: bursts of concurrent isolates fragment glibc's heaps, and
the memory it caches in free lists is not a leak.
`--smoke`: a tiny mix, one warm-up round, no waiting for quiet, and growth reported but not
judged (does it still run? only failed cells fail it).
Linux only (reads /proc).
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import gc
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from codemode import CodeMode, Limits, Tool, to_model

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import procstats
from procstats import engine_pids, thread_count

MIB = 1024 * 1024

EXEC_MIX = [
    ('text("x")', "completed"),
    ("text(JSON.stringify(await tools.echo({ i: 1, s: 'y'.repeat(100) })))", "completed"),
    ('store("counter", (load("counter") ?? 0) + 1); text(load("counter"))', "completed"),
    ('text("before"); throw new Error("boom")', "failed"),
    ('text("a"); yield_control(); await null; text("b")', "yield"),
    ('import { text as t } from "@openai/code_mode";\nt("imported")', "completed"),
    ("await new Promise((r) => setTimeout(r, 1)); text([1, 2, 3].map((n) => n * 2).join())", "completed"),
]
TERMINATE_MIX = [
    "while (true) {}",
    "await null; while (true) {}",
    "await new Promise(() => {})",
    "await tools.hang({})",
    "for (let i = 0; i < 50; i++) setTimeout(() => {}, 60000); await new Promise(() => {})",
]


Sample = procstats.Footprint
measure = procstats.footprint


@dataclass
class SoakReport:
    isolation: str = "process"
    execs: int = 0
    terminates: int = 0
    concurrent_cells: int = 0
    seconds: float = 0.0
    rss_start: int = 0  # host + engine workers
    rss_end: int = 0
    rss_max: int = 0
    threads_start: int = 0  # host + engine workers
    threads_end: int = 0
    threads_max: int = 0
    host_threads_start: int = 0
    host_threads_end: int = 0
    host_threads_max: int = 0
    engine_threads_start: int = 0
    engine_threads_end: int = 0
    engine_threads_max: int = 0
    engine_rss_start: int = 0
    engine_rss_end: int = 0
    engine_pids_start: tuple[int, ...] = ()
    engine_pids_end: tuple[int, ...] = ()
    open_cells_max: int = 0
    warmup_rounds: int = 0  # rounds until RSS stopped rising (see `soak`)
    failures: list[str] = field(default_factory=list)

    def start(self, sample: Sample) -> None:
        self.rss_start = self.rss_max = sample.rss
        self.threads_start = self.threads_max = sample.threads
        self.host_threads_start = self.host_threads_max = sample.host_threads
        self.engine_threads_start = self.engine_threads_max = sample.engine_threads
        self.engine_rss_start = sample.engine_rss
        self.engine_pids_start = sample.engine_pids

    def end(self, sample: Sample) -> None:
        self.rss_end = sample.rss
        self.threads_end = sample.threads
        self.host_threads_end = sample.host_threads
        self.engine_threads_end = sample.engine_threads
        self.engine_rss_end = sample.engine_rss
        self.engine_pids_end = sample.engine_pids
        self.sample(sample)

    def sample(self, sample: Sample | None = None) -> None:
        if sample is None:
            sample = measure(self.isolation)
        self.rss_max = max(self.rss_max, sample.rss)
        self.threads_max = max(self.threads_max, sample.threads)
        self.host_threads_max = max(self.host_threads_max, sample.host_threads)
        self.engine_threads_max = max(self.engine_threads_max, sample.engine_threads)

    def lines(self) -> list[str]:
        lines = [
            f"isolation={self.isolation}: execs {self.execs}, terminates {self.terminates}, concurrent cells "
            f"{self.concurrent_cells} (at most {self.open_cells_max} open at once) in {self.seconds:.1f} s, "
            f"after {self.warmup_rounds} extra warm-up rounds (until RSS rose < 1 MiB in one)",
            f"RSS     start {self.rss_start / MIB:8.1f} MiB   end {self.rss_end / MIB:8.1f} MiB"
            f"   max {self.rss_max / MIB:8.1f} MiB   growth {(self.rss_end - self.rss_start) / MIB:+.2f} MiB"
            "   (host + engine workers)",
            f"threads start {self.threads_start:8d}       end {self.threads_end:8d}"
            f"       max {self.threads_max:8d}       growth {self.threads_end - self.threads_start:+d}"
            "   (host + engine workers)",
        ]
        if self.isolation == "process":
            lines += [
                f"  host threads   start {self.host_threads_start} end {self.host_threads_end} "
                f"max {self.host_threads_max}",
                f"  engine threads start {self.engine_threads_start} end {self.engine_threads_end} "
                f"max {self.engine_threads_max}; engine RSS {self.engine_rss_start / MIB:.1f} → "
                f"{self.engine_rss_end / MIB:.1f} MiB; workers {list(self.engine_pids_start)} → "
                f"{list(self.engine_pids_end)}",
            ]
        return lines


class _Workload:
    def __init__(self, cm: CodeMode, report: SoakReport) -> None:
        self.cm = cm
        self.report = report
        self.ops = 0

    def _check(self, ok: bool, what: str) -> None:
        if not ok and len(self.report.failures) < 20:
            self.report.failures.append(what)

    def _tick(self) -> None:
        self.ops += 1
        if self.ops % 100 == 0:
            self.report.sample()

    async def one_exec(self, i: int) -> None:
        source, expected = EXEC_MIX[i % len(EXEC_MIX)]
        result = await self.cm.exec(source)
        if expected == "yield":
            self._check(result.status == "running", f"exec {i}: expected a yield, got {result.status}")
            if result.cell_id is not None:
                result = await self.cm.wait(result.cell_id)
            expected = "completed"
        self._check(result.status == expected, f"exec {i}: {result.status} {result.error}")
        to_model(result)
        self.report.execs += 1
        self._tick()

    async def one_terminate(self, i: int) -> None:
        result = await self.cm.exec(TERMINATE_MIX[i % len(TERMINATE_MIX)], yield_time_ms=0)
        self._check(result.status == "running" and result.cell_id is not None, f"terminate {i}: {result.status}")
        if result.cell_id is not None:
            final = await self.cm.wait(result.cell_id, terminate=True)
            self._check(final.status == "terminated", f"terminate {i}: {final.status} {final.error}")
        self.report.terminates += 1
        self._tick()

    async def one_batch(self, size: int, gate: asyncio.Event) -> None:
        gate.clear()
        ids = []
        for _ in range(size):
            result = await self.cm.exec('await tools.gate({}); text("released")', yield_time_ms=0)
            self._check(result.cell_id is not None, f"batch: {result.status} {result.error}")
            if result.cell_id is not None:
                ids.append(result.cell_id)
        await asyncio.sleep(0.05)  # let the engine start what it admitted (process: on the workers)
        self.report.sample()
        self.report.open_cells_max = max(self.report.open_cells_max, len(self.cm.running_cells))
        half = len(ids) // 2
        terminated = await asyncio.gather(*(self.cm.wait(c, terminate=True) for c in ids[:half]))
        gate.set()
        collected = await asyncio.gather(*(self.cm.wait(c, yield_time_ms=30_000) for c in ids[half:]))
        self._check(all(r.status == "terminated" for r in terminated), "batch: a terminate failed")
        self._check(all(r.status == "completed" for r in collected), "batch: a released cell did not complete")
        self.report.concurrent_cells += len(ids)
        self._tick()

    async def run(self, execs: int, terminates: int, concurrent: int, batches: int, gate: asyncio.Event) -> None:
        every_terminate = max(1, execs // max(1, terminates))
        every_batch = max(1, execs // max(1, batches))
        done_terminates = done_batches = 0
        for i in range(execs):
            await self.one_exec(i)
            if done_terminates < terminates and i % every_terminate == every_terminate - 1:
                await self.one_terminate(done_terminates)
                done_terminates += 1
            if done_batches < batches and i % every_batch == every_batch // 2:
                await self.one_batch(concurrent, gate)
                done_batches += 1
        while done_terminates < terminates:
            await self.one_terminate(done_terminates)
            done_terminates += 1
        while done_batches < batches:
            await self.one_batch(concurrent, gate)
            done_batches += 1


async def _settle(isolation: str, limit_s: float = 15.0) -> None:
    """Let the session go quiet: freed isolates' threads exit, the isolate pools refill.

    Quiet = the thread count of host and engine workers has not changed, and the workers have
    used no CPU, for half a second.
    """

    def state() -> tuple[int, int]:
        threads = thread_count()
        ticks = 0
        for pid in engine_pids(isolation):
            try:
                threads += thread_count(pid)
                ticks += round(procstats.cpu_seconds(pid) * procstats.CLK_TCK)
            except (FileNotFoundError, ProcessLookupError):
                pass
        return threads, ticks

    deadline = time.monotonic() + (0.0 if procstats.smoke_mode() else limit_s)
    last, stable_since = state(), time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - stable_since < 0.5:
        await asyncio.sleep(0.05)
        now = state()
        if now != last:
            last, stable_since = now, time.monotonic()
    gc.collect()
    _malloc_trim()


def _malloc_trim() -> None:
    """Hand memory glibc keeps cached in free lists back to the OS, so RSS shows live memory.

    Hundreds of isolate threads at once fragment glibc's heaps; without a trim, RSS creeps up
    towards a plateau after each burst although nothing is leaked.
    """
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


async def soak(
    execs: int = 10_000,
    terminates: int = 1_000,
    concurrent: int = 200,
    batches: int = 5,
    warmup_fraction: float = 0.1,
    warmup_batches: int = 8,
    isolation: str = "process",
    plateau_rounds: int = 5,
) -> SoakReport:
    """Run the soak in one session; the report holds the measurements and any failed checks."""
    gate = asyncio.Event()

    async def echo(args: Any) -> Any:
        return args

    async def hang(args: Any) -> None:
        await asyncio.sleep(3600)

    async def wait_gate(args: Any) -> None:
        await gate.wait()

    tools = [Tool("echo", "Echo.", echo), Tool("hang", "Never returns.", hang), Tool("gate", "Wait.", wait_gate)]
    report = SoakReport(isolation=isolation)
    async with CodeMode(
        tools=tools, limits=Limits(max_concurrent_cells=max(64, concurrent + 8)), isolation=isolation  # type: ignore[arg-type]
    ) as cm:
        warm = _Workload(cm, SoakReport(isolation=isolation))
        await warm.run(
            max(50, int(execs * warmup_fraction)),
            max(10, int(terminates * warmup_fraction)),
            concurrent,
            warmup_batches if batches else 0,
            gate,
        )
        await _settle(isolation)
        before = measure(isolation).rss
        for _ in range(plateau_rounds):
            await _Workload(cm, SoakReport(isolation=isolation)).run(
                max(50, execs // 20), max(5, terminates // 20), concurrent, 1 if batches else 0, gate
            )
            await _settle(isolation)
            after = measure(isolation).rss
            report.warmup_rounds += 1
            if after - before < 1 * MIB:
                break
            before = after
        report.start(measure(isolation))
        started = time.monotonic()
        await _Workload(cm, report).run(execs, terminates, concurrent, batches, gate)
        report.seconds = time.monotonic() - started
        await _settle(isolation)
        report.end(measure(isolation))
        if cm.running_cells:
            report.failures.append(f"cells left open: {cm.running_cells[:10]}")
    return report


def check(
    report: SoakReport, rss_tolerance_mib: float, thread_tolerance: int, engine_rss_tolerance_mib: float = 3.0
) -> list[str]:
    """The report's failures plus any growth beyond the tolerances.

    RSS (host + engine workers) may grow by `rss_tolerance_mib` plus `engine_rss_tolerance_mib`
    per engine worker: each worker has its own allocator whose caches creep up towards a
    plateau from the cells it ran (decelerating: about 3 MiB over its first 10,000 execs, then
    flat), and only the host's can be trimmed here.
    """
    problems = list(report.failures)
    if report.isolation == "process" and report.engine_pids_end != report.engine_pids_start:
        problems.append(f"engine workers changed: {list(report.engine_pids_start)} → {list(report.engine_pids_end)}")
    tolerance = rss_tolerance_mib + engine_rss_tolerance_mib * len(report.engine_pids_end)
    if report.rss_end - report.rss_start > tolerance * MIB:
        problems.append(
            f"RSS grew {(report.rss_end - report.rss_start) / MIB:.2f} MiB (tolerance {tolerance:g} MiB: "
            f"{rss_tolerance_mib:g} + {engine_rss_tolerance_mib:g} per engine worker)"
        )
    if report.threads_end - report.threads_start > thread_tolerance:
        problems.append(f"threads grew by {report.threads_end - report.threads_start} (tolerance {thread_tolerance})")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--isolation", choices=("process", "in-process", "both"), default="both")
    parser.add_argument("--execs", type=int, default=10_000)
    parser.add_argument("--terminates", type=int, default=1_000)
    parser.add_argument("--concurrent", type=int, default=200)
    parser.add_argument("--batches", type=int, default=5)
    parser.add_argument("--rss-tolerance-mib", type=float, default=5.0)
    parser.add_argument("--engine-rss-tolerance-mib", type=float, default=3.0,
                        help="RSS growth allowed per engine worker process, on top of --rss-tolerance-mib")
    parser.add_argument("--thread-tolerance", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="a tiny mix, growth not judged: does it still run?")
    args = parser.parse_args()
    if args.smoke:
        procstats.enter_smoke_mode()
        args.execs, args.terminates, args.concurrent, args.batches = 20, 5, 4, 1
    if not sys.platform.startswith("linux"):
        print("soak reads /proc/self: Linux only", file=sys.stderr)
        return 2
    modes = ["process", "in-process"] if args.isolation == "both" else [args.isolation]
    failed = False
    for mode in modes:
        # Each mode in a process of its own, so one mode's engine does not share the other's measurements.
        if len(modes) > 1:
            cmd = [sys.executable, os.path.abspath(__file__), "--isolation", mode, "--execs", str(args.execs),
                   "--terminates", str(args.terminates), "--concurrent", str(args.concurrent),
                   "--batches", str(args.batches), "--rss-tolerance-mib", str(args.rss_tolerance_mib),
                   "--engine-rss-tolerance-mib", str(args.engine_rss_tolerance_mib),
                   "--thread-tolerance", str(args.thread_tolerance), *(["--smoke"] if args.smoke else [])]
            failed = subprocess.run(cmd, check=False).returncode != 0 or failed
            continue
        rounds = {"warmup_batches": 1, "plateau_rounds": 1} if args.smoke else {}
        report = asyncio.run(soak(args.execs, args.terminates, args.concurrent, args.batches, isolation=mode,
                                  **rounds))
        print("\n".join(report.lines()))
        if args.smoke:
            problems = list(report.failures)
        else:
            problems = check(report, args.rss_tolerance_mib, args.thread_tolerance, args.engine_rss_tolerance_mib)
        for problem in problems:
            print(f"FAIL: {problem}")
        print(f"soak ({mode}): OK" if not problems else f"soak ({mode}): FAILED", flush=True)
        failed = failed or bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
