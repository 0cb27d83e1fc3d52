"""Many MCP clients at once against `codemode mcp --transport http` (loopback only, bounded).

50 clients (the official `mcp` SDK client, each its own MCP session) connect at the same moment
and each runs 20 execs, one after another; every exec makes one nested call to the shared
downstream server-everything (`echo`) and returns its text. Two such bursts: the first grows the
engine pool, the second runs on it. Reports per-exec latency (p50/p95/max), session set-up time,
errors and CPU per exec by process for each, and the server's RSS and threads when idle, at the
peak and after the clients have left, with the raw engine floor of the same run for scale.

Usage:
    python benchmarks/http_load.py [--clients 50] [--execs 20] [--runs 3] [--smoke] [--json out.json]
                                   [--results RESULTS.md]

The machine's speed drifts within minutes, so it measures `--runs` times, each on a fresh server
with its own engine floor, and reports the run with the median steady p95 (and lists them all).

With `--results` it replaces the section between the http-load markers of that file (adding it
at the end the first time) and leaves the rest alone. `--smoke`: 2 clients of 2 execs, one run,
no waiting for the server to go quiet (does it still run?).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import TextContent

from report_file import replace_section

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from procstats import cpu_seconds, enter_smoke_mode, rss_bytes, smoke_mode, thread_count  # noqa: E402

ROOT = HERE.parent
EVERYTHING = ROOT / "tests" / "mcp_servers" / "node_modules" / ".bin" / "mcp-server-everything"
MIB = 1024 * 1024
TIME_BOUND_S = 300.0  # the whole load, however slow the machine
SETTLE_S = 20.0
BEGIN, END = "<!-- http-load -->", "<!-- /http-load -->"
TARGETS = {"p95_ms": 500.0, "threads_over_idle": 50, "rss_over_idle_mib": 100.0}


def start_server(command: list[str]) -> tuple[subprocess.Popen[bytes], str, Path]:
    """Start a server that prints "listening on URL" to stderr; return it and the URL."""
    stderr = Path(tempfile.mkstemp(suffix=".stderr")[1])
    with stderr.open("wb") as sink:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=sink)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for line in stderr.read_text(errors="replace").splitlines():
            if "listening on " in line:
                return process, line.rsplit(" ", 1)[1], stderr
        if process.poll() is not None:
            break
        time.sleep(0.05)
    process.kill()
    raise SystemExit(f"{' '.join(command[:4])} did not come up:\n{stderr.read_text()}")


def stop_server(process: subprocess.Popen[bytes], stderr: Path) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
    stderr.unlink(missing_ok=True)


def tree(pid: int) -> list[int]:
    """`pid` and its descendants (one pass over /proc: the sampler runs during the load)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parent = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry))
    found, todo = [pid], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def cpu_by_role(server: int) -> dict[str, float]:
    """CPU seconds so far of the server, its engine workers, its downstream servers, the clients."""
    roles = {"server": cpu_seconds(server), "engine workers": 0.0, "downstream servers": 0.0}
    for member in tree(server)[1:]:
        role = "engine workers" if "codemode._engine" in _cmdline(member) else "downstream servers"
        try:
            roles[role] += cpu_seconds(member)
        except OSError:
            continue
    roles["clients (this process)"] = cpu_seconds()
    return roles


def tree_rss(pid: int) -> int:
    total = 0
    for member in tree(pid):
        try:
            total += rss_bytes(member)
        except OSError:
            continue
    return total


_CLIENT_TLS = ssl.create_default_context()  # made once, as one client process makes it once


@asynccontextmanager
async def sdk_client(url: str, mode: str) -> AsyncIterator[Client]:
    """The official `mcp` SDK client; it holds a GET stream open, as real clients do.

    Each stands for a client process of its own. The SDK's default HTTP client loads the CA
    bundle anew for each one (tens of ms of CPU), which a real client pays once when it starts,
    not while the others run their execs; so they share one TLS context (unused on loopback).
    """
    http = httpx2.AsyncClient(timeout=httpx2.Timeout(30.0, read=300.0), verify=_CLIENT_TLS)  # the SDK's timeouts
    async with http, Client(streamable_http_client(url, http_client=http), mode=mode) as client:
        yield client


