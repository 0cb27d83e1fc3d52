"""exec overhead, measured the way the reference benchmark measures it (spec section 7).

Usage:
    python benchmarks/exec_overhead.py [--samples N] [--warm-iterations N] [--tool-counts 0,32,128]
                                       [--isolations process,in-process] [--smoke]

Two scenarios per isolation mode and tool count, each sample in a fresh process (this script
re-executes itself with --worker):
  * cold_exec: one exec in a fresh process (includes V8 initialisation and the first isolate);
  * warm_exec: --warm-iterations execs after one warm-up exec.

A worker builds T dummy tools `bench_tool_0000`... ("Benchmark tool <i>", no schemas), runs the
warm-ups, records the max-RSS baseline (getrusage ru_maxrss), then times each
`await cm.exec('text("bench");')` by the wall clock; every exec must complete with exactly one
item. In process mode the max RSS is the host's plus each engine worker's peak (VmHWM). The summary is the mean of the per-sample means, p95 over the sorted per-sample means at
index floor((n-1)*95/100), and the p50/max of the per-sample max-RSS deltas.

Modes: `isolation="process"` (the default: V8 in engine worker processes) and "in-process".
warm_exec waits, before its warm-up, until the host *and the engine workers* are quiet (the
isolate pools full, the spare worker started), so the timed execs meet the steady state.

Beyond the reference, each warm worker also reports CPU time per exec: CPU of the host (every
thread) plus every engine worker process (/proc/<pid>/stat, 10 ms ticks: coarse over 25 execs;
`tool_calls.py` measures sustained CPU over thousands) from the start of the timed loop until
everything is quiet again (so background work the timed execs caused, refilling isolate pools
and freeing isolates, is charged to them), divided by the iteration count. And the session
start (`async with CodeMode(...)` entry), where V8 is initialised (in-process) or the first
engine worker is started (process): the reference's service creation does neither, so for
cold_exec "first exec in a fresh process" = start + mean/exec.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import procstats

DEFAULT_SAMPLES = 5
DEFAULT_WARM_ITERATIONS = 25
DEFAULT_WARMUPS = 1
DEFAULT_TOOL_COUNTS = (0, 32, 128)
BENCH_SOURCE = 'text("bench");'
SCENARIOS = ("cold_exec", "warm_exec")
ISOLATIONS = ("process", "in-process")


# -- formatting (the reference's units) ------------------------------------------------------
def format_duration_nanos(nanos: float) -> str:
    nanos = int(nanos)
    if nanos >= 1_000_000_000:
        return f"{nanos / 1_000_000_000:.2f}s"
    if nanos >= 1_000_000:
        return f"{nanos / 1_000_000:.2f}ms"
    if nanos >= 1_000:
        return f"{nanos / 1_000:.2f}us"
    return f"{nanos}ns"


def format_bytes(n: float) -> str:
    n = int(n)
    kib, mib, gib = 1024, 1024**2, 1024**3
    if n >= gib:
        return f"{n / gib:.2f}GiB"
    if n >= mib:
        return f"{n / mib:.2f}MiB"
    if n >= kib:
        return f"{n / kib:.2f}KiB"
    return f"{n}B"


def percentile(values: list[int], pct: int) -> int:
    ordered = sorted(values)
    return ordered[((len(ordered) - 1) * pct) // 100]


# -- worker ----------------------------------------------------------------------------------
def max_rss_bytes(isolation: str = "in-process") -> dict[int | str, int]:
    """Peak RSS of the host ("self"), and of each engine worker (VmHWM) in process mode."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    peaks: dict[int | str, int] = {"self": rss if sys.platform == "darwin" else rss * 1024}
    for pid in procstats.engine_pids(isolation):
        try:
            with open(f"/proc/{pid}/status", encoding="ascii") as fh:
                peaks[pid] = next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmHWM:"))
        except (OSError, StopIteration):
            pass
    return peaks


def max_rss_growth(before: dict[int | str, int], after: dict[int | str, int]) -> int:
    """Growth of the peaks of the processes measured both times (a worker started meanwhile is
    not counted: its whole start-up would be)."""
    return sum(max(0, after[key] - before[key]) for key in before if key in after)


def benchmark_tools(count: int) -> list[Any]:
    from codemode import Tool

    def handler(_args: Any) -> dict[str, Any]:
        return {}

    return [Tool(f"bench_tool_{i:04d}", f"Benchmark tool {i}", handler) for i in range(count)]


