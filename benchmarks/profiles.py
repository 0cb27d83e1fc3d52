"""Where the Python side of an exec spends its time: py-spy samples of the hot paths (issue 23).

Usage:
    python benchmarks/profiles.py [--results benchmarks/RESULTS.md] [--smoke] [--json out.json]

Each path runs in a child process that, once its session is set up, has py-spy sample it
(`record --pid --nonblocking --threads --subprocesses`: the process is never paused, its engine
workers are sampled too, sleeping threads are not), through the public API only:

* warm exec: rounds of 25 execs of `notify("in"); text("bench")` after the isolate pool was
  filled and a quiet pause (the reference method's loop, repeated);
* nested calls: execs of 100 sequential awaits of a tool that returns at once.

Every sample is one running thread seen at one moment. The samples of each thread on the exec
path (the host's event loop; in process mode the worker's event loop and the host's reader thread
of that worker) are sorted by the frame py-spy saw on top into what the thread was doing, and
turned into time per exec (samples / sampling rate / execs); the rest of the exec's wall time the
thread slept. What V8 does inside a call into mini-racer's C library counts to that call.

Without py-spy (not installed, or the OS refuses it access to the child) the section says so.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from report_file import replace_section

START_MARK = "<!-- profiles.py: start -->"
END_MARK = "<!-- profiles.py: end -->"
RATE = 1000  # samples per second and thread
PR_SET_PTRACER, PR_SET_PTRACER_ANY = 0x59616D61, 2**64 - 1
WARM_SCRIPT = 'notify("in"); text("bench")'
NESTED_SCRIPT = "for (let i = 0; i < 100; i++) await tools.fast({}); text('x');"

# What a thread was doing, from the frame on top of its stack (file fragment, function): the
# first rule that matches wins.
ACTIVITIES: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    ("waiting for the next event (epoll, a queue, a pipe read)", (
        ("selectors.py", "select"), ("threading.py", "wait"), ("queue.py", "get"),
        ("concurrent/futures/thread.py", "_worker"), ("_supervisor.py", "_read"), ("_protocol.py", "read"),
    )),
    ("calls into mini-racer's C library (start an eval, make a value, free; includes waits for the GIL)", (
        ("miniracer/_compat.py", ""), ("py_mini_racer/", ""), ("ctypes/", ""),
    )),
    ("waking the event loop from another thread (self-pipe)", (
        ("selector_events.py", "_write_to_self"), ("selector_events.py", "_read_from_self"),
    )),
    ("the worker pipe: encoding, decoding, writing (msgpack, the wire protocol)", (
        ("process/_protocol.py", ""), ("process/_worker.py", ""), ("msgpack", ""), ("process/__init__.py", ""),
        ("process/_supervisor.py", ""),
    )),
    ("the engine's cell: ring messages, JSON, events", (
        ("miniracer/_cell.py", ""), ("miniracer/_isolate.py", ""), ("miniracer/__init__.py", ""),
        ("miniracer/_pool.py", ""), ("json/", ""),
    )),
    ("the session: source, cell, limits, output, trace spans, the tool call", (
        ("codemode/_session/", ""), ("codemode/_source.py", ""), ("codemode/_output.py", ""),
        ("codemode/_protocol/", ""), ("codemode/tools/", ""), ("codemode/_imports.py", ""),
        ("opentelemetry/", ""), ("contextlib.py", ""), ("profiles.py", ""),
    )),
    ("uvloop's own C code, the worker's loop (waiting in epoll or dispatching: py-spy cannot tell which)", (
        ("asyncio/runners.py", "run"),
    )),
    ("the event loop itself (scheduling, futures, tasks)", (("asyncio/", ""),)),
)
OTHER = "other"


# -- the workloads (each in a child process that has py-spy sample it once it is set up) -----
async def warm(isolation: str, rounds: int, spy: Spy) -> int:
    from codemode import CodeMode

    async with CodeMode(isolation=isolation) as cm:  # type: ignore[arg-type]
        await cm.start(fill_pool=True)
        await cm.exec(WARM_SCRIPT)
        async with spy:
            for _ in range(rounds):
                await cm.start(fill_pool=True)
                await spy.pause(0.3)  # quiet: the pool's background work is done
                for _ in range(25):
                    await spy.timed(cm.exec(WARM_SCRIPT))
    return rounds * 25


async def nested(isolation: str, execs: int, spy: Spy) -> int:
    from codemode import CodeMode, Tool

    async def fast(_args: Any) -> dict[str, Any]:
        return {"ok": True}

    async with CodeMode(tools=[Tool("fast", "Returns at once.", fast)], isolation=isolation) as cm:  # type: ignore[arg-type]
        await cm.start(fill_pool=True)
        await cm.exec(NESTED_SCRIPT)
        async with spy:
            for _ in range(execs):
                await spy.timed(cm.exec(NESTED_SCRIPT))
    return execs


class Spy:
    """py-spy sampling this process (and its engine workers) from `async with` to its end, and
    the wall time of the execs timed meanwhile."""

    def __init__(self, py_spy: str, raw: str) -> None:
        self._command = [py_spy, "record", "--pid", str(os.getpid()), "--nonblocking", "--threads",
                         "--subprocesses", "-r", str(RATE), "-f", "raw", "-o", raw]
        self._process: subprocess.Popen[bytes] | None = None
        self.exec_seconds = 0.0
        self.pauses = 0.0

    async def __aenter__(self) -> Spy:
        _allow_tracing()
        self._process = subprocess.Popen(self._command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        await asyncio.sleep(1.0)  # attached (samples of an idle process count nothing: no --idle)
        if self._process.poll() is not None:
            raise RuntimeError(f"py-spy exited: {self._process.stderr.read().decode()[-400:] if self._process.stderr else ''}")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._process is not None
        self._process.send_signal(signal.SIGINT)  # py-spy writes what it sampled and exits
        self._process.communicate(timeout=60)

    async def timed(self, awaitable: Any) -> None:
        started = time.perf_counter()
        await awaitable
        self.exec_seconds += time.perf_counter() - started

    async def pause(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def _allow_tracing() -> None:
    """Let py-spy, a child, read this process where the OS lets only ancestors (Yama ptrace_scope 1)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PTRACER, ctypes.c_ulong(PR_SET_PTRACER_ANY), 0, 0, 0)
    except (OSError, AttributeError):
        pass


