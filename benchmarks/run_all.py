"""Run every benchmark and write benchmarks/RESULTS.md (a few minutes).

Usage:
    python benchmarks/run_all.py [--quick] [--out benchmarks/RESULTS.md]

Runs exec_overhead.py (the reference method), tool_calls.py and peers.py, each in its own
process, then writes the machine description, every table, and which targets are met.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import exec_overhead
import tool_calls

MIB = 1024 * 1024


def run(script: str, args: list[str]) -> Any:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as tmp:
        path = tmp.name
    try:
        cmd = [sys.executable, os.path.join(HERE, script), *args, "--json", path]
        print("$", " ".join(os.path.relpath(c) if c.startswith("/") else c for c in cmd[1:]), flush=True)
        subprocess.run(cmd, check=True)
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    finally:
        os.unlink(path)


def machine() -> list[str]:
    def cpuinfo(key: str) -> str:
        try:
            with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
                for line in fh:
                    if line.startswith(key):
                        return line.split(":", 1)[1].strip()
        except OSError:
            pass
        return "?"

    def meminfo() -> str:
        try:
            with open("/proc/meminfo", encoding="ascii") as fh:
                kib = int(fh.readline().split()[1])
            return f"{kib / MIB:.1f} GiB"
        except (OSError, ValueError, IndexError):
            return "?"

    probe = (
        "from py_mini_racer._dll import init_mini_racer; import importlib.metadata as m; "
        "print(init_mini_racer().mr_v8_version().decode(), m.version('mini-racer'))"
    )
    v8, mini_racer = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                                    check=False).stdout.split() or ["?", "?"]
    node = subprocess.run(["node", "--version"], capture_output=True, text=True, check=False).stdout.strip() or "absent"
    import importlib.metadata as md

    try:
        pydeno = md.version("pydeno")
    except md.PackageNotFoundError:
        pydeno = "not installed"
    return [
        f"* CPU: {cpuinfo('model name')}, {os.cpu_count()} cores (as the OS reports them)",
        f"* Memory: {meminfo()}",
        f"* OS: {platform.system()} {platform.release()} ({platform.machine()})",
        f"* Python {platform.python_version()}; mini-racer {mini_racer}, V8 {v8}; Node.js {node}; pydeno {pydeno}",
        f"* Load average when the run started: {', '.join(f'{x:.2f}' for x in os.getloadavg())}",
    ]


def ms(nanos: float) -> float:
    return nanos / 1e6


def targets(exec_rows: list[dict[str, Any]], tools: dict[str, Any]) -> list[str]:
    warm = [r for r in exec_rows if r["scenario"] == "warm_exec"]
    cold = [r for r in exec_rows if r["scenario"] == "cold_exec"]
    sequential = next(r for r in tools["round_trips"] if r["tool"] == "fast" and r["scenario"] == "100 sequential")
    one = next(r for r in tools["round_trips"] if r["tool"] == "fast" and r["scenario"] == "one call")
    hundred = next(r for r in tools["concurrent"] if r["cells"] == 100)
    many = tools["many"]
    warm_mean = max(ms(r["mean_exec_nanos"]) for r in warm)
    warm_p95 = max(ms(r["p95_exec_nanos"]) for r in warm)
    cold_exec = max(ms(r["mean_exec_nanos"]) for r in cold)
    cold_total = max(ms(r["mean_exec_nanos"] + r["session_start_nanos"]) for r in cold)
    warm_rss = max(r["rss_max_bytes"] for r in warm) / MIB
    round_trip = max(sequential["per_call_s"], one["per_call_s"]) * 1e3
    # Flat = no upward trend: the second half of the run peaks no higher than the first half
    # (plus a small tolerance), whatever the pool happens to hold at the last sample.
    half = len(many["samples"]) // 2
    first, second = many["samples"][:half], many["samples"][half:]
    rss_growth = (max(x["rss"] for x in second) - max(x["rss"] for x in first)) / MIB if half else 0.0
    threads_flat = not half or max(x["threads"] for x in second) <= max(x["threads"] for x in first) + 2

    def row(name: str, goal: str, value: str, ok: bool) -> str:
        return f"| {name} | {goal} | {value} | {'met' if ok else '**not met**'} |"

    return [
        "| target | goal | measured (worst of 0/32/128 tools) | |",
        "|---|---|---|---|",
        row("warm_exec mean", "≤ 0.5 ms", f"{warm_mean:.3f} ms", warm_mean <= 0.5),
        row("warm_exec p95", "≤ 0.8 ms", f"{warm_p95:.3f} ms", warm_p95 <= 0.8),
        row("first exec in a fresh process: the exec call (cold_exec as the reference times it)", "≤ 60 ms",
            f"{cold_exec:.2f} ms", cold_exec <= 60),
        row("first exec in a fresh process: session start + exec (V8 init + first isolate + exec)", "≤ 60 ms",
            f"{cold_total:.1f} ms", cold_total <= 60),
        row("warm rssΔ (max over samples)", "≤ 1.5 MiB", f"{warm_rss:.2f} MiB", warm_rss <= 1.5),
        row("nested tool round trip (async tool returning at once)", "≤ 0.3 ms",
            f"one call {one['per_call_s'] * 1e3:.3f} ms, 100 sequential {sequential['per_call_s'] * 1e3:.3f} ms/call",
            round_trip <= 0.3),
        row("100 concurrent cells each awaiting a 50 ms tool", "≤ 0.3 s wall",
            f"{hundred['wall_s']:.3f} s (max {hundred['wall_max_s']:.3f} s)", hundred["wall_s"] <= 0.3),
        row(f"RSS flat over {many['execs']:,} execs", "flat",
            f"{many['rss_start'] / MIB:.1f} → {many['rss_end'] / MIB:.1f} MiB (max {many['rss_max'] / MIB:.1f}; "
            f"2nd-half peak - 1st-half peak: {rss_growth:+.1f} MiB)",
            rss_growth <= 2),
        row(f"threads flat over {many['execs']:,} execs", "flat",
            f"{many['threads_start']} → {many['threads_end']} (max {many['threads_max']}; the pool's isolates each "
            "own a thread, so the count follows the pool's fill)", threads_flat),
    ]


SUMMARY = """\
**Reading these numbers.** The table above is this run's. The exec-level targets sit right at
the line: four consecutive full runs on a fairly quiet machine (load average 0.4–2.8) gave a
worst-case warm mean of 0.49–0.55 ms (p95 0.53–0.65 ms) and a nested tool round trip of
0.26–0.42 ms, so either may show as met or not met in a given run; while other processes loaded this 2-core VM (load average 5–10 during
development) the same code measured warm means of 0.55–1.1 ms, tool round trips of 0.35–0.42 ms
and 100 concurrent cells in 0.33–0.37 s.
A fresh process's *first* exec including session start takes ~50–65 ms: V8 initialisation
(~30–40 ms) plus preparing the first isolate; `start()` returns then and the rest of the pool fills
in the background, which slows that first exec to ~2–3 ms. It sits on the 60 ms line: met on a
quiet machine, not under load. The price of every exec getting a never-used isolate is
paid in CPU off the critical path: `cpu/exec` ~3.5–4.5 ms, and sustained back-to-back execs run at
2.0–2.4 ms each once the pool is empty. An exec that follows an idle pause takes ~1 ms (thread
wake-ups on this VM), which back-to-back benchmarks do not show.
"""

ANALYSIS = """\
## Where the time goes (profiled with perf, cProfile and timestamps on this machine)