async def execute_benchmark_script(cm: Any) -> Any:
    result = await cm.exec(BENCH_SOURCE)
    if result.status != "completed" or result.error is not None:
        raise RuntimeError(f"benchmark exec failed unexpectedly: {result.status} {result.error!r}")
    if len(result.items) != 1:
        raise RuntimeError(f"benchmark exec produced unexpected content item count: {len(result.items)}")
    return result


async def run_worker(scenario: str, tool_count: int, iterations: int, warmups: int, isolation: str) -> dict[str, Any]:
    from codemode import CodeMode

    tools = benchmark_tools(tool_count)
    start_began = time.perf_counter_ns()
    async with CodeMode(tools=tools, isolation=isolation) as cm:  # type: ignore[arg-type]
        if scenario == "warm_exec":
            await cm.start(fill_pool=True)  # warm = steady state: the isolate pool is full
        session_start = time.perf_counter_ns() - start_began
        if scenario == "warm_exec":
            await procstats.settle(isolation, in_smoke=True)  # and the workers' pools, and the spare worker
        for _ in range(warmups):
            await execute_benchmark_script(cm)
        baseline_rss = max_rss_bytes(isolation)
        times: list[int] = []
        meter = procstats.CpuMeter(isolation)
        for _ in range(iterations):
            started = time.perf_counter_ns()
            await execute_benchmark_script(cm)
            times.append(time.perf_counter_ns() - started)
        max_rss_delta = max_rss_growth(baseline_rss, max_rss_bytes(isolation))
        cpu_settled = None
        if scenario == "warm_exec":
            await procstats.settle(isolation)
            cpu_settled = meter.total()
    total = sum(times)
    return {
        "scenario": scenario,
        "isolation": isolation,
        "tool_count": tool_count,
        "iterations": iterations,
        "warmups": warmups,
        "mean_exec_nanos": total // iterations,
        "min_exec_nanos": min(times),
        "max_exec_nanos": max(times),
        "total_exec_nanos": total,
        "max_rss_delta_bytes": max_rss_delta,
        "cpu_nanos_per_exec": None if cpu_settled is None else int(cpu_settled * 1e9 / iterations),
        "session_start_nanos": session_start,
        "exec_nanos": times,
    }


