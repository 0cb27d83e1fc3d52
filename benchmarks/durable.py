"""What durable cells cost (issue 22): journaling on the exec path, and replaying a cell.

Usage:
    python benchmarks/durable.py [--samples N] [--isolations process,in-process] [--smoke]
                                 [--json out.json]

Through the public API only (`CodeMode(store=..., session_id=...)`, `Tool(retry_on_restart=True)`),
in both isolation modes; run_all.py renders the figures with ratios to the raw engine floor of
the same run. Every SQLite store is a fresh file in a temp dir; PostgreSQL (the store tests' server:
CODEMODE_TEST_POSTGRES_URL, else the URL `make postgres` wrote to .build/postgres/url) gets a
fresh schema per sample, dropped afterwards, and is left out when no server answers.

1. Warm exec, the reference method (exec_overhead.py's): a fresh process per sample, the isolate
   pool full and host and engine workers quiet, one warm-up, then 25 timed execs of
   `text("bench");` (0 tools), mean per exec; without a store and with a SQLite store, the
   samples of both interleaved. Without a store the default process engine still journals
   cells in memory (so a worker's death replays them): that is today's cost. Also CPU per exec
   (host + engine workers, the timed loop until all is quiet again, as exec_overhead.py).
2. A 100-call nested-tool exec (100 sequential awaits of an async tool that returns at once):
   two sessions on the same engine, one without a store and one with SQLite, their execs
   alternating (so both meet the same load); median exec wall time of each, and mean CPU per
   exec (host + engine workers around each exec; worker CPU comes in 10 ms ticks, so only the
   mean over many execs means anything). On a shared machine CPU moves less with the load of
   other processes than wall time does.
3. Replay of a cell with 1,000 journaled calls: process A runs a script making 1,000 calls of a
   tool that returns at once, then awaits `hold` (`retry_on_restart=True`), which never returns
   in A; A closes gracefully (`aclose()`: the journal stays, the lease is released) and exits.
   Process B opens the same store and session id (timed: B's start) and `wait`s on the cell
   (timed: until the completed result); `hold` returns at once in B. B checks that the output
   is right and that no journaled call ran again (it was replayed, not re-run). A's live run of
   the 1,000 calls (exec start until `hold` was called) is reported for scale.

`--smoke`: one sample of everything at a tiny size without settling (does it still run?).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import procstats  # noqa: E402
from exec_overhead import execute_benchmark_script  # noqa: E402

ISOLATIONS = ("process", "in-process")
STORES = ("none", "sqlite")
POSTGRES_URL_FILE = HERE.parent / ".build" / "postgres" / "url"
HOLD_SCRIPT = 'for (let i = 0; i < {calls}; i++) await tools.fast({{i}}); await tools.hold({{}}); text("done");'
NESTED_SCRIPT = 'for (let i = 0; i < {calls}; i++) await tools.fast({{i}}); text("x");'


class Sizes:
    """How much to run: the full run, or `--smoke` (does it still run?)."""

    def __init__(self, smoke: bool, samples: int) -> None:
        self.warm_samples = 1 if smoke else samples
        self.warm_iterations = 12 if smoke else 25
        self.nested_calls = 10 if smoke else 100
        self.nested_pairs = 2 if smoke else 20
        self.replay_calls = 20 if smoke else 1000
        self.replay_samples = 1 if smoke else samples


# -- the tools -------------------------------------------------------------------------------
class Calls:
    """The `fast` tool, counting its calls (B must make none: its calls are replayed)."""

    def __init__(self) -> None:
        self.count = 0

    async def fast(self, _args: Any) -> dict[str, Any]:
        self.count += 1
        return {"ok": True}


# -- 1: warm exec, the reference method, one sample ------------------------------------------
async def warm_sample(isolation: str, store: str | None, iterations: int) -> dict[str, Any]:
    from codemode import CodeMode

    async with CodeMode(isolation=isolation, store=store) as cm:  # type: ignore[arg-type]
        await cm.start(fill_pool=True)
        await procstats.settle(isolation)
        await execute_benchmark_script(cm)
        times = []
        meter = procstats.CpuMeter(isolation)
        for _ in range(iterations):
            started = time.perf_counter()
            await execute_benchmark_script(cm)
            times.append(time.perf_counter() - started)
        await procstats.settle(isolation)  # the background work the execs caused is theirs
        cpu_s = meter.total() / iterations
    return {"mean_s": statistics.mean(times), "cpu_s": cpu_s, "exec_s": times}


# -- 2: a 100-call nested-tool exec, with and without a store, alternating ---------------------
async def nested(isolation: str, store: str, calls: int, pairs: int) -> dict[str, Any]:
    from codemode import CodeMode, Tool

    counter = Calls()
    tools = [Tool("fast", "Returns at once.", counter.fast)]
    code = NESTED_SCRIPT.format(calls=calls)
    times: dict[str, list[float]] = {"none": [], "sqlite": []}
    cpus: dict[str, list[float]] = {"none": [], "sqlite": []}
    meter = procstats.CpuMeter(isolation)
    async with (CodeMode(tools=tools, isolation=isolation) as plain,  # type: ignore[arg-type]
                CodeMode(tools=tools, isolation=isolation, store=store) as durable):  # type: ignore[arg-type]
        sessions = {"none": plain, "sqlite": durable}
        for cm in sessions.values():
            await cm.start(fill_pool=True)
        while len(times["sqlite"]) < pairs:
            await procstats.settle(isolation)
            for cm in sessions.values():
                await timed(cm, code, "x")  # a warm-up each after the pause
            for _ in range(min(5, pairs - len(times["sqlite"]))):
                for name, cm in sessions.items():
                    cpu_before = meter.total()
                    times[name].append(await timed(cm, code, "x"))
                    cpus[name].append(meter.total() - cpu_before)
    return {name: {"median_s": statistics.median(t), "mean_s": statistics.mean(t), "n": len(t),
                   "cpu_s": statistics.mean(cpus[name])} for name, t in times.items()} | {"calls": calls}


async def timed(cm: Any, code: str, text: str) -> float:
    started = time.perf_counter()
    result = await cm.exec(code)
    elapsed = time.perf_counter() - started
    check(result, text)
    return elapsed


def check(result: Any, text: str) -> None:
    if result.status != "completed" or [item.text for item in result.items] != [text]:
        raise RuntimeError(f"exec did not complete as expected: {result.status} {result.error!r} {result.items!r}")


# -- 3: replay of a cell with many journaled calls ---------------------------------------------
async def replay_host_a(isolation: str, store: str, session_id: str, calls: int) -> dict[str, Any]:
    """Run the cell until it awaits `hold`, then close gracefully: the journal stays."""
    from codemode import CodeMode, Tool

    counter = Calls()
    holding = asyncio.Event()
    held_at: list[float] = []

    async def hold(_args: Any) -> dict[str, Any]:
        held_at.append(time.perf_counter())
        holding.set()
        await asyncio.Event().wait()  # never returns here: cancelled by aclose
        raise AssertionError("unreachable")

    tools = [Tool("fast", "Returns at once.", counter.fast),
             Tool("hold", "Returns in the second host only.", hold, retry_on_restart=True)]
    async with CodeMode(tools=tools, isolation=isolation, store=store, session_id=session_id) as cm:  # type: ignore[arg-type]
        await cm.start(fill_pool=True)
        await procstats.settle(isolation)
        started = time.perf_counter()
        result = await cm.exec(HOLD_SCRIPT.format(calls=calls), yield_time_ms=100)
        await asyncio.wait_for(holding.wait(), 300)
        live_s = held_at[0] - started
        if result.status != "running" or result.cell_id is None or counter.count != calls:
            raise RuntimeError(f"host A: the cell did not reach `hold` running: {result!r}, {counter.count} calls")
        cell_id = result.cell_id
    return {"cell_id": cell_id, "live_s": live_s}


async def replay_host_b(isolation: str, store: str, session_id: str, cell_id: str) -> dict[str, Any]:
    """Resume the cell by replay: B's start, then its `wait` until the completed result."""
    from codemode import CodeMode, Tool

    counter = Calls()
    held = Calls()
    tools = [Tool("fast", "Returns at once.", counter.fast),
             Tool("hold", "Returns in the second host only.", held.fast, retry_on_restart=True)]
    began = time.perf_counter()
    async with CodeMode(tools=tools, isolation=isolation, store=store, session_id=session_id) as cm:  # type: ignore[arg-type]
        await cm.start()
        start_s = time.perf_counter() - began
        await procstats.settle(isolation)
        started = time.perf_counter()
        result = await cm.wait(cell_id, yield_time_ms=60_000)
        while result.status == "running":
            result = await cm.wait(cell_id, yield_time_ms=60_000)
        replay_s = time.perf_counter() - started
        check(result, "done")
        if counter.count or held.count != 1:
            raise RuntimeError(f"host B re-ran journaled calls ({counter.count}) or `hold` {held.count} times, not once")
    return {"start_s": start_s, "replay_s": replay_s}