async def call_texts(client: Client, tool: str, arguments: dict[str, Any]) -> tuple[bool, list[str]]:
    result = await client.call_tool(tool, arguments)
    return bool(result.is_error), [block.text for block in result.content if isinstance(block, TextContent)]


def exec_call(number: int, i: int) -> tuple[str, dict[str, Any], list[str]]:
    """codemode: an exec whose script makes one nested call and returns its text (after the header)."""
    code = f'const r = await tools.mcp__everything__echo({{ message: "c{number}e{i}" }}); text(r.content[0].text)'
    return "exec", {"code": code}, [f"Echo: c{number}e{i}"]


def floor_call(number: int, i: int) -> tuple[str, dict[str, Any], list[str]]:
    """The SDK floor: the tool answers at once."""
    return "echo", {"message": f"c{number}e{i}"}, [f"Echo: c{number}e{i}"]


Call = Callable[[int, int], tuple[str, dict[str, Any], list[str]]]


async def run_clients(url: str, clients: int, execs: int, call: Call = exec_call, mode: str = "auto") -> dict[str, Any]:
    latencies: list[float] = []
    setups: list[float] = []
    errors: list[str] = []
    start = asyncio.Event()

    async def one(number: int) -> None:
        await start.wait()
        began = time.perf_counter()
        try:
            async with sdk_client(url, mode) as client:
                await client.list_tools()
                setups.append(time.perf_counter() - began)
                for i in range(execs):
                    tool, arguments, expected = call(number, i)
                    sent = time.perf_counter()
                    failed, got = await call_texts(client, tool, arguments)
                    latencies.append(time.perf_counter() - sent)
                    if failed or got[-len(expected):] != expected:
                        errors.append(f"client {number} call {i}: {got}")
        except Exception as exc:
            errors.append(f"client {number}: {type(exc).__name__}: {exc}")

    async with asyncio.timeout(TIME_BOUND_S), asyncio.TaskGroup() as group:
        for number in range(clients):
            group.create_task(one(number))
        began = time.perf_counter()
        start.set()
    wall = time.perf_counter() - began
    return {"latencies": latencies, "setups": setups, "errors": errors, "wall_s": wall}


async def sample_peak(pid: int, stop: asyncio.Event, peak: dict[str, int]) -> None:
    while not stop.is_set():
        try:
            peak["rss"] = max(peak["rss"], rss_bytes(pid))
            peak["threads"] = max(peak["threads"], thread_count(pid))
            peak["tree_rss"] = max(peak["tree_rss"], tree_rss(pid))
        except OSError:
            return
        await asyncio.sleep(0.5)


async def settle(pid: int, idle: dict[str, int]) -> tuple[int, int, float]:
    """Threads and RSS once they are back near idle (or after SETTLE_S), and how long it took."""
    began = time.monotonic()
    while True:
        threads, rss = thread_count(pid), rss_bytes(pid)
        close = threads - idle["threads"] <= TARGETS["threads_over_idle"] and (
            rss - idle["rss"] <= TARGETS["rss_over_idle_mib"] * MIB
        )
        if smoke_mode() or (close and time.monotonic() - began > 2) or time.monotonic() - began > SETTLE_S:
            return threads, rss, time.monotonic() - began
        await asyncio.sleep(0.25)