# -- parent ----------------------------------------------------------------------------------
def run_sample(scenario: str, tool_count: int, iterations: int, warmups: int, isolation: str) -> dict[str, Any]:
    cmd = [
        sys.executable, os.path.abspath(__file__), "--worker", "--scenario", scenario,
        "--tool-count", str(tool_count), "--iterations", str(iterations), "--warmups", str(warmups),
        "--isolation", isolation,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(
            f"benchmark worker failed for {isolation} {scenario} / tools {tool_count}: {proc.stderr.strip()}"
        )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def summarize(scenario: str, tool_count: int, isolation: str, reports: list[dict[str, Any]]) -> dict[str, Any]:
    means = [r["mean_exec_nanos"] for r in reports]
    rss = [r["max_rss_delta_bytes"] for r in reports]
    cpu = [r["cpu_nanos_per_exec"] for r in reports if r["cpu_nanos_per_exec"] is not None]
    return {
        "scenario": scenario,
        "isolation": isolation,
        "tools": tool_count,
        "samples": len(reports),
        "warmups": reports[0]["warmups"],
        "iters": reports[0]["iterations"],
        "mean_exec_nanos": sum(means) // len(means),
        "p95_exec_nanos": percentile(means, 95),
        "rss_p50_bytes": percentile(rss, 50),
        "rss_max_bytes": max(rss),
        "cpu_exec_nanos": sum(cpu) // len(cpu) if cpu else None,
        "max_single_exec_nanos": max(r["max_exec_nanos"] for r in reports),
        "session_start_nanos": sum(r["session_start_nanos"] for r in reports) // len(reports),
        # mean time of the i-th timed exec over the samples (to see where a pool runs low)
        "by_position_nanos": [sum(r["exec_nanos"][i] for r in reports) // len(reports)
                              for i in range(len(reports[0]["exec_nanos"]))],
    }


def run_benchmark(samples: int, warm_iterations: int, tool_counts: list[int],
                  isolations: list[str]) -> list[dict[str, Any]]:
    rows = []
    for tool_count in tool_counts:
        for scenario in SCENARIOS:
            for isolation in isolations:
                iterations, warmups = (1, 0) if scenario == "cold_exec" else (warm_iterations, DEFAULT_WARMUPS)
                reports = [run_sample(scenario, tool_count, iterations, warmups, isolation) for _ in range(samples)]
                rows.append(summarize(scenario, tool_count, isolation, reports))
    return rows


HEADER = ("scenario", "isolation", "tools", "samples", "warmups", "iters", "mean/exec", "p95/exec", "rssΔ p50", "rssΔ max",
          "cpu/exec", "start")


def table_lines(rows: list[dict[str, Any]]) -> list[str]:
    fmt = "{:<12} {:<10} {:>7} {:>7} {:>10} {:>10} {:>14} {:>14} {:>14} {:>14} {:>14} {:>14}"
    lines = [fmt.format(*HEADER)]
    for row in rows:
        lines.append(fmt.format(
            row["scenario"], row["isolation"], row["tools"], row["samples"], row["warmups"], row["iters"],
            format_duration_nanos(row["mean_exec_nanos"]), format_duration_nanos(row["p95_exec_nanos"]),
            format_bytes(row["rss_p50_bytes"]), format_bytes(row["rss_max_bytes"]),
            cpu_text(row), format_duration_nanos(row["session_start_nanos"]),
        ))
    lines.append("memory uses a fresh-process max RSS delta for each scenario")
    lines.append("cpu/exec = CPU of the host (all threads) + the engine workers, timed loop until all is quiet again, per exec")
    lines.append("start = `async with CodeMode(...)` entry before the first exec (in-process: V8 init + first isolate; "
                 "process: the first engine worker up; warm_exec: + the full pool)")
    return lines


def cpu_text(row: dict[str, Any]) -> str:
    return "-" if row["cpu_exec_nanos"] is None else format_duration_nanos(row["cpu_exec_nanos"])


def markdown_table(rows: list[dict[str, Any]]) -> str:
    out = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for row in rows:
        out.append("| " + " | ".join([
            row["scenario"], row["isolation"], str(row["tools"]), str(row["samples"]), str(row["warmups"]), str(row["iters"]),
            format_duration_nanos(row["mean_exec_nanos"]), format_duration_nanos(row["p95_exec_nanos"]),
            format_bytes(row["rss_p50_bytes"]), format_bytes(row["rss_max_bytes"]),
            cpu_text(row), format_duration_nanos(row["session_start_nanos"]),
        ]) + " |")
    return "\n".join(out)


def parse_tool_counts(text: str) -> list[int]:
    counts = [int(part) for part in (p.strip() for p in text.split(",")) if part]
    if not counts:
        raise argparse.ArgumentTypeError("--tool-counts must include at least one count")
    return counts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=DEFAULT_SAMPLES)
    parser.add_argument("--warm-iterations", type=int, default=DEFAULT_WARM_ITERATIONS)
    parser.add_argument("--tool-counts", type=parse_tool_counts, default=list(DEFAULT_TOOL_COUNTS))
    parser.add_argument("--isolations", default=",".join(ISOLATIONS),
                        help="comma-separated isolation modes (process, in-process)")
    parser.add_argument("--smoke", action="store_true",
                        help="1 sample of 12 warm execs, 0 tools, no settling: does it still run?")
    parser.add_argument("--json", help="also write the summary rows to this file")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--scenario", choices=SCENARIOS, help=argparse.SUPPRESS)
    parser.add_argument("--tool-count", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--iterations", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--warmups", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--isolation", choices=ISOLATIONS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        report = asyncio.run(run_worker(args.scenario, args.tool_count, args.iterations, args.warmups,
                                           args.isolation))
        print(json.dumps(report))
        return
    if args.smoke:
        procstats.enter_smoke_mode()  # inherited by the sample processes
        args.samples, args.warm_iterations, args.tool_counts = 1, 12, [0]
    if args.samples <= 0 or args.warm_iterations <= 0:
        parser.error("--samples and --warm-iterations must be greater than 0")
    isolations = [i for i in args.isolations.split(",") if i]
    if any(i not in ISOLATIONS for i in isolations):
        parser.error(f"--isolations: choose from {', '.join(ISOLATIONS)}")
    rows = run_benchmark(args.samples, args.warm_iterations, args.tool_counts, isolations)
    print(f"exec_overhead: samples={args.samples}, warm_iterations={args.warm_iterations}, "
          f"tool_counts={args.tool_counts}, isolations={isolations}")
    print("\n".join(table_lines(rows)))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
