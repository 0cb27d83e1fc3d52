"""What issue 23's targets leave room for: the parts every exec must pay, measured on this machine.

Usage:
    python benchmarks/bounds.py [--results benchmarks/RESULTS.md] [--smoke] [--json out.json]

Each target of issue 23 is a ratio to the raw engine floor (`floor.py`: a bare mini-racer context
created, `1+1` evaluated, the context closed). Some work cannot leave an exec without changing what
the model sees or a guarantee: every cell gets a fresh, never-used isolate; the isolate runs the
prelude (the helpers, the output ring, the determinism a durable cell needs); the process engine
runs V8 in a worker process. This script measures those parts alone, each in a fresh process
(CPU is the process's, all threads), and adds them up into the least each target's figure can be:

* a bare isolate created and freed, no eval (mini-racer's `mr_init_context`/`mr_free_context`);
* a prepared isolate: created, the prelude evaluated in it, freed (what the isolate pools make
  for every exec), and the prelude's parse alone (`(function () { <prelude> })`, never called);
* the first eval (`1`, awaited on the loop) in a prepared isolate that waited in its pool, as an
  exec's start meets it, and eval round trips into an isolate already used (mini-racer's hop to
  the isolate's thread and back, the least a resolved tool call crosses);
* an engine worker's start: the interpreter alone, the interpreter importing the worker's modules,
  and the real worker (`_supervisor.BOOTSTRAP`, one prepared isolate) until it sends `Ready`.
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
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import floor
from report_file import replace_section

START_MARK = "<!-- bounds.py: start -->"
END_MARK = "<!-- bounds.py: end -->"
CONCURRENT_CELLS = 200
TIMER_S = 0.050
WORKER_IMPORT = "import codemode._engine.process._worker"
PREPARED_PAUSE_S = 0.003  # a prepared isolate waits in its pool a little before an exec takes it


# -- in a fresh process -------------------------------------------------------------------------
async def _engine_parts(iterations: int) -> dict[str, float]:
    from codemode._engine.miniracer._compat import V8Context, init_v8
    from codemode._engine.miniracer._isolate import PRELUDE, Isolate

    init_v8()
    loop = asyncio.get_running_loop()
    floor_run = await floor.open_raw_floor()

    def cpu_per(make: Any) -> float:
        make()  # the first of a process pays one-time set-up
        started = time.process_time()
        for _ in range(iterations):
            make()
        return (time.process_time() - started) / iterations

    def bare() -> None:
        V8Context(loop, lambda: None).free()

    def prepared() -> None:
        Isolate(loop).free()

    wrapped = "(function () {\n" + PRELUDE + "\n}); 1"

    def parse_only() -> None:
        context = V8Context(loop, lambda: None)
        context.eval_blocking(wrapped)
        context.free()

    def trivial() -> None:
        context = V8Context(loop, lambda: None)
        context.eval_blocking("1")
        context.free()

    for _ in range(3):
        await floor_run()
    started = time.process_time()
    for _ in range(iterations):
        await floor_run()
    floor_cpu = (time.process_time() - started) / iterations

    first_evals = []
    for _ in range(iterations):
        isolate = Isolate(loop)
        await asyncio.sleep(PREPARED_PAUSE_S)
        t = time.perf_counter()
        await isolate.submit("1")
        first_evals.append(time.perf_counter() - t)
        isolate.free()

    isolate = Isolate(loop)
    await isolate.submit("1")
    round_trips = []
    for _ in range(iterations * 5):
        t = time.perf_counter()
        await isolate.submit("1")
        round_trips.append(time.perf_counter() - t)
    isolate.free()
    return {
        "floor_cpu_s": floor_cpu,
        "bare_cpu_s": cpu_per(bare),
        "prepared_cpu_s": cpu_per(prepared),
        "parse_cpu_s": cpu_per(parse_only) - cpu_per(trivial),
        "prelude_chars": len(PRELUDE),
        "round_trip_s": statistics.median(round_trips),
        "first_eval_s": statistics.median(first_evals),
    }


def _worker_start(samples: int) -> dict[str, float]:
    from codemode._engine.process._supervisor import BOOTSTRAP

    path = [p for p in sys.path if p]
    config = {"path": path, "host_pid": os.getpid(), "memory_cap_bytes": 0,
              "isolate_pool_size": 1, "max_frame_bytes": 1 << 20}

    def timed(argv: list[str]) -> float:
        started = time.perf_counter()
        subprocess.run(argv, check=True, env={"TZ": "UTC"})
        return time.perf_counter() - started

    bare = [timed([sys.executable, "-I", "-S", "-c", "pass"]) for _ in range(samples)]
    imports = [timed([sys.executable, "-I", "-S", "-c",
                      f"import sys, json; sys.path[:0] = json.loads(sys.argv[1]); {WORKER_IMPORT}", json.dumps(path)])
               for _ in range(samples)]
    ready = []
    for _ in range(samples):
        started = time.perf_counter()
        worker = subprocess.Popen([sys.executable, "-I", "-S", "-c", BOOTSTRAP, json.dumps(config)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, env={"TZ": "UTC"})
        assert worker.stdout is not None and worker.stdin is not None
        if not worker.stdout.read(1):
            raise RuntimeError("the engine worker ended before it was ready")
        ready.append(time.perf_counter() - started)
        worker.stdin.close()
        worker.wait(timeout=30)
    return {"python_s": statistics.median(bare), "imports_s": statistics.median(imports),
            "ready_s": statistics.median(ready)}


# -- the report -----------------------------------------------------------------------------
def measure(samples: int, iterations: int) -> dict[str, Any]:
    parts = []
    for _ in range(samples):
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", str(iterations)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
        parts.append(json.loads(done.stdout.strip().splitlines()[-1]))
    merged = {key: statistics.median(p[key] for p in parts) for key in parts[0]}
    floor_result = floor.measure(max(1, samples), iterations)
    merged["floor_s"] = floor_result["mean_s"]
    merged.update(_worker_start(max(3, samples)))
    merged["cores"] = os.cpu_count() or 1
    return merged


def section(r: dict[str, Any], pool_prepared: int) -> str:
    floor_s, floor_cpu = r["floor_s"], r["floor_cpu_s"]
    prelude_cpu = r["prepared_cpu_s"] - r["bare_cpu_s"]
    cores = r["cores"]
    burst_s = TIMER_S + max(0, CONCURRENT_CELLS - pool_prepared) * r["prepared_cpu_s"] / cores

    def wall(seconds: float) -> str:
        return f"{seconds * 1e3:.2f} ms" if seconds < 0.1 else f"{seconds * 1e3:.0f} ms"

    def ratio(seconds: float, of: float) -> str:
        return f"{seconds / of:.2f}×"

    rows = [
        ("the raw engine floor (create, `1+1`, close): wall / CPU", f"{wall(floor_s)} / {wall(floor_cpu)}", "1×", ""),
        ("a bare isolate created and freed, no eval (CPU)", wall(r["bare_cpu_s"]), ratio(r["bare_cpu_s"], floor_cpu), ""),
        (f"the prelude ({r['prelude_chars'] / 1024:.0f} KiB) evaluated in it (CPU)", wall(prelude_cpu),
         ratio(prelude_cpu, floor_cpu), ""),
        ("… of which parsing it (CPU; mini-racer offers no V8 code cache to skip this)", wall(r["parse_cpu_s"]),
         ratio(r["parse_cpu_s"], floor_cpu), ""),
        ("**a prepared isolate, made and freed: the CPU every exec costs before any message** (sustained CPU target ≤ 1.0×)",
         wall(r["prepared_cpu_s"]), f"**{ratio(r['prepared_cpu_s'], floor_cpu)}**", "over the target" if
         r["prepared_cpu_s"] > floor_cpu else "under the target"),
        (f"{CONCURRENT_CELLS} cells awaiting a {TIMER_S * 1e3:.0f} ms timer: the timer, plus the isolates beyond "
         f"the {pool_prepared} prepared ones made on {cores} cores (target ≤ 150 ms)", wall(burst_s),
         ratio(burst_s, floor_s), "over the target" if burst_s > 0.150 else "under the target"),
        ("**the first eval (`1`) in a prepared isolate: what every exec's start crosses before its script runs** "
         "(warm exec target ≤ 0.15×)", wall(r["first_eval_s"]), f"**{ratio(r['first_eval_s'], floor_s)}**",
         f"{r['first_eval_s'] / (0.15 * floor_s):.0%} of the target"),
        ("one eval round trip into an isolate already used (mini-racer's hop to its thread and back, the least a "
         "nested call crosses; target ≤ 0.08×)", wall(r["round_trip_s"]), ratio(r["round_trip_s"], floor_s),
         f"{r['round_trip_s'] / (0.08 * floor_s):.0%} of the target"),
        ("an engine worker: the interpreter alone (`python -I -S -c pass`)", wall(r["python_s"]),
         ratio(r["python_s"], floor_s), ""),
        ("… the interpreter importing the worker's modules (asyncio, mini-racer's Python, codemode's engine)",
         wall(r["imports_s"]), ratio(r["imports_s"], floor_s), ""),
        ("**… the worker started until it is ready (V8 up, one isolate prepared)** (first exec target ≤ 40×)",
         wall(r["ready_s"]), f"**{ratio(r['ready_s'], floor_s)}**",
         "over the target" if r["ready_s"] > 40 * floor_s else "under the target"),
    ]
    lines = [
        START_MARK,
        "## What the targets leave room for (`benchmarks/bounds.py`)",
        "",
        "The parts of an exec that stay whatever the code around them does, as long as every cell gets a fresh, "
        "never-used isolate with the prelude in it and V8 runs in an engine worker process; each in a fresh process, "
        "medians, ratios to the floor measured by this script (wall for wall, CPU for CPU).",
        "",
        "| part | measured | × floor | against its target |",
        "|---|---|---|---|",
        *[f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows],
        "",
        f"So on this machine a fresh prepared isolate per exec costs {ratio(r['prepared_cpu_s'], floor_cpu)} the floor's "
        f"CPU before a message moves, {CONCURRENT_CELLS} cells awaiting the timer take at least {wall(burst_s)}, and an "
        f"engine worker is ready {wall(r['ready_s'])} after its start; a warm exec's first eval alone is "
        f"{r['first_eval_s'] / (0.15 * floor_s):.0%} of its target, leaving {wall(max(0.0, 0.15 * floor_s - r['first_eval_s']))} "
        "for the script's run in the prelude, the host's session and (process mode) the worker's pipe.",
        "",
        END_MARK,
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--results", type=Path, help="replace this file's bounds section")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: does it still run?")
    parser.add_argument("--json")
    parser.add_argument("--pool-prepared", type=int, default=64,
                        help="isolates prepared before a burst (the default engine: 32 per worker, 2 workers up)")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(asyncio.run(_engine_parts(args.worker))))
        return
    samples, iterations = (1, 4) if args.smoke else (3, 30)
    result = measure(samples, iterations)
    text = section(result, args.pool_prepared)
    print(text)
    if args.results:
        replace_section(args.results, START_MARK, END_MARK, text)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