def floor_ms() -> float:
    """The raw engine floor (bare mini-racer context: create, `1+1`, close) of this run, in ms."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as tmp:
        path = tmp.name
    try:
        smoke = ["--smoke"] if smoke_mode() else []
        subprocess.run([sys.executable, str(HERE / "floor.py"), *smoke, "--json", path], check=True,
                       stdout=subprocess.DEVNULL)
        data = json.loads(Path(path).read_text())
    finally:
        os.unlink(path)
    return float(data["median_s"]) * 1000


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def burst(
    url: str, clients: int, execs: int, server: int, call: Call = exec_call, mode: str = "auto"
) -> dict[str, Any]:
    """All clients at once: latency, set-up, errors and CPU per call by process."""
    cpu_before = cpu_by_role(server)
    load = await run_clients(url, clients, execs, call, mode)
    cpu_after = cpu_by_role(server)
    count = max(1, len(load["latencies"]))
    return {
        "errors": load["errors"],
        "wall_s": load["wall_s"],
        "exec_ms": {
            "p50": statistics.median(load["latencies"]) * 1000,
            "p95": percentile(load["latencies"], 0.95) * 1000,
            "max": max(load["latencies"]) * 1000,
            "count": len(load["latencies"]),
        },
        "setup_ms": {
            "p50": statistics.median(load["setups"]) * 1000 if load["setups"] else float("nan"),
            "p95": percentile(load["setups"], 0.95) * 1000 if load["setups"] else float("nan"),
        },
        "cpu_ms_per_exec": {role: (cpu_after[role] - cpu_before.get(role, 0.0)) / count * 1000 for role in cpu_after},
    }


async def measure(clients: int, execs: int) -> dict[str, Any]:
    """Two bursts of the same load on one server: the first grows the engine pool to its size
    (worker processes start), the second runs on the pool as a busy server has it; then the
    same load once on the SDK floor server."""
    if not EVERYTHING.exists():
        raise SystemExit("npm test servers missing: run `make setup` (npm ci --prefix tests/mcp_servers)")
    workdir = Path(tempfile.mkdtemp())
    config = workdir / "mcp.json"
    config.write_text(json.dumps({"mcpServers": {"everything": {"command": str(EVERYTHING), "args": ["stdio"]}}}))
    command = [sys.executable, "-m", "codemode", "mcp", "--transport", "http", "--port", "0", "--mcp-config", str(config)]
    process, url, stderr = start_server(command)
    try:
        warm = await run_clients(url, 1, 3)  # the first session starts the first engine worker
        if warm["errors"]:
            raise SystemExit(f"warm-up failed: {warm['errors']}")
        await asyncio.sleep(0.0 if smoke_mode() else 1.0)  # let the warm-up's background work finish
        idle = {"rss": rss_bytes(process.pid), "threads": thread_count(process.pid), "tree_rss": tree_rss(process.pid)}
        peak = dict(idle)
        stop = asyncio.Event()
        async with asyncio.TaskGroup() as group:
            group.create_task(sample_peak(process.pid, stop, peak))
            first = await burst(url, clients, execs, process.pid)
            steady = await burst(url, clients, execs, process.pid)
            stop.set()
        threads_after, rss_after, settled_s = await settle(process.pid, idle)
        downstream = sum("mcp-server-everything" in _cmdline(pid) for pid in tree(process.pid))
    finally:
        stop_server(process, stderr)
    return {
        "clients": clients,
        "execs_per_client": execs,
        "bursts": {"first": first, "steady": steady, "sdk floor": await sdk_floor(clients, execs)},
        "server": {
            "idle": idle,
            "peak": peak,
            "after": {"rss": rss_after, "threads": threads_after, "settled_s": settled_s},
        },
        "downstream_processes": downstream,
    }


async def sdk_floor(clients: int, execs: int) -> dict[str, Any]:
    """The same clients and calls against the SDK's own server and a tool that answers at once:
    what the MCP transport costs on this machine before codemode does anything.

    Its clients speak the handshake era (initialize, a session, a GET stream), as they must with
    codemode, which refuses the sessionless 2026-07-28 entry. The server answers every call with
    a JSON body (the SDK's `json_response` mode, its cheapest), so the clients keep their
    connections, as they do with codemode, which answers in JSON whenever the answer is the
    result alone."""
    process, url, stderr = start_server([sys.executable, str(HERE / "sdk_floor_server.py")])
    try:
        warm = await run_clients(url, 1, 3, floor_call, "legacy")
        if warm["errors"]:
            raise SystemExit(f"SDK floor warm-up failed: {warm['errors']}")
        return await burst(url, clients, execs, process.pid, floor_call, "legacy")
    finally:
        stop_server(process, stderr)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text()
    except OSError:
        return ""


def report(runs: list[tuple[float, dict[str, Any]]]) -> str:
    """The section for the run with the median steady p95 (each run: its engine floor and figures)."""
    floor, run = sorted(runs, key=lambda fr: fr[1]["bursts"]["steady"]["exec_ms"]["p95"])[len(runs) // 2]
    first, steady, sdk = run["bursts"]["first"], run["bursts"]["steady"], run["bursts"]["sdk floor"]
    server = run["server"]
    idle, peak, after = server["idle"], server["peak"], server["after"]
    threads_back = after["threads"] - idle["threads"]
    rss_back = (after["rss"] - idle["rss"]) / MIB

    def ms(value: float) -> str:
        return f"{value:.0f} ms ({value / floor:.0f}×)"

    def cpu(value: float) -> str:
        return f"{value:.1f} ms ({value / floor:.1f}×)"

    def row(label: str, cell: Any) -> str:
        return f"| {label} | {cell(first)} | {cell(steady)} | {cell(sdk)} |"

    def total(b: dict[str, Any]) -> float:
        return sum(b["cpu_ms_per_exec"].values())

    # Closed loop: `clients` calls always in flight on 2 cores, so the mean latency is about
    # clients × (CPU per call) / 2 cores whatever the scheduling; p95 needs the total below this.
    budget = TARGETS["p95_ms"] * 2 / run["clients"]
    roles = list(steady["cpu_ms_per_exec"])
    lines = [
        BEGIN,
        "## Many clients over streamable HTTP (`benchmarks/http_load.py`)",
        "",
        f"{run['clients']} official-SDK clients connect at once to `codemode mcp --transport http` on loopback,"
        f" each an MCP session running {run['execs_per_client']} execs in a row; every exec makes one nested call"
        " to the shared server-everything (`echo`). Two such bursts on one server: the first grows the engine"
        " pool from one worker to its size (worker processes start during it), the second runs on the pool a busy"
        " server has. The clients run in the benchmark process, on the same 2 cores as the server, its engine"
        " workers and server-everything. Times also as a multiple of the raw engine floor of this run"
        f" ({floor:.2f} ms; it moves 2x with the machine's speed). The last column is the floor of the"
        " transport: the same clients making the same number of calls to the SDK's own server"
        " (`benchmarks/sdk_floor_server.py`, JSON answers), whose one tool answers at once (no script, engine or"
        " nested call).",
        "",
        "| figure | first burst | steady | SDK floor |",
        "|---|---|---|---|",
        row("calls (errors)", lambda b: f"{b['exec_ms']['count']} ({len(b['errors'])})"),
        row("call p50", lambda b: ms(b["exec_ms"]["p50"])),
        row("call p95", lambda b: ms(b["exec_ms"]["p95"])),
        row("call max", lambda b: ms(b["exec_ms"]["max"])),
        row("session set-up p50 (initialize, tools/list)", lambda b: ms(b["setup_ms"]["p50"])),
        row("session set-up p95", lambda b: ms(b["setup_ms"]["p95"])),
        row("whole burst", lambda b: f"{b['wall_s']:.1f} s"),
        *[row(f"CPU per call: {role}", lambda b, role=role: cpu(b["cpu_ms_per_exec"][role])) for role in roles],
        row("CPU per call: all", lambda b: cpu(total(b))),
        "",
        "| server | idle | peak | after |",
        "|---|---|---|---|",
        f"| RSS | {idle['rss'] / MIB:.0f} MiB | {peak['rss'] / MIB:.0f} MiB | {after['rss'] / MIB:.0f} MiB |",
        f"| threads | {idle['threads']} | {peak['threads']} | {after['threads']} |",
        f"| with engines and downstream, RSS | {idle['tree_rss'] / MIB:.0f} MiB | {peak['tree_rss'] / MIB:.0f} MiB | |",
        f"| server-everything processes | | {run['downstream_processes']} | |",
        "",
        "Targets:",
        f"- 0 errors: {_verdict(not first['errors'] and not steady['errors'])}.",
        f"- p95 per exec ≤ {TARGETS['p95_ms']:.0f} ms (steady): {_verdict(steady['exec_ms']['p95'] <= TARGETS['p95_ms'])}"
        f" ({steady['exec_ms']['p95']:.0f} ms; first burst {first['exec_ms']['p95']:.0f} ms). With {run['clients']}"
        f" calls always in flight on 2 cores, the mean latency is about {run['clients']} × (CPU per call) / 2,"
        f" so a p95 of {TARGETS['p95_ms']:.0f} ms needs well under {budget:.0f} ms of CPU per call on the machine,"
        f" clients included. The SDK floor alone takes {total(sdk):.1f} ms of it here (server"
        f" {sdk['cpu_ms_per_exec']['server']:.1f}, clients {sdk['cpu_ms_per_exec']['clients (this process)']:.1f});"
        f" an exec takes {total(steady):.1f} ms, of which the engine workers (a fresh V8 isolate per exec, the"
        f" bare one costing about {floor:.1f} ms) {steady['cpu_ms_per_exec']['engine workers']:.1f} ms.",
        f"- threads within {TARGETS['threads_over_idle']} and RSS within {TARGETS['rss_over_idle_mib']:.0f} MiB of"
        " idle after the clients leave:"
        f" {_verdict(threads_back <= TARGETS['threads_over_idle'] and rss_back <= TARGETS['rss_over_idle_mib'])}"
        f" (+{threads_back} threads, {rss_back:+.0f} MiB, {after['settled_s']:.1f} s after they left).",
    ]
    if len(runs) > 1:
        listed = "; ".join(
            f"{r['bursts']['steady']['exec_ms']['p95']:.0f} ms (first burst {r['bursts']['first']['exec_ms']['p95']:.0f},"
            f" floor {f:.2f} ms)"
            for f, r in runs
        )
        lines.append(f"- all {len(runs)} runs, steady p95 each, fresh server each (the table is their median): {listed}.")
    errors = first["errors"] + steady["errors"] + sdk["errors"]
    if errors:
        lines.append(f"- first errors: {'; '.join(errors[:3])}")
    lines.append(END)
    return "\n".join(lines) + "\n"


def _verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"



def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--execs", type=int, default=20)
    parser.add_argument("--runs", type=int, default=3, help="fresh-server runs; the median one is reported")
    parser.add_argument("--json", type=Path, default=None, help="also write the raw figures here")
    parser.add_argument("--results", type=Path, default=None, help="RESULTS.md to put the section into")
    parser.add_argument("--smoke", action="store_true", help="2 clients of 2 execs, one run: does it still run?")
    args = parser.parse_args(argv)
    if args.smoke:
        enter_smoke_mode()
        args.clients, args.execs, args.runs = 2, 2, 1
    if not 1 <= args.clients <= 200 or not 1 <= args.execs <= 200:
        parser.error("clients and execs are bounded to 1..200 (a load test, not a stress tool)")
    if not 1 <= args.runs <= 5:
        parser.error("runs are bounded to 1..5")
    runs = [(floor_ms(), asyncio.run(measure(args.clients, args.execs))) for _ in range(args.runs)]
    section = report(runs)
    print(section)
    if args.json is not None:
        args.json.write_text(json.dumps([{"floor_ms": f, **r} for f, r in runs], indent=2))
    if args.results is not None:
        replace_section(args.results, BEGIN, END, section)


if __name__ == "__main__":
    main()