def workload(path: str, isolation: str, size: int, py_spy: str, raw: str, out: str) -> None:
    spy = Spy(py_spy, raw)
    count = asyncio.run(warm(isolation, size, spy) if path == "warm" else nested(isolation, size, spy))
    Path(out).write_text(json.dumps({"execs": count, "seconds": spy.exec_seconds}))


# -- sorting the samples ---------------------------------------------------------------------
def activity(frame: str) -> str:
    """The activity of a py-spy frame (`function (file:line)`)."""
    function, _, where = frame.partition(" (")
    for name, rules in ACTIVITIES:
        for file_part, function_name in rules:
            if file_part in where and (not function_name or function == function_name):
                return name
    return OTHER


def role(stack: list[str], isolation: str) -> str | None:
    """Which thread on the exec path a sample belongs to (None: another thread)."""
    threads = [frame for frame in stack if frame.startswith("thread (")]
    processes = [frame for frame in stack if frame.startswith("process ")]
    if not threads:
        return None
    thread = threads[0]
    # The sampled process is the host; an engine worker is its child (a second process frame).
    in_worker = isolation == "process" and len(processes) > 1
    if thread.endswith("MainThread"):
        return "engine worker's event loop" if in_worker else "host event loop"
    if not in_worker and "codemode-engine-" in thread and not thread.endswith("spawner"):
        return "host reader thread (worker pipe)"
    return None


def _starting(frame: str) -> bool:
    """A frame of a process starting up: importing, or loading V8."""
    return "importlib._bootstrap" in frame or frame.startswith("init_v8 (")