def replay_sample(isolation: str, store_kind: str, calls: int) -> dict[str, Any]:
    """One A/B pair, each host in a fresh process, on a fresh store."""
    with fresh_store(store_kind) as store:
        session_id = uuid.uuid4().hex
        a = run_worker(["replay-a", isolation, store, session_id, str(calls)])
        b = run_worker(["replay-b", isolation, store, session_id, a["cell_id"]])
    return {"live_s": a["live_s"], "start_s": b["start_s"], "replay_s": b["replay_s"]}


# -- stores ------------------------------------------------------------------------------------
def postgres_url() -> str | None:
    """The store tests' PostgreSQL server, if one answers."""
    url = os.environ.get("CODEMODE_TEST_POSTGRES_URL") or (
        POSTGRES_URL_FILE.read_text().strip() if POSTGRES_URL_FILE.exists() else "")
    if not url:
        return None
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=10):
            return url
    except psycopg.OperationalError:
        return None


@contextmanager
def fresh_store(kind: str) -> Iterator[str]:
    """The URL of an empty store: a SQLite file in a temp dir, or a fresh PostgreSQL schema."""
    if kind == "sqlite":
        directory = tempfile.mkdtemp(prefix="codemode-durable-")
        try:
            yield f"sqlite://{directory}/store.db"
        finally:
            shutil.rmtree(directory, ignore_errors=True)
        return
    import psycopg
    from psycopg import sql

    url = postgres_url()
    assert url is not None
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        base, _, query = url.partition("?")
        options = [(k, v) for k, v in parse_qsl(query) if k != "options"] + [("options", f"-csearch_path={schema}")]
        yield f"{base}?{urlencode(options)}"
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