**One exec with a prepared isolate** (`text("bench")`, back to back): ~0.45–0.55 ms of wall time.
Measured pieces (medians, quiet machine):
* **event loop thread: ~0.3 ms of CPU per exec**, about half Python (parse the pragma, skip the
  import rewrite, create the cell, build the wrapper, read the ring twice, decode two JSON
  messages, finish the cell, format the result) and half kernel work (futex wake-ups, self-pipe
  `send`/`recv`, `epoll`, context switches: each system call costs 10–20 µs on this VM).
* **the hop into a never-used isolate: 0.1–0.17 ms.** A bare `eval("1")` round trip on a pooled,
  never-used isolate takes 100–170 µs; the same call again on that isolate takes ~65 µs; its
  thread has been asleep since it was prepared (cold caches, a futex wake-up). Poking the next
  isolate ahead of time did not help. Every exec pays this by design (a fresh isolate).
* **V8 running the script: ~0.1 ms** (compile the ~150-byte wrapper, run it, settle its promise,
  write two ring messages). Before this work another ~0.25 ms went to V8 *lazily compiling the
  prelude's functions* on their first call; they are now compiled while the isolate is prepared.
* **two or three isolate → Python callbacks** (the ping for the first message, the eval's
  completion, sometimes a second ping for `done`), each taking the GIL and writing to the
  loop's self-pipe. mini-racer offers no other way out of a running isolate.