def sample(path: str, isolation: str, size: int, py_spy: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        raw, out = os.path.join(tmp, "raw.txt"), os.path.join(tmp, "out.json")
        command = [sys.executable, __file__, "--workload", path, isolation, str(size), py_spy, raw, out]
        done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=600)
        if done.returncode != 0 or not os.path.exists(out) or not os.path.exists(raw):
            raise RuntimeError(f"sampling failed ({done.returncode}): {done.stderr.strip()[-400:]}")
        run = json.loads(Path(out).read_text())
        by_role: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
        functions: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
        with open(raw, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                stack_text, _, count = line.rstrip("\n").rpartition(" ")
                stack = stack_text.split(";")
                who = role(stack, isolation)
                if who is None or not count.isdigit() or any(_starting(frame) for frame in stack):
                    continue  # another thread, or a process starting (a spare engine worker)
                top = stack[-1]
                by_role[who][activity(top)] += int(count)
                functions[who][top] += int(count)
    return {"path": path, "isolation": isolation, "execs": run["execs"], "seconds": run["seconds"],
            "roles": {who: dict(counts) for who, counts in by_role.items()},
            "functions": {who: dict(counts.most_common(8)) for who, counts in functions.items()}}


def measure(smoke: bool) -> dict[str, Any]:
    py_spy = shutil.which("py-spy") or shutil.which("py-spy", path=os.path.dirname(sys.executable))
    if py_spy is None:
        return {"skipped": "py-spy is not installed (it is in the dev extra: pip install -e '.[dev]')"}
    sizes = {"warm": 2 if smoke else 40, "nested": 2 if smoke else 40}
    runs = []
    try:
        for isolation in ("process", "in-process"):
            for path in ("warm", "nested"):
                runs.append(sample(path, isolation, sizes[path], py_spy))
    except RuntimeError as exc:
        return {"skipped": str(exc)}
    return {"runs": runs}


# -- the report ------------------------------------------------------------------------------
def per_exec(samples: int, execs: int) -> str:
    return f"{samples / RATE / execs * 1e3:.3f} ms"


def report_lines(data: dict[str, Any]) -> list[str]:
    lines = [
        START_MARK,
        "## Where the time goes: profiles of the Python side (`benchmarks/profiles.py`)",
        "",
    ]
    if "skipped" in data:
        return [*lines, f"Not sampled in this run: {data['skipped']}.", END_MARK]
    lines += [
        "py-spy samples the threads on the exec path 1,000 times a second while they run (not while they sleep), "
        "without pausing the process, once the session is set up: warm exec, rounds of 25 execs after the pool "
        "was filled and a quiet pause; nested, execs of 100 sequential awaits of a tool that returns at once. "
        "Each sample is sorted by the frame on top of the thread's stack and the counts are given as time per "
        "exec. Time inside a call into mini-racer's C library counts to that call, including waiting there for "
        "the GIL while an isolate's thread holds it. The last row is the rest of the exec's wall time (sampling "
        "slows it a little): the thread slept, waiting for the pipe, the isolate or another thread.",
        "",
    ]
    activities = [name for name, _ in ACTIVITIES] + [OTHER]
    for run in data["runs"]:
        roles = run["roles"]
        order = [who for who in ("host event loop", "host reader thread (worker pipe)", "engine worker's event loop")
                 if who in roles]
        execs = run["execs"]
        wall = run["seconds"] / execs
        label = "warm exec" if run["path"] == "warm" else "nested calls (per exec of 100 calls)"
        lines += [f"**{label}, {run['isolation']}** ({execs} execs, {wall * 1e3:.3f} ms of wall time per exec "
                  "while sampled)", "", "| what the thread was doing | " + " | ".join(order) + " |",
                  "|---|" + "---|" * len(order)]
        for name in activities:
            if any(roles[who].get(name) for who in order):
                cells = [per_exec(roles[who].get(name, 0), execs) for who in order]
                lines.append(f"| {name} | " + " | ".join(cells) + " |")
        running = [sum(roles[who].values()) / RATE / execs for who in order]
        lines.append("| **running, in all** | " + " | ".join(f"**{r * 1e3:.3f} ms**" for r in running) + " |")
        lines.append("| not running (asleep until something wakes it) | "
                     + " | ".join(f"{max(0.0, wall - r) * 1e3:.3f} ms" for r in running) + " |")
        lines.append("")
        tops = []
        for who in order:
            busiest = list(run["functions"][who].items())[:4]
            if busiest:
                tops.append(f"{who}: " + "; ".join(f"`{frame}` {per_exec(n, execs)}" for frame, n in busiest))
        if tops:
            lines += ["Busiest frames (on top of the stack): " + ". ".join(tops) + ".", ""]
    return [*lines, END_MARK]



def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--results", type=Path, help="replace this file's profile section")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: does it still run?")
    parser.add_argument("--json", help="also write the samples here")
    parser.add_argument("--workload", nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.workload:
        path, isolation, size, py_spy, raw, out = args.workload
        workload(path, isolation, int(size), py_spy, raw, out)
        return
    data = measure(args.smoke)
    lines = report_lines(data)
    print("\n".join(lines))
    if args.json:
        Path(args.json).write_text(json.dumps(data), encoding="utf-8")
    if args.results:
        replace_section(args.results, START_MARK, END_MARK, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
