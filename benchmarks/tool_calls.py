"""Execs after a pause, nested tool calls, concurrent cells, sustained execs, and where the time goes.

Usage:
    python benchmarks/tool_calls.py [--isolation process|in-process] [--quick] [--execs 1000] [--json out.json]

One isolation mode per run (run_all.py runs this once per mode, each in a fresh process),
through the public API (`CodeMode`, `Tool`); before every timed group the host *and the engine
worker processes* are left to go quiet (`procstats.settle`: isolate pools full, the spare
worker started), so each group meets the steady state:

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
   timer in sessions with `heap_limit_bytes=32 MiB` (process mode admits cells to a worker
   while their heap limits fit its `heap_per_worker`: 8 of the default 256 MiB).
4. Sustained: `--execs` execs back to back in one session: wall time per exec, and CPU per exec
   of the host plus every engine worker (until all is quiet again afterwards), split host /
   workers; RSS and threads of host + workers at the start, end and maximum.
5. Where the time goes: timestamps of each phase of a warm exec, taken by wrapping engine
   methods in this process (nothing in codemode is changed); a no-op round trip over the
   worker pipe (process) or into a prepared isolate (in-process); a raw pipe round trip to a
   trivial echo process; each back to back and after a 30 ms pause.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import procstats  # noqa: E402

from codemode import CodeMode, Tool  # noqa: E402

PAUSE_S = 0.03
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
TIMER_50MS = 'await new Promise((r) => setTimeout(r, 50)); text("x");'


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


class Bench:
    def __init__(self, isolation: str, quick: bool) -> None:
        self.isolation = isolation
        self.quick = quick

    def session(self, **kwargs: Any) -> CodeMode:
        return CodeMode(tools=TOOLS, isolation=self.isolation, **kwargs)  # type: ignore[arg-type]

    async def settle(self) -> None:
        await procstats.settle(self.isolation)

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

    # -- part 1 ------------------------------------------------------------------------------
    async def pause(self, cm: CodeMode) -> dict[str, Any]:
        back_to_back = await self.group(cm, BENCH, 12)
        paused = await self.group(cm, BENCH, 10 if self.quick else 20, pause=PAUSE_S)
        return {"back_to_back": stats(back_to_back), "after_pause": stats(paused), "pause_s": PAUSE_S}

    # -- part 2 ------------------------------------------------------------------------------
    async def paired(self, cm: CodeMode, code: str, pairs: int) -> tuple[list[float], list[float]]:
        """`pairs` times an exec without calls then one of `code`, alternating, so both meet the
        same conditions (load, pool level); in groups of at most 5 pairs, each after a settle."""
        base: list[float] = []
        calls: list[float] = []
        while len(calls) < pairs:
            await self.settle()
            await timed_exec(cm, code)
            for _ in range(min(5, pairs - len(calls))):
                base.append(await timed_exec(cm, BENCH))
                calls.append(await timed_exec(cm, code))
        return base, calls

    async def round_trips(self, cm: CodeMode) -> list[dict[str, Any]]:
        fast_pairs = 5 if self.quick else 10
        plan = [("fast", "one call", fast_pairs), ("fast", "100 sequential", 3), ("fast", "Promise.all 100", 3),
                ("fast_sync", "one call", fast_pairs), ("fast_sync", "100 sequential", 3),
                ("slow", "one call", 3), ("slow", "Promise.all 100", 3)]
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
        repeats = 2 if self.quick else 3
        plan = [("50 ms tool", 1, 'await tools.slow({}); text("x");', {}),
                ("50 ms tool", 200, 'await tools.slow({}); text("x");', {}),
                ("50 ms timer", 200, TIMER_50MS, {}),
                ("50 ms timer, heap_limit_bytes=32 MiB", 200, TIMER_50MS, {"heap_limit_bytes": 32 * MIB})]
        rows = []
        for what, count, code, options in plan:
            walls, cpus, admitted = [], [], []
            for _ in range(repeats):
                async with self.session(max_concurrent_cells=max(64, 2 * count), **options) as cm:
                    await cm.start(fill_pool=True)
                    await self.settle()
                    meter = procstats.CpuMeter(self.isolation)
                    peak = [0]
                    watch = asyncio.ensure_future(self._watch_admitted(peak))
                    started = time.perf_counter()
                    results = await asyncio.gather(*(cm.exec(code) for _ in range(count)))
                    walls.append(time.perf_counter() - started)
                    cpus.append(meter.total())
                    watch.cancel()
                    admitted.append(peak[0])
                    bad = [r for r in results if r.status != "completed" or len(r.items) != 1]
                    if bad:
                        raise RuntimeError(f"{len(bad)} concurrent execs did not complete: {bad[0]!r}")
            rows.append({"what": what, "cells": count, "wall_s": statistics.mean(walls), "wall_max_s": max(walls),
                         "wall_min_s": min(walls), "execs_per_s": count / statistics.mean(walls), "repeats": repeats,
                         "cpu_s": statistics.mean(cpus), "workers": len(procstats.engine_pids(self.isolation)),
                         "max_on_workers": max(admitted) if self.isolation == "process" else None})
        return rows

    async def _watch_admitted(self, peak: list[int]) -> None:
        """Process mode: the most cells placed on engine workers at once (the supervisor's count)."""
        if self.isolation != "process":
            return
        from codemode import engines

        pool = engines.shared("process").pool  # type: ignore[attr-defined]
        while True:
            peak[0] = max(peak[0], sum(len(w.cells) for w in pool.workers()))
            await asyncio.sleep(0.002)

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
    async def breakdown(self, cm: CodeMode) -> dict[str, Any]:
        out: dict[str, Any] = {}
        probes: list[tuple[str, Callable[[CodeMode], Awaitable[dict[str, Any]]]]] = [
            ("phases", self.phases), ("noop", self.noop_round_trip)]
        if self.isolation == "process":
            probes.append(("pool_size", self.pool_size))
        for name, probe in probes:
            try:
                out[name] = await probe(cm)
            except Exception as exc:  # noqa: BLE001 - a probe on engine internals that moved
                out[name] = {"unavailable": f"{type(exc).__name__}: {exc}"}
        out["raw_pipe"] = await raw_pipe_round_trip(100 if self.quick else 200, 20)
        return out

    async def phases(self, cm: CodeMode) -> dict[str, Any]:
        """Timestamps of a warm exec's phases, back to back and after a pause (medians)."""
        marks: dict[str, list[float]] = {}
        clock = time.perf_counter

        def mark(name: str) -> None:
            marks.setdefault(name, []).append(clock())

        undo: list[Callable[[], None]] = []

        def wrap(cls: Any, attr: str, before: Callable[..., None]) -> None:
            original = getattr(cls, attr)

            def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
                before(*args)
                return original(self, *args, **kwargs)

            setattr(cls, attr, wrapper)
            undo.append(lambda: setattr(cls, attr, original))

        if self.isolation == "process":
            from codemode._engine.process import ProcessCell
            from codemode._engine.process import _protocol as wire
            from codemode._engine.process._supervisor import Worker

            def on_send(message: list[Any]) -> None:
                if message[0] == wire.START:
                    mark("sent")
                elif message[0] == wire.RELEASE:
                    mark("released")

            def on_dispatch(message: list[Any]) -> None:
                if message[0] == wire.EVENTS:
                    mark("read")

            wrap(Worker, "send", on_send)
            wrap(Worker, "_dispatch", on_dispatch)
            wrap(ProcessCell, "_deliver", lambda *_: mark("delivered"))
            names = [("exec() called → START written to the pipe (host: parse, cell, program)", "called", "sent"),
                     ("START written → first EVENTS read by the host's reader thread (pipe, worker, V8)",
                      "sent", "read"),
                     ("first → last EVENTS read (when the finish comes in a second message)", "read", "read_last"),
                     ("last EVENTS read → delivered on the event loop (reader thread → loop wake-up)", "read_last",
                      "delivered_last"),
                     ("delivered → exec() returns (finish the cell, the result)", "delivered_last", "returned")]
        else:
            from codemode._engine.miniracer._cell import MiniRacerCell

            wrap(MiniRacerCell, "launch", lambda *_: mark("launched"))
            wrap(MiniRacerCell, "_pump", lambda *_: mark("pumped"))
            names = [("exec() called → script submitted to its isolate (host: parse, cell, program)", "called",
                      "launched"),
                     ("submitted → first ring read on the event loop (isolate thread, V8, callback)", "launched",
                      "pumped"),
                     ("first ring read → exec() returns (events, finish the cell, the result)", "pumped", "returned")]
        result: dict[str, Any] = {"phases": [n for n, _, _ in names]}
        try:
            for label, pause in (("back_to_back", 0.0), ("after_pause", PAUSE_S)):
                await self.settle()
                await timed_exec(cm, BENCH)
                per_exec: list[dict[str, float]] = []
                for _ in range(10):
                    if pause:
                        await asyncio.sleep(pause)
                    marks.clear()
                    called = clock()
                    await cm.exec(BENCH)
                    returned = clock()
                    point = {"called": called, "returned": returned}
                    for key, values in marks.items():
                        point[key], point[key + "_last"] = values[0], values[-1]
                    per_exec.append(point)
                result[label] = {
                    "total_s": statistics.median(p["returned"] - p["called"] for p in per_exec),
                    "phase_s": [statistics.median(p[b] - p[a] for p in per_exec) for _, a, b in names],
                }
        finally:
            for restore in reversed(undo):
                restore()
        return result

    async def pool_size(self, _cm: CodeMode) -> dict[str, Any]:
        """The reference loop (1 warm-up + 25 execs back to back, after a settle) on the shared
        process engine and on one whose workers keep another number of prepared isolates (16 if
        the default holds enough for the loop, else 32): what the pool size does to it."""
        from codemode import engines

        default_size = engines.shared("process").config.isolate_pool_size  # type: ignore[attr-defined]
        other_size = 16 if default_size >= 26 else 32
        other = engines.ProcessEngine(isolate_pool_size=other_size)
        out: dict[str, Any] = {}
        try:
            for label, engine, size in (("default", None, default_size), ("other", other, other_size)):
                extra = () if engine is None else (engine,)
                by_position = [0.0] * 25
                rounds = 2
                for _ in range(rounds):
                    async with CodeMode(tools=TOOLS, isolation="process", engine=engine) as cm:
                        await cm.start(fill_pool=True)
                        await procstats.settle("process", extra=extra)
                        await timed_exec(cm, BENCH)
                        for k in range(25):
                            by_position[k] += await timed_exec(cm, BENCH) / rounds
                out[label] = {"by_position_s": by_position, "first_11_s": statistics.mean(by_position[:11]),
                              "rest_s": statistics.mean(by_position[11:]), "mean_s": statistics.mean(by_position),
                              "isolate_pool_size": size}
        finally:
            other.close()
        return out

    async def noop_round_trip(self, cm: CodeMode) -> dict[str, Any]:
        """The engine path's own round trip, without a script: over the worker pipe (process), or
        into a prepared isolate (in-process)."""
        run, label, close, fresh = await (self._noop_pipe() if self.isolation == "process"
                                          else self._noop_isolate(cm))
        try:
            out: dict[str, Any] = {"what": label}
            # A fresh isolate per round trip (in-process) drains the pool: stay within it.
            for key, pause, n in (("back_to_back", 0.0, 12 if fresh else 200), ("after_pause", PAUSE_S, 20)):
                await self.settle()
                await run()
                times = []
                for _ in range(n):
                    if pause:
                        await asyncio.sleep(pause)
                    t = time.perf_counter()
                    await run()
                    times.append(time.perf_counter() - t)
                out[key] = stats(times)
            if self.isolation != "process":
                out["same_isolate"] = await self._same_isolate(cm)
            return out
        finally:
            await close()

    async def _noop_pipe(self) -> tuple[Callable[[], Awaitable[None]], str, Callable[[], Awaitable[None]], bool]:
        from codemode import engines
        from codemode._engine.process import _protocol as wire

        pool = engines.shared("process").pool  # type: ignore[attr-defined]
        worker = next(w for w in pool.workers() if w.ready and not w.dead)
        loop = asyncio.get_running_loop()
        waiting: list[asyncio.Future[None]] = []

        class Echo:  # stands in for a cell: the worker answers TERMINATE of an unknown cell at once
            id = -1
            heap = 0

            def deliver_threadsafe(self, events: Any) -> None: ...
            def died_threadsafe(self, error: str) -> None: ...

            def terminated_threadsafe(self) -> None:
                loop.call_soon_threadsafe(lambda: waiting.pop().set_result(None))

        worker.cells[Echo.id] = Echo()

        async def run() -> None:
            future = loop.create_future()
            waiting.append(future)
            worker.send([wire.TERMINATE, Echo.id])
            await future

        async def close() -> None:
            worker.cells.pop(Echo.id, None)

        return (run, "TERMINATE of an unknown cell and its TERMINATED reply: host loop → pipe → worker's loop → "
                     "pipe → host reader thread → host loop; no V8", close, False)

    async def _noop_isolate(self, cm: CodeMode) -> tuple[Callable[[], Awaitable[None]], str,
                                                         Callable[[], Awaitable[None]], bool]:
        pool = cm._engine_session._pool  # type: ignore[attr-defined,union-attr]

        async def run() -> None:
            isolate = pool.take_nowait() or await pool.take()
            await isolate.submit("1")
            pool.release(isolate)

        async def close() -> None:
            return None

        return (run, "eval of `1` in a prepared, never-used isolate from the pool (as every exec gets one): "
                     "event loop → isolate thread → V8 → completion callback → event loop", close, True)

    async def _same_isolate(self, cm: CodeMode) -> dict[str, Any]:
        """The same eval again and again in one isolate (its thread warm), back to back."""
        pool = cm._engine_session._pool  # type: ignore[attr-defined,union-attr]
        await self.settle()
        isolate = pool.take_nowait() or await pool.take()
        try:
            for _ in range(10):
                await isolate.submit("1")
            times = []
            for _ in range(100):
                t = time.perf_counter()
                await isolate.submit("1")
                times.append(time.perf_counter() - t)
        finally:
            pool.release(isolate)
        return stats(times)


# -- a raw pipe round trip to a trivial echo process (the OS's and Python's share) -------------
ECHO = "import os\nwhile True:\n    d = os.read(0, 64)\n    if not d: break\n    os.write(1, d)\n"


async def raw_pipe_round_trip(n: int, paused: int) -> dict[str, Any]:
    proc = subprocess.Popen([sys.executable, "-S", "-c", ECHO], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            bufsize=0)
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
    if "phases" in b and "phase_s" in b["phases"].get("back_to_back", {}):
        lines += ["", "phases of a warm exec (median): back to back | after a pause"]
        for i, name in enumerate(b["phases"]["phases"]):
            lines.append(f"  {name}: {fmt_ms(b['phases']['back_to_back']['phase_s'][i])} | "
                         f"{fmt_ms(b['phases']['after_pause']['phase_s'][i])}")
    for key in ("noop", "raw_pipe"):
        probe = b.get(key, {})
        if "back_to_back" in probe:
            lines.append(f"{key}: {fmt_ms(probe['back_to_back']['median_s'])} back to back, "
                         f"{fmt_ms(probe['after_pause']['median_s'])} after a pause ({probe['what']})")
        elif probe:
            lines.append(f"{key}: {probe.get('unavailable')}")
    return lines


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    bench = Bench(args.isolation, args.quick)
    data: dict[str, Any] = {"isolation": args.isolation}
    async with bench.session() as cm:
        await cm.start(fill_pool=True)
        data["pause"] = await bench.pause(cm)
        data["round_trips"] = await bench.round_trips(cm)
        data["breakdown"] = await bench.breakdown(cm)
        data["sustained"] = await bench.sustained(cm, args.execs)
    data["concurrent"] = await bench.concurrent()
    data["workers_end"] = len(procstats.engine_pids(args.isolation))
    if args.isolation == "process":
        from codemode import engines

        data["engine_config"] = vars(engines.shared("process").config)  # type: ignore[attr-defined]
    return data


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--isolation", choices=("process", "in-process"), default="process")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--execs", type=int, default=1000, help="execs for the sustained run")
    parser.add_argument("--json", help="also write the raw results to this file")
    args = parser.parse_args(argv)
    data = asyncio.run(main_async(args))
    print("\n".join(report_lines(data)))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=1)


if __name__ == "__main__":
    main()
