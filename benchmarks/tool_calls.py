"""Execs after a pause, nested tool calls, concurrent cells, sustained execs, and where the time goes.

Usage:
    python benchmarks/tool_calls.py [--isolation process|in-process] [--quick | --smoke] [--execs 1000]
                                    [--json out.json]

One isolation mode per run (run_all.py runs this once per mode, each in a fresh process),
through the public API only (`CodeMode`, `Tool`, `Limits`, `codemode.engines`); before every
timed group the host *and the engine worker processes* are left to go quiet
(`procstats.settle`: isolate pools full, the spare worker started), so each group meets the
steady state:

1. Back to back and after a pause: 12 execs of `text("bench")` back to back, and 20 execs
   each after a 30 ms `asyncio.sleep` (as agents' turns arrive: the threads and processes
   involved have gone to sleep in between).
2. Nested tool round trips from a script to a Python tool: one call; 100 sequential awaits;
   `Promise.all` of 100. Against a tool that returns at once (async handler, and a sync one,
   which codemode runs in a worker thread) and one that sleeps 50 ms. Execs with calls
   alternate with execs without (`text("bench")`); "per call" = (median exec with calls -
   median exec without, of the same pairs) / calls.
3. Concurrent cells started at once (`asyncio.gather`), in a fresh session each time: 1 and
   200 cells awaiting the 50 ms tool, 200 awaiting a 50 ms `setTimeout`, and 200 awaiting the
   timer in sessions with `Limits(heap_limit_bytes=32 MiB)` (process mode admits cells to a
   worker while their heap limits fit its `heap_per_worker`: 8 of the default 256 MiB). Each
   script calls `notify` first, so `on_notify` counts the cells running at once (started on an
   engine, not yet returned).
4. Sustained: `--execs` execs back to back in one session: wall time per exec, and CPU per exec
   of the host plus every engine worker (until all is quiet again afterwards), split host /
   workers; RSS and threads of host + workers at the start, end and maximum.
5. Where the time goes, as far as the public API sees it: a warm exec split at the moment its
   events reach the host's event loop (`on_notify` of the script's `notify`); a raw pipe round
   trip to a trivial echo process; each back to back and after a 30 ms pause. With 1-4, the
   reference loop (1 warm-up + 25 execs) on a `ProcessEngine` with another isolate pool size.
   (Finer phases, the bare worker-pipe and isolate round trips, needed the engine's private
   classes and were dropped: a refactor broke them silently.)

6. Memory: the RSS of one engine worker (process mode; the host's growth in-process) once a
   session's first exec ran and its isolate pool refilled, with a pool of 1 and of 33
   prepared isolates: what a worker costs, and each prepared isolate (the difference / 32).

`--smoke` runs every part at a tiny size without settling (`make bench-smoke`): it checks that
the benchmark still runs, not its figures.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import procstats
from codemode import CodeMode, Limits, Tool, engines

PAUSE_S = 0.03
MEMORY_POOL = 32  # prepared isolates whose memory part 6 measures
MIB = 1024 * 1024


# -- tools -----------------------------------------------------------------------------------
async def _fast(_args: Any) -> dict[str, Any]:
    return {"ok": True}


def _fast_sync(_args: Any) -> dict[str, Any]:
    return {"ok": True}


async def _slow(_args: Any) -> dict[str, Any]:
    await asyncio.sleep(0.05)
    return {"ok": True}


TOOLS = [
    Tool("fast", "Returns at once.", _fast),
    Tool("fast_sync", "Returns at once (a sync handler).", _fast_sync),
    Tool("slow", "Sleeps 50 ms, then returns.", _slow),
]

BENCH = 'text("bench");'
SCRIPTS = {
    "one call": 'await tools.{t}({{}}); text("x");',
    "100 sequential": 'for (let i = 0; i < 100; i++) await tools.{t}({{i}}); text("x");',
    "Promise.all 100": 'await Promise.all(Array.from({{length: 100}}, (_, i) => tools.{t}({{i}}))); text("x");',
}
CALLS = {"one call": 1, "100 sequential": 100, "Promise.all 100": 100}
TIMER_50MS = 'notify("in"); await new Promise((r) => setTimeout(r, 50)); text("x");'
TOOL_50MS = 'notify("in"); await tools.slow({}); text("x");'
NOTIFIED = 'notify("in"); text("bench");'


def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f} ms" if seconds < 0.1 else f"{seconds * 1e3:.1f} ms"


def stats(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    return {"mean_s": statistics.mean(times), "median_s": statistics.median(times),
            "p95_s": ordered[((len(ordered) - 1) * 95) // 100], "n": len(times)}


async def timed_exec(cm: CodeMode, code: str) -> float:
    started = time.perf_counter()
    result = await cm.exec(code)
    elapsed = time.perf_counter() - started
    if result.status != "completed" or len(result.items) != 1:
        raise RuntimeError(f"exec did not complete as expected: {result.status} {result.error!r} {result.items!r}")
    return elapsed


class Sizes:
    """How much of each part to run: the full run, `--quick`, or `--smoke` (does it still run?)."""

    def __init__(self, quick: bool, smoke: bool) -> None:
        self.back_to_back = 3 if smoke else 12
        self.after_pause = 3 if smoke else 10 if quick else 20
        self.fast_pairs = 1 if smoke else 5 if quick else 10
        self.pairs = 2 if smoke else 3
        self.concurrent_cells = 8 if smoke else 200
        self.concurrent_repeats = 1 if smoke else 2 if quick else 3
        self.phase_execs = 3 if smoke else 10
        self.raw_pipe = (10, 3) if smoke else (100, 20) if quick else (200, 20)
        self.pool_loop = 12 if smoke else 25  # the reference loop; run_all splits it at exec 11
        self.pool_rounds = 1 if smoke else 2


class Bench:
    def __init__(self, isolation: str, sizes: Sizes) -> None:
        self.isolation = isolation
        self.sizes = sizes

    def session(self, limits: Limits | None = None, on_notify: Any = None) -> CodeMode:
        return CodeMode(tools=TOOLS, isolation=self.isolation, limits=limits or Limits(),  # type: ignore[arg-type]
                        on_notify=on_notify)

    async def settle(self, in_smoke: bool = False) -> None:
        await procstats.settle(self.isolation, in_smoke=in_smoke)

    async def group(self, cm: CodeMode, code: str, repeats: int, pause: float = 0.0) -> list[float]:
        """`repeats` timed execs of `code` after the session went quiet and one warm-up."""
        await self.settle()
        await timed_exec(cm, code)
        times = []
        for _ in range(repeats):
            if pause:
                await asyncio.sleep(pause)
            times.append(await timed_exec(cm, code))
        return times

    # -- part 6 ------------------------------------------------------------------------------
    async def memory(self) -> dict[str, Any]:
        """RSS with an isolate pool of 1 and of 1 + MEMORY_POOL prepared isolates."""
        rss: dict[str, int] = {}
        for size in (1, 1 + MEMORY_POOL):
            baseline = procstats.rss_bytes()
            engine: Any
            if self.isolation == "process":
                engine = engines.ProcessEngine(workers=1, isolate_pool_size=size)
            else:
                engine = engines.InProcessEngine(size)
            async with CodeMode(engine=engine) as cm:
                await timed_exec(cm, BENCH)
                await self.pool_filled(engine, size)
                if self.isolation == "process":
                    rss[str(size)] = max(procstats.rss_bytes(pid) for pid in engine.worker_pids())
                else:
                    rss[str(size)] = procstats.rss_bytes() - baseline
            await engine.aclose()
        small, large = rss["1"], rss[str(1 + MEMORY_POOL)]
        return {"pool_sizes": [1, 1 + MEMORY_POOL], "rss": rss, "worker_rss": small,
                "per_isolate": (large - small) / MEMORY_POOL}

    async def pool_filled(self, engine: Any, size: int) -> None:
        """Until the engine and host are quiet: the pool holds `size` prepared isolates again."""
        extra = (engine,) if self.isolation == "process" else ()
        await procstats.settle(self.isolation, extra=extra, in_smoke=True)

    # -- part 1 ------------------------------------------------------------------------------
    async def pause(self, cm: CodeMode) -> dict[str, Any]:
        back_to_back = await self.group(cm, BENCH, self.sizes.back_to_back)
        paused = await self.group(cm, BENCH, self.sizes.after_pause, pause=PAUSE_S)
        return {"back_to_back": stats(back_to_back), "after_pause": stats(paused), "pause_s": PAUSE_S}

    # -- part 2 ------------------------------------------------------------------------------
    async def paired(self, cm: CodeMode, code: str, pairs: int) -> tuple[list[float], list[float]]:
        """`pairs` times an exec without calls then one of `code`, alternating, so both meet the
        same conditions (load, pool level); in groups of at most 5 pairs, each after a settle."""
        base: list[float] = []
        calls: list[float] = []
        while len(calls) < pairs:
            await self.settle(in_smoke=True)  # `--smoke` checks the nested call for gross regressions
            await timed_exec(cm, code)
            for _ in range(min(5, pairs - len(calls))):
                base.append(await timed_exec(cm, BENCH))
                calls.append(await timed_exec(cm, code))
        return base, calls

    async def round_trips(self, cm: CodeMode) -> list[dict[str, Any]]:
        fast_pairs, pairs = self.sizes.fast_pairs, self.sizes.pairs
        plan = [("fast", "one call", fast_pairs), ("fast", "100 sequential", pairs), ("fast", "Promise.all 100", pairs),
                ("fast_sync", "one call", fast_pairs), ("fast_sync", "100 sequential", pairs),
                ("slow", "one call", pairs), ("slow", "Promise.all 100", pairs)]
        rows: list[dict[str, Any]] = []
        bases: list[float] = []
        for tool, scenario, pairs in plan:
            base_times, call_times = await self.paired(cm, SCRIPTS[scenario].format(t=tool), pairs)
            bases += base_times
            base, exec_s = statistics.median(base_times), statistics.median(call_times)
            calls = CALLS[scenario]
            row: dict[str, Any] = {"tool": tool, "scenario": scenario, "calls": calls, "exec_s": exec_s,
                                   "base_s": base, "pairs": pairs, "per_call_s": None}
            if tool == "slow":
                row["overhead_s"] = exec_s - base - 0.05
            else:
                row["per_call_s"] = (exec_s - base) / calls
            rows.append(row)
        rows.insert(0, {"tool": "-", "scenario": "exec without calls", "calls": 0, "exec_s": statistics.median(bases),
                        "per_call_s": None})
        return rows

    # -- part 3 ------------------------------------------------------------------------------
    async def concurrent(self) -> list[dict[str, Any]]:
        repeats, many = self.sizes.concurrent_repeats, self.sizes.concurrent_cells
        plan = [("50 ms tool", 1, TOOL_50MS, {}),
                ("50 ms tool", many, TOOL_50MS, {}),
                ("50 ms timer", many, TIMER_50MS, {}),
                ("50 ms timer, heap_limit_bytes=32 MiB", many, TIMER_50MS, {"heap_limit_bytes": 32 * MIB})]
        rows = []
        for what, count, code, options in plan:
            walls, cpus, peaks = [], [], []
            for _ in range(repeats):
                running = Running()
                limits = Limits(max_concurrent_cells=max(64, 2 * count), **options)
                async with self.session(limits, on_notify=running.started) as cm:
                    await cm.start(fill_pool=True)
                    await self.settle()
                    meter = procstats.CpuMeter(self.isolation)
                    started = time.perf_counter()
                    results = await asyncio.gather(*(running.exec(cm, code) for _ in range(count)))
                    walls.append(time.perf_counter() - started)
                    cpus.append(meter.total())
                    peaks.append(running.peak)
                    bad = [r for r in results if r.status != "completed" or len(r.items) != 1]
                    if bad:
                        raise RuntimeError(f"{len(bad)} concurrent execs did not complete: {bad[0]!r}")
            rows.append({"what": what, "cells": count, "wall_s": statistics.mean(walls), "wall_max_s": max(walls),
                         "wall_min_s": min(walls), "execs_per_s": count / statistics.mean(walls), "repeats": repeats,
                         "cpu_s": statistics.mean(cpus), "workers": len(procstats.engine_pids(self.isolation)),
                         "max_running": max(peaks)})
        return rows

    # -- part 4 ------------------------------------------------------------------------------
    async def sustained(self, cm: CodeMode, count: int) -> dict[str, Any]:
        await self.settle()
        await timed_exec(cm, BENCH)
        start = procstats.footprint(self.isolation)
        samples = [{"execs": 0, "rss": start.rss, "threads": start.threads}]
        meter = procstats.CpuMeter(self.isolation)
        total = 0.0
        for i in range(count):
            total += await timed_exec(cm, BENCH)
            if (i + 1) % 250 == 0:
                now = procstats.footprint(self.isolation)
                samples.append({"execs": i + 1, "rss": now.rss, "threads": now.threads})
        loop_host, loop_engines = meter.split()
        await self.settle()
        host, engines = meter.split()
        end = procstats.footprint(self.isolation)
        return {
            "execs": count, "mean_exec_s": total / count,
            "cpu_per_exec_s": (host + engines) / count, "host_cpu_per_exec_s": host / count,
            "engine_cpu_per_exec_s": engines / count, "loop_cpu_per_exec_s": (loop_host + loop_engines) / count,
            "rss_start": start.rss, "rss_end": end.rss, "rss_max": max(max(s["rss"] for s in samples), end.rss),
            "threads_start": start.threads, "threads_end": end.threads,
            "threads_max": max(max(s["threads"] for s in samples), end.threads),
            "engine_threads_end": end.engine_threads, "engine_rss_end": end.engine_rss, "engines": len(end.engine_pids),
            "samples": samples,
        }

    # -- part 5 ------------------------------------------------------------------------------
    async def breakdown(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        out["phases"] = await self.phases()
        if self.isolation == "process":
            out["pool_size"] = await self.pool_size()
        out["raw_pipe"] = await raw_pipe_round_trip(*self.sizes.raw_pipe)
        return out

    async def phases(self) -> dict[str, Any]:
        """A warm exec of `notify("in"); text("bench")` split where its events reach the host's
        event loop (`on_notify` runs there as they are delivered), back to back and after a
        pause (medians); in a session of its own, on the same shared engine."""
        delivered: list[float] = []
        names = ["exec() called → the script's events delivered on the host's event loop (host: parse, cell, "
                 "program; the engine: " + ("worker pipe, worker, V8" if self.isolation == "process" else
                                            "isolate thread, V8") + ")",
                 "events delivered → exec() returns (finish the cell, the result)"]
        result: dict[str, Any] = {"phases": names}
        async with self.session(on_notify=lambda _cell, _text: delivered.append(time.perf_counter())) as cm:
            await cm.start(fill_pool=True)
            for label, pause in (("back_to_back", 0.0), ("after_pause", PAUSE_S)):
                await self.settle()
                await timed_exec(cm, NOTIFIED)
                splits: list[tuple[float, float]] = []
                for _ in range(self.sizes.phase_execs):
                    if pause:
                        await asyncio.sleep(pause)
                    delivered.clear()
                    called = time.perf_counter()
                    await timed_exec(cm, NOTIFIED)
                    returned = time.perf_counter()
                    splits.append((delivered[0] - called, returned - delivered[0]))
                result[label] = {
                    "total_s": statistics.median(a + b for a, b in splits),
                    "phase_s": [statistics.median(split[k] for split in splits) for k in range(len(names))],
                }
        return result

    async def pool_size(self) -> dict[str, Any]:
        """The reference loop (1 warm-up + 25 execs back to back, after a settle) on the shared
        process engine and on one whose workers keep another number of prepared isolates (16 if
        the default holds enough for the loop, else 32): what the pool size does to it."""
        default_size = engines.shared("process").config.isolate_pool_size  # type: ignore[attr-defined]
        other_size = 16 if default_size >= 26 else 32
        loop, rounds = self.sizes.pool_loop, self.sizes.pool_rounds
        out: dict[str, Any] = {}
        async with engines.ProcessEngine(isolate_pool_size=other_size) as other:
            for label, engine, size in (("default", None, default_size), ("other", other, other_size)):
                extra = () if engine is None else (engine,)
                by_position = [0.0] * loop
                for _ in range(rounds):
                    async with CodeMode(tools=TOOLS, isolation="process", engine=engine) as cm:
                        await cm.start(fill_pool=True)
                        await procstats.settle("process", extra=extra)
                        await timed_exec(cm, BENCH)
                        for k in range(loop):
                            by_position[k] += await timed_exec(cm, BENCH) / rounds
                out[label] = {"by_position_s": by_position, "first_11_s": statistics.mean(by_position[:11]),
                              "rest_s": statistics.mean(by_position[11:]), "mean_s": statistics.mean(by_position),
                              "isolate_pool_size": size}
        return out


class Running:
    """Cells whose scripts have started on an engine (their `notify` arrived) and whose exec has
    not returned yet: the most at once is how many the engine ran side by side."""

    def __init__(self) -> None:
        self.now = 0
        self.peak = 0

    def started(self, _cell_id: str, _text: str) -> None:
        self.now += 1
        self.peak = max(self.peak, self.now)

    async def exec(self, cm: CodeMode, code: str) -> Any:
        result = await cm.exec(code)
        self.now -= 1
        return result


# -- a raw pipe round trip to a trivial echo process (the OS's and Python's share) -------------
ECHO = "import os\nwhile True:\n    d = os.read(0, 64)\n    if not d: break\n    os.write(1, d)\n"


async def raw_pipe_round_trip(n: int, paused: int) -> dict[str, Any]:
    # Blocking on purpose: the OS's own round trip, without an event loop in the way.
    proc = subprocess.Popen([sys.executable, "-S", "-c", ECHO], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, bufsize=0)
    assert proc.stdin is not None and proc.stdout is not None
    w, r = proc.stdin.fileno(), proc.stdout.fileno()

    def once() -> float:
        t = time.perf_counter()
        os.write(w, b"x")
        os.read(r, 64)
        return time.perf_counter() - t

    try:
        for _ in range(20):
            once()
        back = [once() for _ in range(n)]
        after = []
        for _ in range(paused):
            await asyncio.sleep(PAUSE_S)
            after.append(once())
    finally:
        proc.stdin.close()
        proc.wait()
    return {"what": "1 byte written to a trivial echo process and read back (blocking os.write/os.read, "
                    "no threads, no event loops)", "back_to_back": stats(back), "after_pause": stats(after)}


# -- report ----------------------------------------------------------------------------------
def report_lines(data: dict[str, Any]) -> list[str]:
    """A plain per-mode report (run_all.py renders both modes side by side instead)."""
    iso = data["isolation"]
    p = data["pause"]
    lines = [f"## isolation={iso}", "",
             f"back to back: {fmt_ms(p['back_to_back']['mean_s'])} mean; after a {PAUSE_S * 1e3:.0f} ms pause: "
             f"{fmt_ms(p['after_pause']['mean_s'])} mean, {fmt_ms(p['after_pause']['median_s'])} median", "",
             "| tool | scenario | exec | per call | overhead above the 50 ms sleep |", "|---|---|---|---|---|"]
    for row in data["round_trips"]:
        per_call = "" if row.get("per_call_s") is None else fmt_ms(row["per_call_s"])
        overhead = fmt_ms(row["overhead_s"]) if "overhead_s" in row else ""
        lines.append(f"| {row['tool']} | {row['scenario']} | {fmt_ms(row['exec_s'])} | {per_call} | {overhead} |")
    lines += ["", "| cells | awaiting | wall (mean) | wall (max) | execs/s |", "|---|---|---|---|---|"]
    for row in data["concurrent"]:
        lines.append(f"| {row['cells']} | {row['what']} | {fmt_ms(row['wall_s'])} | {fmt_ms(row['wall_max_s'])} | "
                     f"{row['execs_per_s']:.0f} |")
    s = data["sustained"]
    lines += ["", f"sustained, {s['execs']} execs: {fmt_ms(s['mean_exec_s'])} wall, {fmt_ms(s['cpu_per_exec_s'])} CPU "
                  f"per exec (host {fmt_ms(s['host_cpu_per_exec_s'])}, workers {fmt_ms(s['engine_cpu_per_exec_s'])}); "
                  f"RSS {s['rss_start'] / MIB:.1f} → {s['rss_end'] / MIB:.1f} MiB, threads {s['threads_start']} → "
                  f"{s['threads_end']}"]
    b = data["breakdown"]
    lines += ["", "phases of a warm exec (median): back to back | after a pause"]
    for i, name in enumerate(b["phases"]["phases"]):
        lines.append(f"  {name}: {fmt_ms(b['phases']['back_to_back']['phase_s'][i])} | "
                     f"{fmt_ms(b['phases']['after_pause']['phase_s'][i])}")
    raw = b["raw_pipe"]
    lines.append(f"raw pipe: {fmt_ms(raw['back_to_back']['median_s'])} back to back, "
                 f"{fmt_ms(raw['after_pause']['median_s'])} after a pause ({raw['what']})")
    return lines


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    bench = Bench(args.isolation, Sizes(args.quick, args.smoke))
    data: dict[str, Any] = {"isolation": args.isolation}
    async with bench.session() as cm:
        await cm.start(fill_pool=True)
        data["pause"] = await bench.pause(cm)
        data["round_trips"] = await bench.round_trips(cm)
        data["breakdown"] = await bench.breakdown()
        data["sustained"] = await bench.sustained(cm, args.execs)
    data["concurrent"] = await bench.concurrent()
    data["workers_end"] = len(procstats.engine_pids(args.isolation))
    data["memory"] = await bench.memory()
    engine = engines.shared(args.isolation)
    if isinstance(engine, engines.ProcessEngine):
        data["engine_config"] = dataclasses.asdict(engine.config)
    else:
        data["engine_config"] = {"pool_size": engine.pool_size}  # type: ignore[attr-defined]
    return data


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--isolation", choices=("process", "in-process"), default="process")
    sizes = parser.add_mutually_exclusive_group()
    sizes.add_argument("--quick", action="store_true", help="fewer repetitions")
    sizes.add_argument("--smoke", action="store_true", help="every part at a tiny size, no settling: does it run?")
    parser.add_argument("--execs", type=int, default=1000, help="execs for the sustained run")
    parser.add_argument("--json", help="also write the raw results to this file")
    args = parser.parse_args(argv)
    if args.smoke:
        procstats.enter_smoke_mode()
        args.execs = min(args.execs, 5)
    data = asyncio.run(main_async(args))
    print("\n".join(report_lines(data)))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=1)


if __name__ == "__main__":
    main()
