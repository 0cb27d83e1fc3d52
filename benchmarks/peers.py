"""codemode next to other ways of running model-written JavaScript from Python.

Usage:
    python benchmarks/peers.py [--samples 3] [--iterations 25] [--peers a,b] [--smoke] [--json out.json]

Every sample runs in a fresh process (this script re-executes itself with --worker). Peers:

* codemode (process)     `await cm.exec(...)` with `isolation="process"` (the default): a fresh
                  V8 isolate per exec, prepared in a pool inside an engine worker process.
* codemode (in-process)  the same with `isolation="in-process"`: V8 in this process.
* raw engine floor  bare mini-racer (`floor.py`): a context created (`mr_init_context`: a fresh
                  isolate, context and native thread), `1+1` evaluated and awaited, the context
                  freed, all on the event loop: the floor for any exec in a fresh mini-racer
                  isolate, without a prelude, tools, output or results, and with nothing
                  prepared ahead.
* node runner     the reference's previous design (benchmarks/node_runner.js): one long-lived
                  Node.js process, JSON lines on stdin/stdout, a worker_threads Worker per exec.
* pydeno runtime  pydeno's in-process `Runtime`, a fresh one per exec (`Runtime()`, `eval`, `close`).
* pydeno codemode pydeno's code-mode front end `AsyncPydeno`: per exec a checkout (a fresh,
                  pre-started, OS-sandboxed worker process) and one `feed_run`.

Per peer: "first exec" = from nothing (the peer's library not yet imported, its runtime not
started, V8 not initialised) to the end of the first exec; "warm" = mean and p95 (over
per-sample means) of `--iterations` execs back to back after that first one, once background
work is done (codemode: host and engine workers quiet; others: 0.2 s); "tool call" =
(median exec with one nested call to a Python function that returns at once) - (warm median);
"rssΔ" = max-RSS growth over the warm loop (for the node runner, the Node process's VmHWM
growth; for codemode in process mode, the host's only).
A peer that cannot run here (not installed) is listed with the reason. `--smoke`: 1 sample of 2
execs per peer, without settling (does it still run?).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
PEERS = ("codemode (process)", "codemode (in-process)", "raw engine floor", "node runner", "pydeno runtime",
         "pydeno codemode")
TOOL_EXECS = 10


def max_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# -- peers: each returns (exec(), tool_exec() or None, close(), rss()) -----------------------
Exec = Callable[[], Awaitable[None]]


async def open_codemode(isolation: str) -> tuple[Exec, Exec | None, Callable[[], Awaitable[None]], Callable[[], int]]:
    from codemode import CodeMode, Tool

    async def fast(_args: Any) -> dict[str, Any]:
        return {"ok": True}

    cm = CodeMode(tools=[Tool("fast", "Returns at once.", fast)], isolation=isolation)  # type: ignore[arg-type]
    await cm.__aenter__()

    async def run(code: str) -> None:
        result = await cm.exec(code)
        if result.status != "completed" or len(result.items) != 1:
            raise RuntimeError(f"codemode exec failed: {result!r}")

    return (lambda: run('text("bench");'), lambda: run('await tools.fast({}); text("x");'),
            lambda: cm.__aexit__(None, None, None), max_rss_bytes)


async def open_raw_floor() -> tuple[Exec, Exec | None, Callable[[], Awaitable[None]], Callable[[], int]]:
    sys.path.insert(0, HERE)
    from floor import open_raw_floor as open_floor

    run = await open_floor()

    async def close() -> None:
        return None

    return run, None, close, max_rss_bytes


async def open_node() -> tuple[Exec, Exec | None, Callable[[], Awaitable[None]], Callable[[], int]]:
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node is not installed")
    proc = await asyncio.create_subprocess_exec(
        node, os.path.join(HERE, "node_runner.js"),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, limit=1 << 24,
    )
    assert proc.stdin is not None and proc.stdout is not None
    ready = json.loads(await proc.stdout.readline())
    assert ready["type"] == "ready"
    waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
    ids = iter(range(1, 1 << 62))

    async def reader() -> None:
        assert proc.stdout is not None and proc.stdin is not None
        while line := await proc.stdout.readline():
            message = json.loads(line)
            if message["type"] == "call":  # the nested tool: answer at once
                reply = {"type": "result", "id": message["id"], "call": message["call"], "ok": True,
                         "value": {"ok": True}}
                proc.stdin.write((json.dumps(reply) + "\n").encode())
            elif message["type"] == "done":
                waiting.pop(message["id"]).set_result(message)

    reading = asyncio.ensure_future(reader())

    async def run(code: str) -> None:
        assert proc.stdin is not None
        exec_id = next(ids)
        future = asyncio.get_running_loop().create_future()
        waiting[exec_id] = future
        proc.stdin.write((json.dumps({"type": "exec", "id": exec_id, "code": code}) + "\n").encode())
        done = await future
        if done["error"] is not None or len(done["items"]) != 1:
            raise RuntimeError(f"node runner exec failed: {done!r}")

    async def close() -> None:
        assert proc.stdin is not None
        proc.stdin.close()
        await proc.wait()
        reading.cancel()

    def rss() -> int:
        with open(f"/proc/{proc.pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        return 0

    return (lambda: run('text("bench");'), lambda: run('await tools.fast({}); text("x");'), close, rss)


async def open_pydeno_runtime() -> tuple[Exec, Exec | None, Callable[[], Awaitable[None]], Callable[[], int]]:
    from pydeno import Runtime

    async def run() -> None:
        rt = Runtime()
        try:
            if rt.eval('"bench"') != "bench":
                raise RuntimeError("pydeno runtime: wrong result")
        finally:
            rt.close()

    async def run_tool() -> None:
        rt = Runtime()
        try:
            rt.bind_function("fast", lambda: {"ok": True})
            value = await rt.eval_async("(async () => { await fast(); return 'x'; })()")
            if value != "x":
                raise RuntimeError(f"pydeno runtime: wrong result {value!r}")
        finally:
            rt.close()

    async def close() -> None:
        return None

    return run, run_tool, close, max_rss_bytes


async def open_pydeno_codemode() -> tuple[Exec, Exec | None, Callable[[], Awaitable[None]], Callable[[], int]]:
    from pydeno import AsyncPydeno

    pool = AsyncPydeno()
    await pool.__aenter__()

    async def fast() -> dict[str, Any]:
        return {"ok": True}

    async def run() -> None:
        async with pool.checkout() as session:
            if await session.feed_run('"bench"') != "bench":
                raise RuntimeError("pydeno codemode: wrong result")

    async def run_tool() -> None:
        async with pool.checkout() as session:
            value = await session.feed_run("await fast(); 'x'", external_lookup={"fast": fast})
            if value != "x":
                raise RuntimeError(f"pydeno codemode: wrong result {value!r}")

    return run, run_tool, lambda: pool.__aexit__(None, None, None), max_rss_bytes


OPENERS: dict[str, Callable[[], Awaitable[Any]]] = {
    "codemode (process)": lambda: open_codemode("process"),
    "codemode (in-process)": lambda: open_codemode("in-process"),
    "raw engine floor": open_raw_floor,
    "node runner": open_node,
    "pydeno runtime": open_pydeno_runtime,
    "pydeno codemode": open_pydeno_codemode,
}


async def quiet(peer: str) -> None:
    if peer.startswith("codemode"):
        sys.path.insert(0, HERE)
        import procstats

        await procstats.settle("in-process" if "in-process" in peer else "process")
    else:
        await asyncio.sleep(0.2)


async def run_worker(peer: str, iterations: int) -> dict[str, Any]:
    started = time.perf_counter()
    run, run_tool, close, rss = await OPENERS[peer]()
    opened = time.perf_counter()
    await run()
    first_exec_end = time.perf_counter()
    await quiet(peer)  # untimed: let background work (pool refills, a spare engine worker) finish
    baseline_rss = rss()
    warm = []
    for _ in range(iterations):
        t = time.perf_counter()
        await run()
        warm.append(time.perf_counter() - t)
    rss_delta = max(0, rss() - baseline_rss)
    tool = []
    if run_tool is not None:
        await quiet(peer)
        await run_tool()
        for _ in range(TOOL_EXECS):
            t = time.perf_counter()
            await run_tool()
            tool.append(time.perf_counter() - t)
    await close()
    return {
        "peer": peer, "first_exec_s": first_exec_end - started, "start_s": opened - started,
        "first_exec_only_s": first_exec_end - opened, "warm_mean_s": statistics.mean(warm),
        "warm_median_s": statistics.median(warm), "rss_delta": rss_delta,
        "tool_exec_median_s": statistics.median(tool) if tool else None,
    }


def run_sample(peer: str, iterations: int) -> dict[str, Any] | str:
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", peer, "--iterations", str(iterations)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=300)
    if proc.returncode != 0:
        why = (proc.stderr.strip().splitlines() or ["failed"])[-1]
        if "ModuleNotFoundError" in why or "not installed" in why:
            why = f"unavailable here ({why})"
        return why
    return json.loads(proc.stdout.strip().splitlines()[-1])


def summarize(peer: str, reports: list[dict[str, Any]]) -> dict[str, Any]:
    means = sorted(r["warm_mean_s"] for r in reports)
    tools = [r["tool_exec_median_s"] for r in reports if r["tool_exec_median_s"] is not None]
    warm_median = statistics.median(r["warm_median_s"] for r in reports)
    return {
        "peer": peer, "samples": len(reports),
        "first_exec_s": statistics.mean(r["first_exec_s"] for r in reports),
        "start_s": statistics.mean(r["start_s"] for r in reports),
        "warm_mean_s": statistics.mean(means), "warm_p95_s": means[((len(means) - 1) * 95) // 100],
        "tool_call_s": (statistics.median(tools) - warm_median) if tools else None,
        "tool_exec_s": statistics.median(tools) if tools else None,
        "rss_delta_p50": sorted(r["rss_delta"] for r in reports)[(len(reports) - 1) // 2],
    }


def fmt(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    return f"{seconds * 1e3:.2f} ms" if seconds >= 1e-3 else f"{seconds * 1e6:.0f} µs"


def ratio(value: float | None, base: float | None) -> str:
    if value is None or base is None or base <= 0:
        return ""
    return f" ({value / base:.2f}×)"


def table(rows: list[dict[str, Any]], failures: dict[str, str], floor_s: float | None = None) -> list[str]:
    """Markdown rows; ratios are to `floor_s` (the raw engine floor's warm mean of this run) if given,
    else to this table's raw engine floor row."""
    if floor_s is None:
        floor_s = next((r["warm_mean_s"] for r in rows if r["peer"] == "raw engine floor"), None)
    lines = ["| peer | first exec (import + start + exec) | warm mean/exec | warm p95/exec | exec with one tool call | "
             "tool call (derived) | rssΔ p50 (warm loop) |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        def cell(key: str, r: dict[str, Any] = r) -> str:
            if r[key] is not None and r[key] < 0:
                return "below the noise"  # an exec with a call measured faster than one without
            return fmt(r[key]) + (ratio(r[key], floor_s) if key != "first_exec_s" else "")

        lines.append(f"| {r['peer']} | {cell('first_exec_s')} | {cell('warm_mean_s')} | {cell('warm_p95_s')} | "
                     f"{cell('tool_exec_s')} | {cell('tool_call_s')} | {r['rss_delta_p50'] / 1024:.0f} KiB |")
    for peer, why in failures.items():
        lines.append(f"| {peer} | not run: {why} | | | | | |")
    lines.append("")
    lines.append("Ratios in parentheses are to the raw engine floor's warm mean (below 1: faster than creating a "
                 "bare mini-racer context).")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=25)
    parser.add_argument("--peers", default=",".join(PEERS))
    parser.add_argument("--smoke", action="store_true", help="1 sample of 2 execs, no settling: does it still run?")
    parser.add_argument("--json")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.smoke:
        sys.path.insert(0, HERE)
        import procstats

        procstats.enter_smoke_mode()  # inherited by the sample processes
        args.samples, args.iterations = 1, 2
    if args.worker:
        print(json.dumps(asyncio.run(run_worker(args.worker, args.iterations))))
        return
    rows, failures = [], {}
    for peer in args.peers.split(","):
        reports = []
        for _ in range(args.samples):
            report = run_sample(peer, args.iterations)
            if isinstance(report, str):
                failures[peer] = report
                break
            reports.append(report)
        if reports and peer not in failures:
            rows.append(summarize(peer, reports))
    print("\n".join(table(rows, failures)))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"rows": rows, "failures": failures}, fh, indent=1)


if __name__ == "__main__":
    main()
