"""Nested tool calls, concurrent cells, and resource use over many execs.

Usage:
    python benchmarks/tool_calls.py [--quick] [--execs 10000] [--json out.json]

Three parts, each in this process through the public API (`CodeMode`, `Tool`):

1. Round trips from a script to a Python tool: one call; 100 sequential awaits; `Promise.all`
   of 10 and of 100 calls. Against a tool that returns at once (async handler, and a sync one,
   which codemode runs in a worker thread) and one that sleeps 50 ms. Each exec is timed by the
   wall clock around `await cm.exec(...)`; "per call" is (exec time - the same exec without
   calls) / calls, so the exec's own overhead is left out. Each case runs in a fresh session:
   one warm-up exec, then up to 25 timed execs back to back (as the reference's warm_exec), so
   every exec takes a prepared isolate from the pool; part 3 shows the sustained case.
2. Concurrent cells: 1, 10 and 100 execs started at once (`asyncio.gather`), each awaiting the
   50 ms tool, in a fresh session each time: wall time and execs per second.
3. Many execs in one session (`text("bench")`, back to back): RSS (VmRSS) and thread count at
   the start, at the end and at their maximum, and the mean time per exec (sustained: the pool
   is empty after the first 32, so this includes waiting for isolates to be created).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from typing import Any

from codemode import CodeMode, Tool


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

SCRIPTS = {
    "baseline": 'text("x");',
    "one call": 'await tools.{t}({{}}); text("x");',
    "100 sequential": 'for (let i = 0; i < 100; i++) await tools.{t}({{i}}); text("x");',
    "Promise.all 10": 'await Promise.all(Array.from({{length: 10}}, (_, i) => tools.{t}({{i}}))); text("x");',
    "Promise.all 100": 'await Promise.all(Array.from({{length: 100}}, (_, i) => tools.{t}({{i}}))); text("x");',
}
CALLS = {"baseline": 0, "one call": 1, "100 sequential": 100, "Promise.all 10": 10, "Promise.all 100": 100}


def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f} ms" if seconds < 0.1 else f"{seconds * 1e3:.1f} ms"


async def timed_exec(cm: CodeMode, code: str) -> float:
    started = time.perf_counter()
    result = await cm.exec(code)
    elapsed = time.perf_counter() - started
    if result.status != "completed" or len(result.items) != 1:
        raise RuntimeError(f"exec did not complete as expected: {result.status} {result.error!r} {result.items!r}")
    return elapsed


async def sample(code: str, repeats: int) -> list[float]:
    """`repeats` execs of `code` back to back, after one warm-up, in a fresh session."""
    async with CodeMode(tools=TOOLS) as cm:
        await cm.start(fill_pool=True)  # steady state: the isolate pool is full
        await timed_exec(cm, code)
        return [await timed_exec(cm, code) for _ in range(repeats)]


# -- part 1 ----------------------------------------------------------------------------------
async def round_trips(quick: bool) -> list[dict[str, Any]]:
    rows = []
    base = statistics.median(await sample(SCRIPTS["baseline"], 25))
    rows.append({"tool": "-", "scenario": "exec without calls", "calls": 0, "exec_s": base, "per_call_s": None})
    for tool in ("fast", "fast_sync", "slow"):
        for scenario in ("one call", "100 sequential", "Promise.all 10", "Promise.all 100"):
            if tool == "slow":
                repeats = 1 if scenario == "100 sequential" else (2 if quick else 5)
            else:
                repeats = 10 if quick else 25
            if tool == "fast_sync" and scenario.startswith("Promise"):
                continue
            times = await sample(SCRIPTS[scenario].format(t=tool), repeats)
            exec_s = statistics.median(times)
            calls = CALLS[scenario]
            row = {"tool": tool, "scenario": scenario, "calls": calls, "exec_s": exec_s, "repeats": repeats}
            if tool == "slow":
                ideal = 0.05 * (calls if scenario == "100 sequential" else 1)
                row["ideal_s"] = ideal
                row["overhead_s"] = exec_s - base - ideal
                row["per_call_s"] = None
            else:
                row["per_call_s"] = (exec_s - base) / calls
            rows.append(row)
    return rows


# -- part 2 ----------------------------------------------------------------------------------
async def concurrent_cells(counts: list[int], repeats: int) -> list[dict[str, Any]]:
    rows = []
    for count in counts:
        walls = []
        for _ in range(repeats):
            async with CodeMode(tools=TOOLS, max_concurrent_cells=max(64, 2 * count)) as cm:
                await cm.start(fill_pool=True)
                started = time.perf_counter()
                results = await asyncio.gather(*(cm.exec('await tools.slow({}); text("x");') for _ in range(count)))
                walls.append(time.perf_counter() - started)
                bad = [r for r in results if r.status != "completed" or len(r.items) != 1]
                if bad:
                    raise RuntimeError(f"{len(bad)} concurrent execs did not complete: {bad[0]!r}")
        wall = statistics.mean(walls)
        rows.append({"cells": count, "wall_s": wall, "wall_max_s": max(walls), "execs_per_s": count / wall,
                     "repeats": repeats})
    return rows


# -- part 3 ----------------------------------------------------------------------------------
def rss_bytes() -> int:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def thread_count() -> int:
    return len(os.listdir("/proc/self/task"))


async def many_execs(count: int) -> dict[str, Any]:
    async with CodeMode(tools=TOOLS) as cm:
        await cm.start(fill_pool=True)
        await timed_exec(cm, 'text("bench");')
        start_rss, start_threads = rss_bytes(), thread_count()
        max_rss, max_threads = start_rss, start_threads
        samples = []
        total = 0.0
        cpu0 = time.process_time()
        for i in range(count):
            total += await timed_exec(cm, 'text("bench");')
            if (i + 1) % 250 == 0:
                rss, threads = rss_bytes(), thread_count()
                max_rss, max_threads = max(max_rss, rss), max(max_threads, threads)
                samples.append({"execs": i + 1, "rss": rss, "threads": threads})
        cpu = time.process_time() - cpu0
        end_rss, end_threads = rss_bytes(), thread_count()
    return {
        "execs": count, "mean_exec_s": total / count, "cpu_per_exec_s": cpu / count,
        "rss_start": start_rss, "rss_end": end_rss, "rss_max": max(max_rss, end_rss),
        "threads_start": start_threads, "threads_end": end_threads, "threads_max": max(max_threads, end_threads),
        "samples": samples,
    }


# -- report ----------------------------------------------------------------------------------
def report_lines(data: dict[str, Any]) -> list[str]:
    lines = ["## Nested tool calls (median exec wall time)", "",
             "| tool | scenario | exec | per call (exec - no-call exec) / calls | overhead above the 50 ms sleeps |",
             "|---|---|---|---|---|"]
    for row in data["round_trips"]:
        per_call = "" if row.get("per_call_s") is None else fmt_ms(row["per_call_s"])
        overhead = fmt_ms(row["overhead_s"]) if "overhead_s" in row else ""
        lines.append(f"| {row['tool']} | {row['scenario']} | {fmt_ms(row['exec_s'])} | {per_call} | {overhead} |")
    lines += ["", "## Concurrent cells, each awaiting the 50 ms tool (fresh session each)", "",
              "| cells | wall (mean) | wall (max) | execs/s |", "|---|---|---|---|"]
    for row in data["concurrent"]:
        lines.append(f"| {row['cells']} | {fmt_ms(row['wall_s'])} | {fmt_ms(row['wall_max_s'])} | {row['execs_per_s']:.0f} |")
    many = data["many"]
    mib = 1024 * 1024
    lines += ["", f"## {many['execs']:,} execs back to back in one session", "",
              "| | start | end | max |", "|---|---|---|---|",
              f"| RSS | {many['rss_start'] / mib:.1f} MiB | {many['rss_end'] / mib:.1f} MiB | {many['rss_max'] / mib:.1f} MiB |",
              f"| threads | {many['threads_start']} | {many['threads_end']} | {many['threads_max']} |",
              "",
              f"Sustained: {fmt_ms(many['mean_exec_s'])} wall and {fmt_ms(many['cpu_per_exec_s'])} process CPU "
              "per exec (creating and freeing a fresh isolate for every exec included)."]
    return lines


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    data: dict[str, Any] = {}
    data["round_trips"] = await round_trips(args.quick)
    data["concurrent"] = await concurrent_cells([1, 10, 100], 2 if args.quick else 5)
    data["many"] = await many_execs(args.execs)
    return data


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--execs", type=int, default=10_000, help="execs for the RSS/thread run")
    parser.add_argument("--json", help="also write the raw results to this file")
    args = parser.parse_args(argv)
    data = asyncio.run(main_async(args))
    print("\n".join(report_lines(data)))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=1)


if __name__ == "__main__":
    sys.exit(main())
