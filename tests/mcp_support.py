"""What the `codemode mcp` tests share: the server commands, and reading its processes in /proc."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
from mcp_types import CallToolResult, TextContent

TESTS = Path(__file__).parent
SERVERS = TESTS / "mcp_servers"
EVERYTHING_BIN = SERVERS / "node_modules" / ".bin" / "mcp-server-everything"
INSPECTOR_BIN = SERVERS / "node_modules" / ".bin" / "mcp-inspector"
TOOLS_SPEC = "fixtures_tools:TOOLS"
TINY_PNG = "data:image/png;base64,iVBORw0KGgo="
# uvicorn shuts down gracefully on SIGTERM, then re-raises the signal.
STOPPED_CLEANLY = (0, -signal.SIGTERM)
KILL_AFTER_S = 15.0
SPIN = {"code": "while (true) {}", "yield_time_ms": 100}
# Yields at once, then notifies while no call observes the cell.
NOTIFY_LATER = {"code": 'await new Promise((r) => setTimeout(r, 150)); notify("later")', "yield_time_ms": 50}


def write_config(directory: Path) -> Path:
    if not EVERYTHING_BIN.exists():
        pytest.fail("npm test servers missing: run `npm ci --prefix tests/mcp_servers`")
    path = directory / "mcp.json"
    everything = {"command": str(EVERYTHING_BIN), "args": ["stdio"]}
    path.write_text(json.dumps({"mcpServers": {"everything": everything}}))
    return path


def server_command(config: Path | None, *extra: str) -> list[str]:
    command = [sys.executable, "-m", "codemode", "mcp", "--tools", TOOLS_SPEC, *extra]
    return command if config is None else [*command, "--mcp-config", str(config)]


def texts(result: CallToolResult) -> list[str]:
    return [block.text for block in result.content if isinstance(block, TextContent)]


# -- processes -------------------------------------------------------------------------------
def children(pid: int) -> dict[int, str]:
    """The live child processes of `pid`, with their command lines."""
    found: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid and fields[0] != "Z":
                found[int(entry)] = Path(f"/proc/{entry}/cmdline").read_text().replace("\0", " ")
        except (OSError, IndexError, ValueError):
            continue
    return found


def everything_servers(pid: int) -> set[int]:
    return {child for child, line in children(pid).items() if "mcp-server-everything" in line}


def processes_mentioning(text: str) -> list[int]:
    pids: list[int] = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if text in Path(f"/proc/{entry}/cmdline").read_text() and int(entry) != os.getpid():
                    pids.append(int(entry))
            except OSError:
                continue
    return pids


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants (engine worker processes run scripts for the server)."""
    tree, todo = [pid], [pid]
    while todo:
        found = list(children(todo.pop()))
        tree.extend(found)
        todo.extend(found)
    return tree


async def spinning_threads(pid: int, samples: int = 20) -> set[str]:
    """Threads of `pid` or its descendants found running or runnable in nearly every sample (a
    busy loop's thread).

    Thread states rather than CPU time: a busy thread stays runnable however loaded the machine is.
    """
    running: Counter[str] = Counter()
    for _ in range(samples):
        for process in process_tree(pid):
            try:
                tids = os.listdir(f"/proc/{process}/task")
            except OSError:
                continue
            for tid in tids:
                try:
                    if Path(f"/proc/{process}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "R":
                        running[f"{process}/{tid}"] += 1
                except OSError:
                    continue
        await asyncio.sleep(0.025)
    return {tid for tid, count in running.items() if count >= samples * 0.8}


@dataclass
class HttpServer:
    url: str
    process: subprocess.Popen[bytes]
    stderr: Path


def start_http_server(
    config: Path | None, directory: Path, *extra: str, env: dict[str, str] | None = None
) -> HttpServer:
    """`codemode mcp --transport http` on a free loopback port, once it listens."""
    stderr = directory / "server.stderr"
    with stderr.open("wb") as sink:
        process = subprocess.Popen(
            server_command(config, "--transport", "http", "--port", "0", *extra),
            env=env,
            cwd=TESTS,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=sink,
        )
    deadline = time.monotonic() + 30
    while True:
        for line in stderr.read_text(errors="replace").splitlines():
            if "listening on " in line:
                return HttpServer(line.rsplit(" ", 1)[1], process, stderr)
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"codemode mcp --transport http did not come up:\n{stderr.read_text()}")
        time.sleep(0.05)


def stop(server: HttpServer) -> int:
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
    try:
        return server.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.process.kill()
        raise