**Preparing an isolate** (off the critical path, on the isolate threads): ~2.5–3 ms of CPU:
`Isolate::New` ~0.7 ms (a third of it deserialising the read-only heap, which this V8 build does
not share between isolates), `Context::New` ~0.3–0.4 ms, compiling and running the ~20 KB prelude
with the tool table ~1 ms, Python and ctypes ~0.2 ms, plus ~0.3 ms to free it afterwards. So
`cpu/exec` (all threads, until the process is quiet again) is ~3–4.5 ms while the exec itself is
~0.5 ms: a fresh, never-reused isolate per exec costs that CPU whichever thread pays it.

**Consequences.**
* A burst of up to ~30 execs is served from the pool at ~0.5 ms each; *sustained* back-to-back
  execs (part 3 of the tool-call benchmark) are bounded by isolate creation: ~3–4 ms of CPU per
  exec, ~2–2.5 ms per exec of wall time on two cores.
* Session start pays V8 initialisation (~30–40 ms, once per process) and one isolate; the pool
  (32 isolates by default, `CodeMode(isolate_pool_size=...)`, ~1 MiB RSS and one native thread
  each) fills in the background; `await cm.start(fill_pool=True)` waits for all of it
  (~90–135 ms), which the warm_exec scenario does before measuring. The reference
  creates its isolate inside the exec (~0.5 ms with rusty_v8); mini-racer's isolate costs 5×
  that, so it cannot be on the critical path and has to be prepared ahead.
* After an idle pause every cross-thread wake-up costs more (a bare mini-racer eval round trip is
  0.05 ms back to back and 0.3–0.4 ms after a 20 ms pause on this VM), so an exec that follows a
  pause takes ~1 ms instead of ~0.5 ms: the reference method (back-to-back execs) does not show it.
* A nested tool call costs one isolate → loop wake-up (the ping), the tool's task, and one eval of
  a short `resolve(...)` script (plus its completion callback): ~0.25–0.4 ms. Results of parallel
  calls that arrive in the same loop iteration travel in one eval (`Promise.all` of 100: 12 ms →
  ~5 ms). Sync tool handlers run in a worker thread (`asyncio.to_thread`): two more thread hops.
"""

CHANGES = """\
## What changed in the engine (`src/codemode/_engine/miniracer/`)

* **Pool of prepared isolates, sized for bursts, with deferred background work** (`_Pool`): 32 per
  session (was 2), prepared by 4 isolate threads in parallel (was 1). Creating and freeing are
  deferred while execs follow each other closely (no cell started for 20 ms), so a burst takes
  prepared isolates without competing with their creation for the CPU; the work runs anyway when
  fewer than 4 are ready, when a cell waits for one (it is then handed the next one created), and
  when finished isolates wait more than 0.25 s or number 32. An idle session (30 s without a cell)
  keeps only 2 and refills after its next exec. Every exec still gets a fresh, never-used isolate.
* **`CodeMode.start()` waits for V8 and the first isolate**; `start(fill_pool=True)` waits until
  the pool is full (`EngineSession.ready()`).
* **The prelude's hot functions are compiled while an isolate is prepared** (`prelude.js`: `send`,
  `toText`, `finish`, `callTool`, `text`, `store`, `load`, the tool stubs, `run`, `resolve` are
  parenthesized function expressions, which V8 compiles eagerly; checked with
  `--log-function-events`): lazy compilation on the first exec was a third of its CPU. (`--no-lazy`
  did the same but compiled every function, raising the preparation cost.)
