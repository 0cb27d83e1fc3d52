"""Run every benchmark in both isolation modes and write benchmarks/RESULTS.md (~2-3 minutes).

Usage:
    python benchmarks/run_all.py [--quick | --smoke] [--out benchmarks/RESULTS.md]

Parts, each in its own process: floor.py (the raw engine floor) before and after every other
part; exec_overhead.py (the reference method, both modes interleaved); tool_calls.py once per
mode (pause, nested tool calls, concurrent cells, sustained execs, where the time goes);
peers.py; durable.py (what durable cells cost: journaling on the exec path, replaying a cell). Then writes the machine description, both modes side by side with every figure also
as a ratio to the floor, the targets and whether they are met, and where the time goes; last,
tokens.py appends its token table (direct tool calling vs code mode), http_load.py its table of
50 MCP clients over streamable HTTP, profiles.py its py-spy profiles of the exec paths and bounds.py
the parts every exec must pay (what issue 23's targets leave room for) to the same file.

Every part but bounds.py (which measures the engine's own parts alone) uses codemode's public API only. `--smoke` (`make bench-smoke`, in `make test`) runs
every part at a tiny size without settling and writes the report to a temp file (never to
RESULTS.md): it checks that the benchmarks and this report still run, and fails on a gross
regression of the warm exec or the nested call (`GROSS_FACTOR` times its target, as a ratio to
the floor of the same run: noise cannot reach it, a broken fast path does).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import exec_overhead  # noqa: E402

MIB = 1024 * 1024
MODES = ("process", "in-process")
RESULTS = os.path.join(HERE, "RESULTS.md")
DROPPED = ("Dropped when the benchmarks moved to the public API only (issue 18): the finer phases of a warm exec "
           "(START written, EVENTS read, delivered) and the bare no-op round trips over the worker pipe and into "
           "a prepared isolate. They wrapped the engines' private classes, so every refactor of the engine broke "
           "them silently. The split above is where the public API sees the events arrive (`on_notify`), and "
           "the OS's own pipe round trip stands for the transport.")
LABEL = {"process": 'process (default)', "in-process": "in-process"}
# Issue 23's targets for the default engine: ratios to the floor of the same run, but timers_s (wall).
TARGETS = {"warm": 0.15, "pause": 0.25, "nested": 0.08, "sustained_cpu": 1.0, "first": 40, "timers_s": 0.150}
GROSS_FACTOR = 15  # `--smoke` fails when the warm exec or a nested call costs this many times its target


def run(script: str, args: list[str]) -> Any:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as tmp:
        path = tmp.name
    try:
        cmd = [sys.executable, os.path.join(HERE, script), *args, "--json", path]
        print("$", " ".join(os.path.relpath(c) if c.startswith("/") else c for c in cmd[1:]), flush=True)
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
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
    try:
        node = subprocess.run(["node", "--version"], capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        node = ""
    import importlib.metadata as md

    try:
        pydeno = md.version("pydeno")
    except md.PackageNotFoundError:
        pydeno = "not installed"
    from codemode import engines

    config = engines.ProcessEngine().config
    return [
        f"* CPU: {cpuinfo('model name')}, {os.cpu_count()} cores (as the OS reports them)",
        f"* Memory: {meminfo()}",
        f"* OS: {platform.system()} {platform.release()} ({platform.machine()})",
        f"* Python {platform.python_version()}; mini-racer {mini_racer}, V8 {v8}; Node.js {node or 'absent'}; "
        f"pydeno {pydeno}",
        f"* Default process engine here: {config.workers} workers in service at most + 1 spare, "
        f"{config.cells_per_worker} cells and {config.heap_per_worker // MIB} MiB of heap limits per worker, "
        f"{config.isolate_pool_size} prepared isolates per worker; in-process: one pool per event loop",
        f"* Load average when the run started: {', '.join(f'{x:.2f}' for x in os.getloadavg())}",
    ]


# -- formatting ------------------------------------------------------------------------------
def ms(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    if abs(seconds) >= 0.1:
        return f"{seconds * 1e3:.0f} ms"
    if abs(seconds) >= 0.01:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds * 1e3:.3f} ms" if abs(seconds) < 0.001 else f"{seconds * 1e3:.2f} ms"


def x(seconds: float | None, floor: float) -> str:
    return "n/a" if seconds is None else f"{seconds / floor:.2f}×"


class Report:
    def __init__(self, floors: list[dict[str, Any]], exec_rows: list[dict[str, Any]], tools: dict[str, Any],
                 peers: dict[str, Any], cores: int, durable: dict[str, Any] | None = None) -> None:
        self.floors = floors  # floors[i] was measured before part i (and after part i - 1)
        self.exec_rows = exec_rows
        self.tools = tools  # by mode
        self.peers = peers
        self.durable = durable  # None in raw files from before durable.py
        self.floor_all = statistics.mean(f["mean_s"] for f in floors)
        self.cores = cores

    def floor(self, part: int) -> float:
        """The floor of a part: the mean of the floors measured right before and after it."""
        return (self.floors[part]["mean_s"] + self.floors[part + 1]["mean_s"]) / 2

    # parts: 0 exec_overhead, 1 tool_calls process, 2 tool_calls in-process, 3 peers, 4 durable
    def tool_floor(self, mode: str) -> float:
        return self.floor(1 if mode == "process" else 2)

    # -- figures -------------------------------------------------------------------------------
    def warm(self, mode: str) -> dict[str, Any]:
        return max((r for r in self.exec_rows if r["scenario"] == "warm_exec" and r["isolation"] == mode),
                   key=lambda r: r["mean_exec_nanos"])

    def warm_split(self, mode: str, tools: int = 0) -> tuple[float, float, int]:
        row = next(r for r in self.exec_rows
                   if r["scenario"] == "warm_exec" and r["isolation"] == mode and r["tools"] == tools)
        positions = row["by_position_nanos"]
        cut = 11
        return (statistics.mean(positions[:cut]) / 1e9, statistics.mean(positions[cut:]) / 1e9, cut)

    def first_exec(self, mode: str) -> float:
        return max((r["mean_exec_nanos"] + r["session_start_nanos"]) / 1e9 for r in self.exec_rows
                   if r["scenario"] == "cold_exec" and r["isolation"] == mode)

    def round_trip(self, mode: str, tool: str = "fast", scenario: str = "100 sequential") -> float:
        return next(r["per_call_s"] for r in self.tools[mode]["round_trips"]
                    if r["tool"] == tool and r["scenario"] == scenario)

    def fast_paths(self) -> list[tuple[str, float, float]]:
        """The figures `--smoke` checks for gross regressions, in either mode, as (what, ratio to
        the floor, target): the warm exec without tools (the median exec: one slow exec is noise)
        and a sequential nested call (the mean over 100 calls)."""
        figures = []
        for mode in MODES:
            warm = next(r for r in self.exec_rows
                        if r["scenario"] == "warm_exec" and r["isolation"] == mode and r["tools"] == 0)
            warm_s = statistics.median(warm["by_position_nanos"]) / 1e9
            figures += [(f"warm exec (0 tools, median), {LABEL[mode]}", warm_s / self.floor(0), TARGETS["warm"]),
                        (f"nested call, {LABEL[mode]}", self.round_trip(mode) / self.tool_floor(mode), TARGETS["nested"])]
        return figures

    def concurrent(self, mode: str, what: str) -> dict[str, Any]:
        """The row of the most cells at once (200, or fewer in a smoke run)."""
        return max((r for r in self.tools[mode]["concurrent"] if r["what"] == what), key=lambda r: r["cells"])

    # -- sections ------------------------------------------------------------------------------
    def summary(self) -> list[str]:
        f0 = self.floor(0)
        rows: list[tuple[str, dict[str, float | None], str, Any]] = []

        def add(name: str, values: dict[str, float | None], floors: dict[str, float], target: str = "",
                limit: float | None = None, limit_s: float | None = None) -> None:
            """`limit`: the target as a ratio to the floor; `limit_s`: as a wall time."""
            rows.append((name, {m: values[m] for m in MODES}, target, (limit, limit_s, floors)))

        same = {m: f0 for m in MODES}
        tf = {m: self.tool_floor(m) for m in MODES}
        add("warm exec, the reference method (mean of 25 execs, worst of 0/32/128 tools)",
            {m: self.warm(m)["mean_exec_nanos"] / 1e9 for m in MODES}, same, f"≤ {TARGETS['warm']}×", TARGETS["warm"])
        add("… its execs 1–11 / 12–25 (0 tools)", {m: None for m in MODES}, same)
        pool = self.tools["process"]["breakdown"]["pool_size"]
        add(f"… the same loop on `ProcessEngine(isolate_pool_size={pool['other']['isolate_pool_size']})` (3 tools, "
            f"2 rounds in tool_calls.py; the default engine there, {pool['default']['isolate_pool_size']} per "
            f"worker: {ms(pool['default']['mean_s'])})",
            {"process": pool["other"]["mean_s"], "in-process": None},
            {m: self.tool_floor("process") for m in MODES})
        add(f"exec after a {self.tools['process']['pause']['pause_s'] * 1e3:.0f} ms pause (mean of 20)",
            {m: self.tools[m]["pause"]["after_pause"]["mean_s"] for m in MODES}, tf, f"≤ {TARGETS['pause']}×",
            TARGETS["pause"])
        add("… its median", {m: self.tools[m]["pause"]["after_pause"]["median_s"] for m in MODES}, tf)
        add("12 execs back to back in the same session (mean)",
            {m: self.tools[m]["pause"]["back_to_back"]["mean_s"] for m in MODES}, tf)
        add("nested tool round trip (100 sequential awaits of an async tool that returns at once, per call)",
            {m: self.round_trip(m) for m in MODES}, tf, f"≤ {TARGETS['nested']}×", TARGETS["nested"])
        add("… one call (exec with it - exec without, medians of pairs)",
            {m: self.round_trip(m, scenario="one call") for m in MODES}, tf)
        add("sustained back to back: wall per exec",
            {m: self.tools[m]["sustained"]["mean_exec_s"] for m in MODES}, tf)
        add("sustained back to back: CPU per exec, host + engine workers",
            {m: self.tools[m]["sustained"]["cpu_per_exec_s"] for m in MODES}, tf, f"≤ {TARGETS['sustained_cpu']}×",
            TARGETS["sustained_cpu"])
        timer = self.concurrent("process", "50 ms timer")
        add(f"{timer['cells']} concurrent cells each awaiting a 50 ms timer (wall, mean of 3)",
            {m: self.concurrent(m, "50 ms timer")["wall_s"] for m in MODES}, tf,
            *((f"≤ {TARGETS['timers_s'] * 1e3:.0f} ms", None, TARGETS["timers_s"]) if timer["cells"] == 200 else ()))
        add(f"{self.concurrent('process', '50 ms tool')['cells']} concurrent cells each awaiting a 50 ms tool (wall, "
            "mean of 3)", {m: self.concurrent(m, "50 ms tool")["wall_s"] for m in MODES}, tf, "(ideal: 50 ms)")
        add("first exec in a fresh process (session start + exec, worst of 0/32/128 tools)",
            {m: self.first_exec(m) for m in MODES}, same, f"≤ {TARGETS['first']}×", TARGETS["first"])

        lines = [f"| figure | {LABEL['process']} | × floor | in-process | × floor | target | default mode | in-process |",
                 "|---|---|---|---|---|---|---|---|"]
        for name, values, target, (limit, limit_s, floors) in rows:
            if name.startswith("… its execs 1–11"):
                cells = []
                for m in MODES:
                    a, b, _ = self.warm_split(m)
                    cells += [f"{ms(a)} / {ms(b)}", f"{a / f0:.2f}× / {b / f0:.2f}×"]
                lines.append(f"| {name} | {' | '.join(cells)} | | | |")
                continue
            cells = []
            verdicts = []
            for m in MODES:
                value = values[m]
                cells += [ms(value), x(value, floors[m])]
                if limit is not None and value is not None:
                    verdicts.append("met" if value / floors[m] <= limit else "**not met**")
                elif limit_s is not None and value is not None:
                    verdicts.append("met" if value <= limit_s else "**not met**")
                else:
                    verdicts.append("")
            lines.append(f"| {name} | {' | '.join(cells)} | {target} | {' | '.join(verdicts)} |")
        return lines

    def floors_line(self) -> str:
        means = [f["mean_s"] for f in self.floors]
        return (f"The raw engine floor (`benchmarks/floor.py`: a bare mini-racer context created, `1+1` evaluated, "
                f"the context closed, back to back, {self.floors[0]['iterations']} iterations × "
                f"{self.floors[0]['samples']} fresh processes) was measured {len(means)} times in this run, before and "
                f"after every part: {', '.join(ms(m) for m in means)} (mean {ms(self.floor_all)}; CPU "
                f"{ms(statistics.mean(f['cpu_per_exec_s'] for f in self.floors))} per iteration; mini-racer's public "
                f"`MiniRacer()` API: {ms(statistics.mean(f['public_api_mean_s'] for f in self.floors))}). Each "
                "figure's ratio uses the mean of the two floors measured right before and after its part."
                + (f" **The floors differ by {max(means) / min(means):.1f}× within this run: the load of other "
                   "processes changed while it ran, so single figures are less reliable than usual.**"
                   if max(means) > 1.3 * min(means) else ""))

    def where(self) -> list[str]:
        p, i = self.tools["process"], self.tools["in-process"]
        bp, bi = p["breakdown"], i["breakdown"]
        out = ["## Where the time goes (measured in this run)", ""]
        for mode, data in (("process", bp), ("in-process", bi)):
            phases = data["phases"]
            out += [f"**A warm `notify(\"in\"); text(\"bench\")` exec, {LABEL[mode]}**, split where its events "
                    "reach the host's event loop (`on_notify`; medians):", "",
                    "| phase | back to back | after a 30 ms pause |", "|---|---|---|"]
            for k, name in enumerate(phases["phases"]):
                out.append(f"| {name} | {ms(phases['back_to_back']['phase_s'][k])} | "
                           f"{ms(phases['after_pause']['phase_s'][k])} |")
            out.append(f"| **whole exec** | **{ms(phases['back_to_back']['total_s'])}** | "
                       f"**{ms(phases['after_pause']['total_s'])}** |")
            out.append("")
        raw = bp["raw_pipe"]
        out += [f"**The OS's own pipe round trip** (medians): {raw['what']}: {ms(raw['back_to_back']['median_s'])} "
                f"back to back, {ms(raw['after_pause']['median_s'])} each after a 30 ms pause.", "", DROPPED, ""]

        f0, fp, fi = self.floor(0), self.tool_floor("process"), self.tool_floor("in-process")
        a_p, b_p, cut = self.warm_split("process")
        a_i, b_i, _ = self.warm_split("in-process")
        sp, si = p["sustained"], i["sustained"]
        floor_cpu = statistics.mean(f["cpu_per_exec_s"] for f in self.floors)
        conc = {m: {w: self.concurrent(m, w) for w in ("50 ms timer", "50 ms timer, heap_limit_bytes=32 MiB",
                                                        "50 ms tool")} for m in MODES}
        out += ["**What these show**", ""]
        ph, phi = bp["phases"]["back_to_back"]["phase_s"], bi["phases"]["back_to_back"]["phase_s"]
        out.append(
            f"* **Warm exec.** Until its events reach the host's event loop an exec takes {ms(ph[0])} in process "
            f"mode and {ms(phi[0])} in-process; the difference is the worker pipe both ways (the OS's own round "
            f"trip: {ms(raw['back_to_back']['median_s'])}) and the worker's loop. Finishing the cell and building "
            f"the result after that takes {ms(ph[1])} and {ms(phi[1])}.")
        size = p["engine_config"]["isolate_pool_size"]
        in_process_pool = i["engine_config"]["pool_size"]
        out.append(
            f"* **Isolate pools and the reference loop.** Its 25 execs (+1 warm-up) each take a fresh isolate from "
            f"a pool ({size} per engine worker by default here, {in_process_pool} per event loop in-process); once "
            f"the pool runs low, isolates are created while the execs run, on the same cores. "
            f"exec_overhead, 0 tools: execs 1–{cut} average {ms(a_p)} ({a_p / f0:.2f}× floor) and execs "
            f"{cut + 1}–25 {ms(b_p)} ({b_p / f0:.2f}×) in process mode; {ms(a_i)} and {ms(b_i)} in-process."
            + self.pool_sentence())
        counts = sorted({r["tools"] for r in self.exec_rows})
        if len(counts) > 1:
            def by_count(mode: str) -> str:
                return " / ".join(ms(self.warm_split(mode, n)[0]) for n in counts)

            out.append(
                f"* **Tool count.** Isolates are generic (prepared before any session uses them), so every exec "
                f"hands its session's tool table to the prelude with the script (`run(tools, ...)`): "
                f"warm execs 1–{cut} of the reference loop with {' / '.join(str(n) for n in counts)} tools take "
                f"{by_count('in-process')} in-process and {by_count('process')} in process mode.")
        pause_p, pause_i = p["pause"], i["pause"]
        pp, pi = bp["phases"]["after_pause"]["phase_s"], bi["phases"]["after_pause"]["phase_s"]
        out.append(
            f"* **After a 30 ms pause** an exec takes {ms(pause_p['after_pause']['median_s'])} median in process mode "
            f"vs {ms(pause_p['back_to_back']['median_s'])} back to back ({ms(pause_i['after_pause']['median_s'])} vs "
            f"{ms(pause_i['back_to_back']['median_s'])} in-process). The split shows where: until the events reach "
            f"the host loop {ms(ph[0])} → {ms(pp[0])} in process mode, {ms(phi[0])} → {ms(pi[0])} in-process, "
            f"while the OS's own pipe round trip is {ms(raw['back_to_back']['median_s'])} → "
            f"{ms(raw['after_pause']['median_s'])}: the added time is in waking the threads and processes that "
            "slept through the pause (host loop, reader thread, the worker's loop, the isolate's thread), not in "
            "moving the bytes.")
        out.append(
            f"* **Nested tool calls.** Each sequential call costs {ms(self.round_trip('process'))} in process mode "
            f"({self.round_trip('process') / fp:.2f}× floor) vs {ms(self.round_trip('in-process'))} in-process "
            f"({self.round_trip('in-process') / fi:.2f}×): in process mode every call is an EVENTS message to the host "
            f"and a RESOLVE back, i.e. at least one pipe round trip ({ms(raw['back_to_back']['median_s'])} "
            "for the OS alone) on top of the in-process engine's own hop into the isolate. `Promise.all` of 100 batches them: "
            f"{ms(self.round_trip('process', scenario='Promise.all 100'))} vs "
            f"{ms(self.round_trip('in-process', scenario='Promise.all 100'))} per call.")
        out.append(
            f"* **Sustained CPU.** Back to back, once the pools are empty, every exec pays for creating and freeing a "
            f"fresh isolate: process mode {ms(sp['cpu_per_exec_s'])} of CPU per exec (host {ms(sp['host_cpu_per_exec_s'])}, "
            f"workers {ms(sp['engine_cpu_per_exec_s'])}), in-process {ms(si['cpu_per_exec_s'])} (all in the host); the "
            f"floor itself (creating and freeing a bare context) costs {ms(floor_cpu)} of CPU. Wall per exec: "
            f"{ms(sp['mean_exec_s'])} vs {ms(si['mean_exec_s'])}.")
        t_p, t32_p = conc["process"]["50 ms timer"], conc["process"]["50 ms timer, heap_limit_bytes=32 MiB"]
        t_i, t32_i = conc["in-process"]["50 ms timer"], conc["in-process"]["50 ms timer, heap_limit_bytes=32 MiB"]
        config = p["engine_config"]
        hpw = config["heap_per_worker"] // MIB
        cpw = config["cells_per_worker"]
        n = t_p["cells"]

        def busy(row: dict[str, Any]) -> str:
            return f"{row['cpu_s']:.2f} s of CPU in host + workers, {row['cpu_s'] / row['wall_s']:.1f} cores on average"

        peak = t_p["max_running"] or 1
        out.append(
            f"* **{n} concurrent cells.** Process mode admits a cell to a worker only while the heap limits of the "
            f"cells on it fit `heap_per_worker` ({hpw} MiB): {min(cpw, hpw // 256)} cells per worker at the default "
            f"256 MiB limit. Measured (each script's `notify` counted by `on_notify`): at most {t_p['max_running']} "
            f"of the {n} cells were running at once ({t_p['workers']} worker processes at the end, the spare "
            f"included) and the rest queued, so admission alone makes {n} cells of 50 ms take at least "
            f"{-(-n // peak)} × 50 ms = {-(-n // peak) * 50} ms; "
            f"measured {ms(t_p['wall_s'])} ({busy(t_p)}). With `heap_limit_bytes=32 MiB` ({min(cpw, hpw // 32)} per "
            f"worker) at most {t32_p['max_running']} at once: {ms(t32_p['wall_s'])} ({busy(t32_p)}). In-process "
            f"(no admission, at most {t_i['max_running']} at once): {ms(t_i['wall_s'])} ({busy(t_i)}) and "
            f"{ms(t32_i['wall_s'])}. Every cell takes a fresh isolate and the pools hold {in_process_pool} "
            f"(in-process) or {size} per worker, so most of the {n} isolates are created "
            f"during the batch: at the sustained rate above ({ms(si['cpu_per_exec_s'])} of CPU per exec "
            f"in-process) {n} execs need {n * si['cpu_per_exec_s']:.2f} s of CPU, "
            f"{n * si['cpu_per_exec_s'] / self.cores:.2f} s on {self.cores} cores.")
        out.append(self.memory_sentence())
        out.append("")
        return out

    def memory_sentence(self) -> str:
        mp, mi = self.tools["process"].get("memory"), self.tools["in-process"].get("memory")
        if mp is None or mi is None:
            return "* **Memory.** Not measured in this run (raw data from before tool_calls.py's part 6)."
        pool = mp["pool_sizes"][1] - mp["pool_sizes"][0]
        default_pool = self.tools["process"]["engine_config"]["isolate_pool_size"]
        return (f"* **Memory** (RSS, as the reference reports its rssΔ; tool_calls.py part 6). An engine worker with "
                f"one prepared isolate, after its first exec: {mp['worker_rss'] / MIB:.1f} MiB; each further prepared "
                f"isolate adds {mp['per_isolate'] / MIB:.2f} MiB (pools of 1 and {pool + 1}), so a worker with the "
                f"default pool of {default_pool} holds about "
                f"{(mp['worker_rss'] + (default_pool - 1) * mp['per_isolate']) / MIB:.0f} MiB before any cell runs. In-process "
                f"each prepared isolate adds {mi['per_isolate'] / MIB:.2f} MiB to the host.")

    def pool_sentence(self) -> str:
        probe = self.tools["process"]["breakdown"]["pool_size"]
        f = self.tool_floor("process")

        def one(d: dict[str, Any]) -> str:
            return (f"a pool of {d['isolate_pool_size']}: {ms(d['first_11_s'])} / {ms(d['rest_s'])}, mean "
                    f"{ms(d['mean_s'])} ({d['mean_s'] / f:.2f}× floor)")

        small, large = sorted((probe["default"], probe["other"]), key=lambda d: d["isolate_pool_size"])
        verdict = ""
        if small["rest_s"] > 1.3 * small["first_11_s"] and large["rest_s"] <= 1.3 * large["first_11_s"]:
            verdict = (f" A pool smaller than the loop makes its later execs wait on isolate creation; a pool of "
                       f"{large['isolate_pool_size']} does not.")
        return (f" Measured directly in tool_calls.py (execs 1–11 / 12–25, 2 rounds): {one(small)}; {one(large)}."
                + verdict)

    def exec_table(self) -> list[str]:
        f0 = self.floor(0)
        header = ["scenario", "isolation", "tools", "samples", "iters", "mean/exec", "× floor", "p95/exec",
                  "rssΔ p50", "rssΔ max", "cpu/exec", "start"]
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        fd, fb = exec_overhead.format_duration_nanos, exec_overhead.format_bytes
        for r in self.exec_rows:
            lines.append("| " + " | ".join([
                r["scenario"], r["isolation"], str(r["tools"]), str(r["samples"]), str(r["iters"]),
                fd(r["mean_exec_nanos"]), f"{r['mean_exec_nanos'] / 1e9 / f0:.2f}×", fd(r["p95_exec_nanos"]),
                fb(r["rss_p50_bytes"]), fb(r["rss_max_bytes"]), exec_overhead.cpu_text(r), fd(r["session_start_nanos"]),
            ]) + " |")
        return lines

    def tool_tables(self) -> list[str]:
        p, i = self.tools["process"], self.tools["in-process"]
        fp, fi = self.tool_floor("process"), self.tool_floor("in-process")
        lines = ["## Nested tool calls (median exec wall time; both modes)", "",
                 "Execs with calls alternate with execs without; per call = (median with - median without) / calls; "
                 "for the 50 ms tool, the overhead above 50 ms.", "",
                 "| tool | scenario | process: exec | per call (× floor) | in-process: exec | per call (× floor) |",
                 "|---|---|---|---|---|---|"]
        for rp, ri in zip(p["round_trips"], i["round_trips"], strict=True):
            def per(r: dict[str, Any], f: float) -> str:
                if r.get("per_call_s") is not None:
                    return f"{ms(r['per_call_s'])} ({r['per_call_s'] / f:.2f}×)"
                if "overhead_s" in r:
                    return f"+{ms(r['overhead_s'])} above 50 ms"
                return ""
            lines.append(f"| {rp['tool']} | {rp['scenario']} | {ms(rp['exec_s'])} | {per(rp, fp)} | {ms(ri['exec_s'])} | "
                         f"{per(ri, fi)} |")
        lines += ["", "## Concurrent cells started at once (fresh session each, mean of 3)", "",
                  "| cells | each awaiting | process: wall | max | × floor | in-process: wall | max | × floor |",
                  "|---|---|---|---|---|---|---|---|"]
        for rp, ri in zip(p["concurrent"], i["concurrent"], strict=True):
            lines.append(f"| {rp['cells']} | {rp['what']} | {ms(rp['wall_s'])} | {ms(rp['wall_max_s'])} | "
                         f"{rp['wall_s'] / fp:.1f}× | {ms(ri['wall_s'])} | {ms(ri['wall_max_s'])} | {ri['wall_s'] / fi:.1f}× |")
        sp, si = p["sustained"], i["sustained"]
        lines += ["", f"## Sustained: {sp['execs']:,} execs back to back in one session", "",
                  "RSS and threads are the host's plus the engine workers' (process mode: "
                  f"{sp['engines']} worker processes at the end, {sp['engine_rss_end'] / MIB:.0f} MiB and "
                  f"{sp['engine_threads_end']} threads of it). CPU = host + workers, from the first timed exec until "
                  "everything is quiet again.", "",
                  "| | process | × floor | in-process | × floor |", "|---|---|---|---|---|",
                  f"| wall per exec | {ms(sp['mean_exec_s'])} | {sp['mean_exec_s'] / fp:.2f}× | {ms(si['mean_exec_s'])} | "
                  f"{si['mean_exec_s'] / fi:.2f}× |",
                  f"| CPU per exec (host + workers) | {ms(sp['cpu_per_exec_s'])} | {sp['cpu_per_exec_s'] / fp:.2f}× | "
                  f"{ms(si['cpu_per_exec_s'])} | {si['cpu_per_exec_s'] / fi:.2f}× |",
                  f"| … of it the host | {ms(sp['host_cpu_per_exec_s'])} | | {ms(si['host_cpu_per_exec_s'])} | |",
                  f"| … of it the engine workers | {ms(sp['engine_cpu_per_exec_s'])} | | "
                  f"{ms(si['engine_cpu_per_exec_s'])} | |",
                  f"| RSS start → end (max) | {sp['rss_start'] / MIB:.0f} → {sp['rss_end'] / MIB:.0f} MiB "
                  f"({sp['rss_max'] / MIB:.0f}) | | {si['rss_start'] / MIB:.0f} → {si['rss_end'] / MIB:.0f} MiB "
                  f"({si['rss_max'] / MIB:.0f}) | |",
                  f"| threads start → end (max) | {sp['threads_start']} → {sp['threads_end']} ({sp['threads_max']}) | | "
                  f"{si['threads_start']} → {si['threads_end']} ({si['threads_max']}) | |"]
        return lines

    def durable_section(self) -> list[str]:
        """What durable cells cost (durable.py), as ratios to the floor of its part (part 4)."""
        if self.durable is None:
            return []
        data, f = self.durable, self.floor(4)
        modes = [m for m in MODES if m in data["modes"]]
        warm = {m: data["modes"][m]["warm"] for m in modes}
        nested = {m: data["modes"][m]["nested"] for m in modes}
        replay = {m: data["modes"][m]["replay"] for m in modes}
        reference = {m: next(r for r in self.exec_rows if r["scenario"] == "warm_exec" and r["isolation"] == m
                             and r["tools"] == 0) for m in modes}
        first = warm[modes[0]]["none"]
        calls = nested[modes[0]]["calls"]
        lines = [
            "## Durable cells: what journaling and replay cost (`benchmarks/durable.py`)", "",
            "Without a store the default process engine journals every cell in memory (a cell on a worker that "
            "dies is replayed elsewhere); with a store the journal is also appended to it. SQLite: a fresh file "
            "in a temp dir per sample. Warm exec: the reference method (fresh process per sample, pool full, "
            f"quiet, 1 warm-up, {first['iterations']} execs of `text(\"bench\")`, 0 tools), "
            f"{len(first['samples_s'])} samples without and {len(first['samples_s'])} with the store, interleaved. "
            f"{calls}-call exec: a session without and one with the store on the same engine, their execs "
            f"alternating ({nested[modes[0]]['sqlite']['n']} each, medians). Replay: host A (a process) runs a "
            f"cell making {replay[modes[0]]['sqlite']['calls']:,} calls of a tool that returns at once, then "
            "awaits a `retry_on_restart` tool that never returns in A, and closes (`aclose()`: journal kept, "
            "lease released); host B (a fresh process) opens the same store and session id and `wait`s on the "
            "cell, which is replayed (no journaled call runs again; checked) and completes. Medians of "
            f"{len(replay[modes[0]]['sqlite']['samples'])} A/B pairs. Ratios use the floor measured around this "
            f"part ({ms(f)}).", "",
            f"| figure | {LABEL['process']} | × floor | in-process | × floor | target | default mode | in-process |",
            "|---|---|---|---|---|---|---|---|"]

        def row(name: str, values: dict[str, float | None], target: str = "") -> None:
            cells = [c for m in MODES for c in ((ms(values.get(m)), x(values.get(m), f)))]
            lines.append(f"| {name} | {' | '.join(cells)} | {target} | | |")

        def change(name: str, new: dict[str, float], base: dict[str, float], limit: float | None) -> None:
            cells, verdicts = [], []
            for m in MODES:
                if m not in new:
                    cells += ["n/a", ""]
                    verdicts.append("")
                    continue
                pct = (new[m] / base[m] - 1) * 100
                cells += [f"{pct:+.1f} %", ""]
                verdicts.append("" if limit is None else "met" if pct <= limit else "**not met**")
            target = "" if limit is None else f"≤ +{limit:.0f} %"
            lines.append(f"| {name} | {' | '.join(cells)} | {target} | {' | '.join(verdicts)} |")

        no_store = {m: warm[m]["none"]["mean_s"] for m in modes}
        sqlite = {m: warm[m]["sqlite"]["mean_s"] for m in modes}
        row(f"warm exec, no store (mean of {len(first['samples_s'])} × {first['iterations']} execs)", no_store)
        row("warm exec, SQLite store", sqlite)
        change("… SQLite over no store", sqlite, no_store, 10)
        if all("median_s" in warm[m]["none"] for m in modes):  # one slow sample moves a mean of 4 a lot
            change("… the same with the median of the samples' means", {m: warm[m]["sqlite"]["median_s"] for m in modes},
                   {m: warm[m]["none"]["median_s"] for m in modes}, None)
        change("… the same in CPU per exec (host + engine workers)", {m: warm[m]["sqlite"]["cpu_s"] for m in modes},
               {m: warm[m]["none"]["cpu_s"] for m in modes}, None)
        exec_ref = {m: reference[m]["mean_exec_nanos"] / 1e9 for m in modes}
        row("exec_overhead.py's warm exec in this run (0 tools, no store)", exec_ref)
        change("… this part's no-store warm exec over it, as ratios to each part's floor (the noise: "
               "its samples span " + ", ".join(
                   f"{m} {ms(min(warm[m]['none']['samples_s']))}–{ms(max(warm[m]['none']['samples_s']))}"
                   for m in modes) + ")",
               {m: no_store[m] / f for m in modes}, {m: exec_ref[m] / self.floor(0) for m in modes}, None)
        plain = {m: nested[m]["none"]["median_s"] for m in modes}
        stored = {m: nested[m]["sqlite"]["median_s"] for m in modes}
        row(f"{calls}-call nested-tool exec ({calls} sequential awaits of an async tool that returns at once), "
            "no store", plain)
        row(f"{calls}-call nested-tool exec, SQLite store", stored)
        change("… SQLite over no store", stored, plain, 10)
        change("… the same in CPU per exec (host + engine workers, mean)", {m: nested[m]["sqlite"]["cpu_s"] for m in modes},
               {m: nested[m]["none"]["cpu_s"] for m in modes}, None)
        for kind, label in (("sqlite", "SQLite"), ("postgresql", "PostgreSQL")):
            if not all(kind in replay[m] for m in modes):
                continue
            n = replay[modes[0]][kind]["calls"]
            row(f"replay of a cell with {n:,} journaled calls, {label}: B's `wait` → completed result",
                {m: replay[m][kind]["replay_s"] for m in modes})
            row(f"… B's start (`CodeMode(store=..., session_id=...)` entry + `start()`, fresh process), {label}",
                {m: replay[m][kind]["start_s"] for m in modes})
            row(f"… for scale: A's live run of those {n:,} calls, {label}", {m: replay[m][kind]["live_s"] for m in modes})
        if not data["postgres"]:
            lines += ["", "No PostgreSQL server answered (CODEMODE_TEST_POSTGRES_URL, or `make postgres`): its replay "
                      "rows are left out."]
        return lines


def measure_all(size: str) -> dict[str, Any]:
    """Every part, at `size` "full", "quick" (fewer samples) or "smoke" (does it still run?)."""
    started = time.time()
    description = machine()
    samples = {"full": ("2", "4", "3"), "quick": ("1", "2", "1"), "smoke": ("1", "1", "1")}[size]
    floor_args = ["--smoke"] if size == "smoke" else ["--samples", samples[0]]
    floors = [run("floor.py", floor_args)]
    exec_rows = run("exec_overhead.py", ["--smoke"] if size == "smoke" else ["--samples", samples[1]])
    floors.append(run("floor.py", floor_args))
    tool_args = {"full": [], "quick": ["--quick", "--execs", "300"], "smoke": ["--smoke"]}[size]
    tools = {}
    for mode in MODES:
        tools[mode] = run("tool_calls.py", ["--isolation", mode, *tool_args])
        floors.append(run("floor.py", floor_args))
    peers = run("peers.py", ["--smoke"] if size == "smoke" else ["--samples", samples[2]])
    floors.append(run("floor.py", floor_args))
    durable = run("durable.py", ["--smoke"] if size == "smoke" else ["--samples", samples[1]])
    floors.append(run("floor.py", floor_args))
    return {"started": started, "seconds": time.time() - started, "machine": description, "cores": os.cpu_count(),
            "load_end": ", ".join(f"{v:.2f}" for v in os.getloadavg()), "floors": floors, "exec_rows": exec_rows,
            "tools": tools, "peers": peers, "durable": durable}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    sizes = parser.add_mutually_exclusive_group()
    sizes.add_argument("--quick", action="store_true", help="fewer samples")
    sizes.add_argument("--smoke", action="store_true",
                       help="every part at a tiny size, report to a temp file unless --out: does it still run?")
    parser.add_argument("--out", help=f"the report (default {os.path.relpath(RESULTS)}; --smoke: a temp file)")
    parser.add_argument("--raw", help="also write the raw measurements to this JSON file")
    parser.add_argument("--render", help="write the report from a --raw file instead of measuring")
    args = parser.parse_args(argv)
    if args.smoke:
        if args.out is not None and os.path.abspath(args.out) == RESULTS:
            parser.error("--smoke figures are not results: give --out another file")
        args.out = args.out or os.path.join(tempfile.gettempdir(), "codemode-bench-smoke.md")
    args.out = args.out or RESULTS
    if args.render:  # re-render a previous run's raw data (for working on this report)
        with open(args.render, encoding="utf-8") as fh:
            raw = json.load(fh)
    else:
        raw = measure_all("smoke" if args.smoke else "quick" if args.quick else "full")
    # Always kept (a temp file unless --raw says where), so the report can be re-rendered with --render.
    raw_name = "codemode-bench-smoke-raw.json" if args.smoke else "codemode-bench-raw.json"
    raw_path = args.raw or os.path.join(tempfile.gettempdir(), raw_name)
    if not args.render:
        with open(raw_path, "w", encoding="utf-8") as fh:
            json.dump(raw, fh)
        print(f"raw measurements: {raw_path}")
    description, load_end, floors, exec_rows, tools, peers = (
        raw["machine"], raw["load_end"], raw["floors"], raw["exec_rows"], raw["tools"], raw["peers"])
    seconds = raw["seconds"]
    from peers import table as peers_table

    cores = raw.get("cores") or os.cpu_count() or 1
    report = Report(floors, exec_rows, tools, peers, cores, raw.get("durable"))
    lines = [
        "# codemode benchmarks",
        "",
        f"Written by `benchmarks/run_all.py` on {time.strftime('%Y-%m-%d %H:%M', time.localtime(raw['started']))} "
        f"in {seconds:.0f} s (`make bench`): both isolation modes in one run, every figure also as a "
        "ratio to the raw engine floor measured in the same run (machine speed varies 2× between the machines "
        f"these run on, and wall-clock numbers on a shared {cores}-core VM move by ±30 % with the load of other "
        "processes).",
        "",
        "## Machine",
        "",
        *description,
        f"* Load average when the run ended: {load_end}",
        "",
        "## Both modes side by side, as ratios to the raw engine floor",
        "",
        report.floors_line(),
        "",
        *report.summary(),
        "",
        "Targets are for the default mode (`isolation=\"process\"`); the in-process column says whether it "
        "would meet the same line. Figures without a target are reported for comparison.",
        "",
        *report.where(),
        "## exec overhead: the reference benchmark's method (`benchmarks/exec_overhead.py`)",
        "",
        "Fresh process per sample; `cold_exec` = one exec, no warm-up; `warm_exec` = 25 execs after one "
        "warm-up, once host and engine workers are quiet (pools full, spare worker up); mean of per-sample means, "
        "p95 over per-sample means, max-RSS delta from getrusage (process mode: plus each engine worker's VmHWM delta). `cpu/exec` = CPU of the host "
        "(all threads) + the engine workers (10 ms ticks: coarse over 25 execs) from the first timed exec until "
        "all is quiet again, per exec; `start` = `async with CodeMode(...)` entry (in-process: V8 "
        "initialisation + the first isolate; process: the first engine worker up; warm_exec: + `fill_pool`).",
        "",
        *report.exec_table(),
        "",
        "Reference (Rust, V8 in-process, published in PR #15276, other hardware): cold 1.03–1.14 ms, "
        "warm 473–575 µs mean, rssΔ p50 736–960 KiB.",
        "",
        *report.tool_tables(),
        "",
        "## Peers (`benchmarks/peers.py`)",
        "",
        *peers_table(peers["rows"], peers["failures"], report.floor(3)),
        "",
        "What each peer does per exec: codemode takes a prepared isolate and runs the script with its prelude "
        "(text/tools/store/…), in an engine worker process or in-process; the raw engine floor creates a bare "
        "mini-racer context, evaluates `1+1` and frees it (nothing prepared ahead); the node runner starts a "
        "worker_threads Worker in a long-lived Node process (the reference's pre-V8 design); pydeno runtime "
        "creates and closes an in-process `pydeno.Runtime`; pydeno codemode checks out a pre-started, "
        "OS-sandboxed worker process from `AsyncPydeno` and runs one `feed_run`.",
        "",
        *report.durable_section(),
    ]
    with open(args.out, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    print(f"wrote {args.out} ({seconds:.0f} s of measurements)")
    if args.smoke:
        gross = False
        for what, ratio, target in report.fast_paths():
            over = ratio > GROSS_FACTOR * target
            gross = gross or over
            print(f"{'GROSS REGRESSION' if over else 'ok'}: {what}: {ratio:.2f}× the floor (target {target}×, "
                  f"gross above {GROSS_FACTOR * target:.2f}×)", file=sys.stderr if over else sys.stdout)
        if gross:
            sys.exit(1)
    if not args.render:  # sections of their own in the same file: the token table, many HTTP clients
        smoke = ["--smoke"] if args.smoke else []
        for part in ("tokens.py", "http_load.py", "profiles.py", "bounds.py"):
            print("$", "benchmarks/" + part, *smoke, "--results", os.path.relpath(args.out), flush=True)
            subprocess.run([sys.executable, os.path.join(HERE, part), *smoke, "--results", args.out], check=True,
                           stdout=subprocess.DEVNULL)


if __name__ == "__main__":
    main()