# -- parent ------------------------------------------------------------------------------------
def run_worker(args: list[str]) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", *args],
                          capture_output=True, text=True, check=False, timeout=600)
    if proc.returncode != 0:
        raise SystemExit(f"durable benchmark worker {args[:3]} failed: {proc.stderr.strip()}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def worker(args: list[str]) -> dict[str, Any]:
    kind, isolation, *rest = args
    if kind == "warm":
        store, iterations = rest
        return asyncio.run(warm_sample(isolation, store or None, int(iterations)))
    if kind == "nested":
        store, calls, pairs = rest
        return asyncio.run(nested(isolation, store, int(calls), int(pairs)))
    if kind == "replay-a":
        store, session_id, calls = rest
        return asyncio.run(replay_host_a(isolation, store, session_id, int(calls)))
    if kind == "replay-b":
        store, session_id, cell_id = rest
        return asyncio.run(replay_host_b(isolation, store, session_id, cell_id))
    raise SystemExit(f"unknown worker {kind!r}")


def measure(isolations: list[str], sizes: Sizes) -> dict[str, Any]:
    postgres = postgres_url() is not None
    out: dict[str, Any] = {"postgres": postgres, "modes": {}}
    for isolation in isolations:
        warm: dict[str, list[dict[str, Any]]] = {name: [] for name in STORES}
        for _ in range(sizes.warm_samples):  # interleaved: both meet the same load
            for name in STORES:
                with fresh_store("sqlite") as url:
                    sample = run_worker(["warm", isolation, url if name == "sqlite" else "",
                                         str(sizes.warm_iterations)])
                warm[name].append(sample)
        with fresh_store("sqlite") as url:
            nested_rows = run_worker(["nested", isolation, url, str(sizes.nested_calls), str(sizes.nested_pairs)])
        replay: dict[str, Any] = {}
        for kind in ("sqlite", "postgresql") if postgres else ("sqlite",):
            samples = [replay_sample(isolation, kind, sizes.replay_calls) for _ in range(sizes.replay_samples)]
            replay[kind] = {key: statistics.median(s[key] for s in samples) for key in samples[0]} | {
                "samples": samples, "calls": sizes.replay_calls}
        out["modes"][isolation] = {
            "warm": {name: {"mean_s": statistics.mean(s["mean_s"] for s in v), "samples_s": [s["mean_s"] for s in v],
                            "median_s": statistics.median(s["mean_s"] for s in v),
                            "cpu_s": statistics.mean(s["cpu_s"] for s in v), "iterations": sizes.warm_iterations}
                     for name, v in warm.items()},
            "nested": nested_rows,
            "replay": replay,
        }
    return out


def report_lines(data: dict[str, Any]) -> list[str]:
    """A plain report in ms (run_all.py renders it with ratios to the floor instead)."""
    lines = []
    for isolation, m in data["modes"].items():
        w, n = m["warm"], m["nested"]
        lines.append(f"{isolation}: warm exec no store {w['none']['mean_s'] * 1e3:.3f} ms, SQLite "
                     f"{w['sqlite']['mean_s'] * 1e3:.3f} ms ({overhead(w['sqlite']['mean_s'], w['none']['mean_s'])}); "
                     f"{n['calls']}-call exec no store {n['none']['median_s'] * 1e3:.2f} ms, SQLite "
                     f"{n['sqlite']['median_s'] * 1e3:.2f} ms ({overhead(n['sqlite']['median_s'], n['none']['median_s'])})")
        for kind, r in m["replay"].items():
            lines.append(f"  replay of {r['calls']} calls ({kind}): B start {r['start_s'] * 1e3:.1f} ms, wait → completed "
                         f"{r['replay_s'] * 1e3:.1f} ms (A live {r['live_s'] * 1e3:.1f} ms)")
    return lines


def overhead(value: float, base: float) -> str:
    return f"{(value / base - 1) * 100:+.1f} %"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=4, help="fresh-process samples of the warm exec and the replay")
    parser.add_argument("--isolations", default=",".join(ISOLATIONS))
    parser.add_argument("--smoke", action="store_true", help="everything once at a tiny size, no settling")
    parser.add_argument("--json", help="also write the raw figures to this file")
    parser.add_argument("--worker", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker)))
        return
    if args.smoke:
        procstats.enter_smoke_mode()  # inherited by the worker processes
    isolations = [i for i in args.isolations.split(",") if i]
    if args.samples <= 0 or any(i not in ISOLATIONS for i in isolations):
        parser.error(f"--samples must be > 0 and --isolations from {', '.join(ISOLATIONS)}")
    data = measure(isolations, Sizes(args.smoke, args.samples))
    print("\n".join(report_lines(data)))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=1)


if __name__ == "__main__":
    main()