* **Value handles are freed in batches** (`_Context`): each mini-racer value handle used to be
  freed by its own ctypes call on the event loop, 3–4 per exec, each giving up and retaking the
  GIL while the isolate's callbacks wait for it; a context's values now die with the context (or
  in batches of 256 in long cells). The event loop's time per exec dropped by ~40 % in cProfile.
  Callbacks from one isolate that arrive before the loop handled the previous ones share one
  wake-up of the loop (one self-pipe write and read).
* **The tool table reaches the prelude as a JSON string for `JSON.parse`** (cheaper to compile than
  an object literal), built once per session instead of once per isolate.
* **Tool results of parallel calls are batched** into one eval per loop iteration; the last open
  call is resolved at once.
* **The first context of a process is created alone**: two first contexts created at once crash V8
  (a fatal CHECK in its array-buffer allocator set-up), which parallel preparation exposed.
"""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples (a smoke run)")
    parser.add_argument("--out", default=os.path.join(HERE, "RESULTS.md"))
    args = parser.parse_args(argv)
    started = time.time()
    description = machine()
    samples = ["--samples", "3"] if args.quick else []
    exec_rows = run("exec_overhead.py", samples)
    tools = run("tool_calls.py", ["--quick", "--execs", "2000"] if args.quick else [])
    peers = run("peers.py", ["--samples", "2" if args.quick else "5"])
    load_end = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    from peers import table as peers_table

    lines = [
        "# codemode benchmarks",
        "",
        f"Written by `benchmarks/run_all.py` on {time.strftime('%Y-%m-%d %H:%M', time.localtime(started))} "
        f"in {time.time() - started:.0f} s (`make bench`). Wall-clock numbers on a shared 2-core VM move by "
        "±30 % with the load of other processes; CPU numbers move less.",
        "",
        "## Machine",
        "",
        *description,
        f"* Load average when the run ended: {load_end}",
        "",
        "## Targets",
        "",
        *targets(exec_rows, tools),
        "",
        SUMMARY,
        "",
        "## exec overhead — the reference benchmark's method (`benchmarks/exec_overhead.py`)",
        "",
        "Fresh process per sample; `cold_exec` = one exec, no warm-up; `warm_exec` = 25 execs after one "
        "warm-up; mean of per-sample means, p95 over per-sample means, max-RSS delta from getrusage. "
        "Beyond the reference: `cpu/exec` = process CPU of all threads (isolate threads included) from the "
        "start of the timed execs until the process is quiet again, per exec — so the pool refill and the "
        "frees the execs caused are charged to them; `start` = `async with CodeMode(...)` entry, where V8 "
        "is initialised and the first isolate prepared (warm_exec also waits for the full pool); the "
        "reference's cold_exec includes V8 init in the exec, here it is in `start`.",
        "",
        exec_overhead.markdown_table(exec_rows),
        "",
        "Reference (Rust, V8 in-process, published in PR #15276, other hardware): cold 1.03–1.14 ms, "
        "warm 473–575 µs mean, rssΔ p50 736–960 KiB.",
        "",
        *tool_calls.report_lines(tools),
        "",
        "## Peers (`benchmarks/peers.py`)",
        "",
        *peers_table(peers["rows"], peers["failures"]),
        "",
        "What each peer does per exec: codemode takes a prepared isolate and runs the script with its prelude "
        "(text/tools/store/…); the raw engine floor creates a bare mini-racer context, evaluates `1+1` and frees "
        "it (nothing prepared ahead); the node runner starts a worker_threads Worker in a long-lived Node process "
        "(the reference's pre-V8 design); pydeno runtime creates and closes an in-process `pydeno.Runtime`; "
        "pydeno codemode checks out a pre-started, OS-sandboxed worker process from `AsyncPydeno` and runs one "
        "`feed_run` (a different isolation level: a process per session).",
        "",
        ANALYSIS,
        CHANGES,
    ]
    with open(args.out, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    print(f"wrote {args.out} in {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
