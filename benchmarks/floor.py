"""The raw engine floor: a bare mini-racer context created, `1+1` evaluated, the context closed.

Usage:
    python benchmarks/floor.py [--samples 3] [--iterations 40] [--smoke] [--json out.json]

Every figure in RESULTS.md is also given as a ratio to this floor, measured in the same run,
because machine speed varies 2x between the machines these benchmarks run on. It is the least
any exec in a fresh mini-racer isolate can cost: no prelude, no tools, no output, no results,
nothing prepared ahead. This is the only benchmark that imports py_mini_racer itself.

Per sample (a fresh process): `mr_init_context` (a fresh isolate, context and native thread),
one eval of `1+1` awaited on the event loop, `mr_free_context`; 3 untimed, then `--iterations`
timed back to back: mean and median wall time, and process CPU (all threads) per iteration.
For comparison, the same through mini-racer's public API (`MiniRacer()`, `eval("1+1")`,
`close()`, which also installs a setTimeout shim and runs its own event-loop thread).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any


async def open_raw_floor() -> Callable[[], Awaitable[None]]:
    """One floor iteration as a coroutine function (on the running loop)."""
    from py_mini_racer._context import Context
    from py_mini_racer._dll import init_mini_racer, mr_callback_func
    from py_mini_racer._objects import ObjectFactoryImpl

    dll = init_mini_racer(ignore_duplicate_init=True)
    loop = asyncio.get_running_loop()

    async def run() -> None:
        ref: list[Any] = []

        @mr_callback_func  # type: ignore[arg-type]
        def callback(callback_id: int, raw: Any) -> None:
            ref[0].handle_callback_from_v8(callback_id, raw)

        raw_context = dll.mr_init_context(callback)
        ctx = Context(dll, raw_context, loop, ObjectFactoryImpl(), itertools.count(1))
        ref.append(ctx)
        try:
            if await ctx.eval_cancelable("1+1") != 2:
                raise RuntimeError("raw engine floor: wrong result")
        finally:
            dll.mr_free_context(raw_context)

    return run


async def run_worker(iterations: int) -> dict[str, Any]:
    run = await open_raw_floor()
    for _ in range(3):
        await run()
    times = []
    cpu0 = time.process_time()
    for _ in range(iterations):
        t = time.perf_counter()
        await run()
        times.append(time.perf_counter() - t)
    cpu = time.process_time() - cpu0

    from py_mini_racer import MiniRacer

    public = []
    for i in range(iterations // 2 + 2):
        t = time.perf_counter()
        ctx = MiniRacer()
        if ctx.eval("1+1") != 2:
            raise RuntimeError("MiniRacer: wrong result")
        ctx.close()
        if i >= 2:
            public.append(time.perf_counter() - t)
    return {
        "mean_s": statistics.mean(times), "median_s": statistics.median(times),
        "cpu_per_exec_s": cpu / iterations, "public_api_mean_s": statistics.mean(public),
    }


def measure(samples: int, iterations: int) -> dict[str, Any]:
    reports = []
    for _ in range(samples):
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--iterations", str(iterations)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
        reports.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return {
        "samples": samples, "iterations": iterations,
        "mean_s": statistics.mean(r["mean_s"] for r in reports),
        "median_s": statistics.median(r["median_s"] for r in reports),
        "cpu_per_exec_s": statistics.mean(r["cpu_per_exec_s"] for r in reports),
        "public_api_mean_s": statistics.mean(r["public_api_mean_s"] for r in reports),
        "sample_means_s": [r["mean_s"] for r in reports],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=40)
    parser.add_argument("--smoke", action="store_true", help="1 sample of 3 iterations: does it still run?")
    parser.add_argument("--json")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.smoke:
        args.samples, args.iterations = 1, 3
    if args.worker:
        print(json.dumps(asyncio.run(run_worker(args.iterations))))
        return
    result = measure(args.samples, args.iterations)
    print(f"raw engine floor: {result['mean_s'] * 1e3:.3f} ms mean, {result['median_s'] * 1e3:.3f} ms median, "
          f"{result['cpu_per_exec_s'] * 1e3:.3f} ms CPU per iteration "
          f"(public MiniRacer API: {result['public_api_mean_s'] * 1e3:.3f} ms)")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(result, fh, indent=1)


if __name__ == "__main__":
    main()
