"""`codemode mcp` with many clients: shared downstream servers, the end of sessions (DELETE,
vanished clients, idle timeout, the session limit), bearer auth, start-up failures and options.

The server is always a real `codemode mcp` subprocess; clients are the `mcp` SDK's, the MCP
Inspector CLI, and raw HTTP (httpx) where a test needs a client that never opens a GET stream.
Downstream: npm's server-everything (shared) and tests/mcp_servers/py_server.py (per session).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from codemode.mcp_server._http import VANISHED_GRACE_S
from mcp_support import (
    EVERYTHING_BIN,
    INSPECTOR_BIN,
    SPIN,
    STOPPED_CLEANLY,
    TESTS,
    HttpServer,
    children,
    everything_servers,
    server_command,
    spinning_threads,
    start_http_server,
    stop,
    texts,
)

pytestmark = pytest.mark.integration

PY_SERVER = TESTS / "mcp_servers" / "py_server.py"
LIVENESS_S = 20.0  # generous bound for "within a few seconds" on a slow, loaded machine
PROTOCOL = "2025-11-25"


def config_file(directory: Path, **servers: dict[str, Any]) -> Path:
    path = directory / "mcp.json"
    path.write_text(json.dumps({"mcpServers": servers}))
    return path


def everything() -> dict[str, Any]:
    if not EVERYTHING_BIN.exists():
        pytest.fail("npm test servers missing: run `npm ci --prefix tests/mcp_servers`")
    return {"command": str(EVERYTHING_BIN), "args": ["stdio"]}


def py_server(*args: str, **settings: Any) -> dict[str, Any]:
    return {"command": sys.executable, "args": [str(PY_SERVER), *args], **settings}


def py_servers(pid: int) -> set[int]:
    return {child for child, line in children(pid).items() if "py_server.py" in line}


def thread_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def thread_names(pid: int) -> Counter[str]:
    """The names of `pid`'s threads, counted (what a failed thread bound reports)."""
    names: Counter[str] = Counter()
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            names[Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()] += 1
        except OSError:
            continue
    return names


async def eventually(
    check: Callable[[], Awaitable[bool]] | Callable[[], bool], what: str | Callable[[], str]
) -> None:
    deadline = time.monotonic() + LIVENESS_S
    while time.monotonic() < deadline:
        outcome = check()
        if await outcome if asyncio.iscoroutine(outcome) else outcome:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"not within {LIVENESS_S} s: {what if isinstance(what, str) else what()}")


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., HttpServer]]:
    """Start `codemode mcp --transport http` with a config and options; stopped after the test."""
    started: list[HttpServer] = []

    def start(config: Path | None, *extra: str, env: dict[str, str] | None = None) -> HttpServer:
        server = start_http_server(config, tmp_path, *extra, env=env)
        started.append(server)
        return server

    yield start
    for server in started:
        assert stop(server) in STOPPED_CLEANLY, server.stderr.read_text()
        assert "Traceback" not in server.stderr.read_text()


# -- shared downstream servers ---------------------------------------------------------------
async def test_sessions_share_downstream_servers_and_per_session_ones_are_their_own(
    tmp_path: Path, serve: Callable[..., HttpServer]
) -> None:
    config = config_file(tmp_path, everything=everything(), py=py_server(per_session=True))
    server = serve(config)
    pid = server.process.pid
    shared = everything_servers(pid)
    assert len(shared) == 1  # started with the server

    code = 'const e = await tools.mcp__everything__echo({ message: "hi" }); text(e.content[0].text); text(await tools.mcp__py__pid({}))'

    async def one_session() -> tuple[str, str]:
        async with Client(server.url) as client:
            result = await client.call_tool("exec", {"code": code})
            echo, py_pid = texts(result)[1:]
            return echo, py_pid

    outcomes = await asyncio.gather(*(one_session() for _ in range(6)))
    assert {echo for echo, _ in outcomes} == {"Echo: hi"}
    assert len({py_pid for _, py_pid in outcomes}) == 6  # one py server per session
    assert everything_servers(pid) == shared  # and one everything server for all of them
    await eventually(lambda: not py_servers(pid), "per-session servers stop with their sessions")
    assert everything_servers(pid) == shared


async def test_a_shared_server_that_crashes_is_restarted_for_every_session(
    tmp_path: Path, serve: Callable[..., HttpServer]
) -> None:
    server = serve(config_file(tmp_path, py=py_server()))
    pid_code = {"code": "text(await tools.mcp__py__pid({}))"}
    async with Client(server.url) as a, Client(server.url) as b:
        first = texts(await a.call_tool("exec", pid_code))[1]
        assert texts(await b.call_tool("exec", pid_code))[1] == first  # one server for both
        crashed = await a.call_tool("exec", {"code": "await tools.mcp__py__crash({})"})
        assert crashed.is_error is True
        assert "during the call to `crash`" in texts(crashed)[-1]
        assert "pytools: crashing on purpose" in texts(crashed)[-1]
        restarted = texts(await b.call_tool("exec", pid_code))[1]
        assert restarted != first
        assert texts(await a.call_tool("exec", pid_code))[1] == restarted


async def test_a_hanging_call_of_one_session_does_not_hold_up_the_others(
    tmp_path: Path, serve: Callable[..., HttpServer]
) -> None:
    server = serve(config_file(tmp_path, py=py_server()))
    async with Client(server.url) as a, Client(server.url) as b:
        hanging = await a.call_tool(
            "exec", {"code": "await tools.mcp__py__hang({ seconds: 60 })", "yield_time_ms": 200}
        )
        assert texts(hanging)[0].startswith("Script running with cell ID 1")
        answered = await b.call_tool("exec", {"code": "text(await tools.mcp__py__add({ a: 1, b: 2 }).then((r) => r.structuredContent.total))"})
        assert texts(answered)[1:] == ["3"]
        stopped = await a.call_tool("wait", {"cell_id": "1", "terminate": True})
        assert texts(stopped)[0].startswith("Script terminated")


async def test_library_sessions_on_one_loop_share_connections(tmp_path: Path) -> None:
    from codemode import CodeMode

    config = {"mcpServers": {"py": py_server(), "own": py_server(per_session=True)}}
    code = "text(await tools.mcp__py__pid({})); text(await tools.mcp__own__pid({}))"
    async with CodeMode(mcp_servers=config) as a, CodeMode(mcp_servers=config) as b:
        shared_a, own_a = texts_of(await a.exec(code))
        shared_b, own_b = texts_of(await b.exec(code))
        assert shared_a == shared_b and own_a != own_b
    await eventually(lambda: not py_servers(os.getpid()), "the last session stops the shared server")


def texts_of(result: Any) -> list[str]:
    return [item.text for item in result.items]


# -- the end of sessions ---------------------------------------------------------------------
CLIENT_THAT_SPINS = """
import asyncio, sys
from mcp import Client

async def main():
    async with Client(sys.argv[1]) as client:
        result = await client.call_tool("exec", {"code": "while (true) {}", "yield_time_ms": 100})
        print(result.content[0].text, flush=True)
        await asyncio.sleep(3600)

asyncio.run(main())
"""


async def test_a_killed_client_has_its_cells_terminated(tmp_path: Path, serve: Callable[..., HttpServer]) -> None:
    server = serve(None)
    pid = server.process.pid
    script = tmp_path / "client.py"
    script.write_text(CLIENT_THAT_SPINS)
    client = subprocess.Popen(
        [sys.executable, str(script), server.url], cwd=TESTS, stdout=subprocess.PIPE, text=True
    )
    try:
        assert client.stdout is not None
        line = await asyncio.to_thread(client.stdout.readline)
        assert line.startswith("Script running with cell ID 1"), line
        assert await spinning_threads(pid)
    finally:
        client.send_signal(signal.SIGKILL)
        client.wait()
        if client.stdout is not None:
            client.stdout.close()
    # No DELETE came: the server sees the client's connections close and ends its session.
    await eventually(lambda: _not_spinning(pid), "the vanished client's cell is terminated")


async def _not_spinning(pid: int) -> bool:
    return not await spinning_threads(pid, samples=10)


def test_an_inspector_cli_call_leaves_nothing_running(serve: Callable[..., HttpServer]) -> None:
    server = serve(None)
    pid = server.process.pid
    if not INSPECTOR_BIN.exists():
        pytest.fail("npm test tools missing: run `npm ci --prefix tests/mcp_servers`")
    called = subprocess.run(
        [str(INSPECTOR_BIN), "--cli", "--format", "json", server.url, "--protocol-era", "auto",
         "--method", "tools/call", "--tool-name", "exec", "--tool-args-json", json.dumps(SPIN)],
        cwd=TESTS, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert called.returncode == 0, called.stderr
    assert json.loads(called.stdout)["result"]["content"][0]["text"].startswith("Script running with cell ID 1")
    # The CLI closed its transport without DELETE and exited.
    asyncio.run(eventually(lambda: _not_spinning(pid), "the Inspector's cell is terminated"))


async def test_a_client_that_closes_each_answer_stream_early_keeps_its_session(
    serve: Callable[..., HttpServer],
) -> None:
    """No GET stream, and every POST's event stream closed once the answer is read: alive."""
    server = serve(None)
    async with initialized(server) as raw:
        body = {"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                "params": {"name": "exec", "arguments": {"code": 'notify("storing"); store("k", 42); text("stored")'}}}  # fmt: skip
        async with raw.http.stream("POST", server.url, json=body, headers=raw._headers()) as answer:
            assert answer.headers["content-type"].startswith("text/event-stream")  # notify() first: streamed
            async for line in answer.aiter_lines():
                if line.startswith("data:") and '"id":7' in line:
                    break  # leave without reading the end of the stream
        await asyncio.sleep(VANISHED_GRACE_S + 2)
        loaded = sse_result(await raw.request("tools/call", {"name": "exec", "arguments": {"code": 'text(String(load("k")))'}}))
        assert loaded["result"]["content"][1]["text"] == "42"


async def test_an_answer_that_is_the_response_alone_is_json_on_one_kept_connection(
    serve: Callable[..., HttpServer],
) -> None:
    """Read to its end, a JSON answer leaves the connection reusable (the SDK client stops
    reading an event stream at the response, which made every call open a new connection)."""
    server = serve(None)
    async with initialized(server) as raw:
        answers = [
            await raw.request("tools/call", {"name": "exec", "arguments": {"code": f'text("n{i}")'}}) for i in range(3)
        ]
        local_ends = {answer.extensions["network_stream"].get_extra_info("client_addr") for answer in answers}
    assert len(local_ends) == 1, local_ends
    for i, answer in enumerate(answers):
        assert answer.headers["content-type"] == "application/json"
        assert answer.json()["result"]["content"][1]["text"] == f"n{i}"


def test_the_http_server_runs_on_uvloop_and_parses_http_with_httptools(serve: Callable[..., HttpServer]) -> None:
    """The faster loop and HTTP parser (dependencies outside Windows) are the ones in use."""
    server = serve(None)
    maps = Path(f"/proc/{server.process.pid}/maps").read_text()
    assert "uvloop" in maps
    assert "httptools" in maps


async def test_an_answer_with_a_notification_first_streams_everything_in_order(
    serve: Callable[..., HttpServer],
) -> None:
    server = serve(None)
    async with initialized(server) as raw:
        code = 'notify("one"); await new Promise(r => setTimeout(r, 50)); notify("two"); text("done")'
        answer = await raw.request("tools/call", {"name": "exec", "arguments": {"code": code}})
    assert answer.headers["content-type"].startswith("text/event-stream")
    messages = [json.loads(line[5:]) for line in answer.text.splitlines() if line.startswith("data:") and line[5:].strip()]
    assert [m.get("params", {}).get("data") for m in messages[:2]] == ["one", "two"]
    assert messages[2]["result"]["content"][1]["text"] == "done"
    assert len(messages) == 3


class RawSession:
    """A streamable-HTTP MCP client that never opens a GET stream (plain JSON-RPC over POST)."""

    def __init__(self, http: httpx2.AsyncClient, url: str) -> None:
        self.http = http
        self.url = url
        self.session_id: str | None = None
        self._ids = iter(range(1, 1_000_000))

    def _headers(self) -> dict[str, str]:
        headers = {"accept": "application/json, text/event-stream", "mcp-protocol-version": PROTOCOL}
        if self.session_id is not None:
            headers["mcp-session-id"] = self.session_id
        return headers

    async def request(self, method: str, params: dict[str, Any]) -> httpx2.Response:
        body = {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": params}
        return await self.http.post(self.url, json=body, headers=self._headers())

    async def initialize(self) -> None:
        params = {"protocolVersion": PROTOCOL, "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}
        response = await self.request("initialize", params)
        assert response.status_code == 200, response.text
        self.session_id = response.headers["mcp-session-id"]
        note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        assert (await self.http.post(self.url, json=note, headers=self._headers())).status_code == 202


@asynccontextmanager
async def initialized(server: HttpServer) -> AsyncIterator[RawSession]:
    """A `RawSession` with `server`, past its initialize handshake."""
    async with httpx2.AsyncClient(timeout=30) as http:
        raw = RawSession(http, server.url)
        await raw.initialize()
        yield raw


def sse_result(response: httpx2.Response) -> dict[str, Any]:
    """The JSON-RPC message of a response sent as SSE or as plain JSON."""
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        datas = [line[5:].strip() for line in response.text.splitlines() if line.startswith("data:")]
        return json.loads([data for data in datas if data][-1])
    return response.json()


async def test_an_idle_session_ends_after_the_idle_timeout(serve: Callable[..., HttpServer]) -> None:
    server = serve(None, "--session-idle-timeout", "2")
    pid = server.process.pid
    async with initialized(server) as raw:
        spinning = sse_result(await raw.request("tools/call", {"name": "exec", "arguments": SPIN}))
        assert spinning["result"]["content"][0]["text"].startswith("Script running with cell ID 1")
        assert await spinning_threads(pid)
        await eventually(lambda: _not_spinning(pid), "the idle session's cell is terminated")
        gone = await raw.request("tools/call", {"name": "wait", "arguments": {"cell_id": "1"}})
        assert gone.status_code == 404  # the session itself is gone: the client must initialize again


async def test_the_session_limit_refuses_new_sessions_with_a_clear_error(serve: Callable[..., HttpServer]) -> None:
    server = serve(None, "--max-sessions", "2")
    async with Client(server.url) as first, Client(server.url) as second:
        await first.list_tools()
        await second.list_tools()
        async with httpx2.AsyncClient(timeout=30) as http:
            refused = await RawSession(http, server.url).request(
                "initialize",
                {"protocolVersion": PROTOCOL, "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}},
            )
        assert refused.status_code == 503
        error = refused.json()["error"]
        assert "limit of 2 open MCP sessions (--max-sessions)" in error["message"]
        with pytest.raises(Exception) as caught:
            async with Client(server.url) as third:
                await third.list_tools()
        assert "limit of 2" in repr(caught.value) or "503" in repr(caught.value)
    async with Client(server.url) as later:  # room again once the others have left
        assert [tool.name for tool in (await later.list_tools()).tools] == ["exec", "wait"]


async def test_no_process_or_thread_outlives_its_session(tmp_path: Path, serve: Callable[..., HttpServer]) -> None:
    # The per-session server is a second server-everything: it starts in a third of the time
    # of the Python one, and 55 of them start here.
    config = config_file(tmp_path, everything=everything(), own=everything() | {"per_session": True})
    server = serve(config, "--engine-workers", "2")
    pid = server.process.pid
    code = "await tools.mcp__everything__echo({ message: 'x' }); const r = await tools.mcp__own__echo({ message: 'y' }); text(r.content[0].text)"

    async def sessions(count: int) -> None:
        async def one() -> None:
            async with Client(server.url) as client:
                result = await client.call_tool("exec", {"code": code})
                assert texts(result)[1:] == ["Echo: y"], texts(result)

        for start in range(0, count, 25):  # 25 sessions end at once: teardown under load
            await asyncio.gather(*(one() for _ in range(min(25, count - start))))

    await eventually(lambda: len(everything_servers(pid)) == 1, "the shared server is up")
    shared = everything_servers(pid)
    await sessions(5)  # warm: engine workers and the SDK's threads exist from here on
    await eventually(lambda: everything_servers(pid) == shared, "warm-up sessions end")
    baseline_threads = thread_count(pid)
    baseline_names = thread_names(pid)
    await sessions(50)
    await eventually(lambda: everything_servers(pid) == shared, "no per-session server outlives its session")
    # Engine workers serve every session; the pool has at most its 2 and a spare (and a reader
    # thread each), however many sessions came and went.
    await eventually(
        lambda: thread_count(pid) <= baseline_threads + 3,
        lambda: f"threads back to idle (new: {thread_names(pid) - baseline_names})",
    )
    engine_workers = {child for child, line in children(pid).items() if "codemode._engine" in line}
    assert len(engine_workers) <= 3
    assert set(children(pid)) - engine_workers == shared


# -- bearer auth -----------------------------------------------------------------------------
async def test_bearer_token_is_required_when_set(serve: Callable[..., HttpServer]) -> None:
    env = os.environ | {"CODEMODE_TEST_TOKEN": "s3cret-for-tests"}
    server = serve(None, "--auth-token-env", "CODEMODE_TEST_TOKEN", env=env)
    async with httpx2.AsyncClient(timeout=30) as http:
        for headers in ({}, {"authorization": "Bearer wrong"}):
            denied = await http.post(server.url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"}, headers=headers)
            assert denied.status_code == 401
            assert denied.headers["www-authenticate"].startswith("Bearer")
            assert "Authorization: Bearer" in denied.json()["error"]["message"]
    authorized = httpx2.AsyncClient(headers={"authorization": "Bearer s3cret-for-tests"}, timeout=30)
    async with authorized, Client(streamable_http_client(server.url, http_client=authorized)) as client:
        result = await client.call_tool("exec", {"code": 'text("in")'})
        assert texts(result)[1:] == ["in"]


def test_serving_beyond_loopback_needs_a_token() -> None:
    refused = subprocess.run(
        [*server_command(None), "--transport", "http", "--host", "0.0.0.0", "--port", "0"],
        cwd=TESTS, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert refused.returncode == 1
    assert "not a loopback address, without a bearer token" in refused.stderr
    assert "Traceback" not in refused.stderr
    missing = subprocess.run(
        [*server_command(None), "--transport", "http", "--auth-token-env", "CODEMODE_NO_SUCH_VARIABLE"],
        cwd=TESTS, capture_output=True, text=True, timeout=60, env={k: v for k, v in os.environ.items()},
    )  # fmt: skip
    assert missing.returncode == 2
    assert "environment variable CODEMODE_NO_SUCH_VARIABLE is not set" in missing.stderr


# -- start-up failures and output that is not UTF-8 ------------------------------------------
def broken_config(directory: Path) -> Path:
    return config_file(directory, py=py_server(), broken=py_server("--fail-at-start", required=True))


async def test_a_required_server_that_fails_gives_a_json_rpc_error_over_stdio(tmp_path: Path) -> None:
    stderr = tmp_path / "stderr"
    command = server_command(broken_config(tmp_path))
    params = StdioServerParameters(command=command[0], args=command[1:], cwd=str(TESTS))
    with stderr.open("w") as sink:
        async with Client(stdio_client(params, errlog=sink)) as client:  # the server keeps running
            for _ in range(2):
                with pytest.raises(MCPError) as caught:
                    await client.list_tools()
                assert "MCP server `broken` exited" in caught.value.message
                assert "API_TOKEN is not set" in caught.value.message
    logged = stderr.read_text()
    assert "Traceback" not in logged and "ExceptionGroup" not in logged
    mentions = [line for line in logged.splitlines() if "`broken`" in line]
    assert len(mentions) == 1 and "API_TOKEN is not set" in mentions[0], logged


async def test_a_required_server_that_fails_gives_a_json_rpc_error_over_http(
    tmp_path: Path, serve: Callable[..., HttpServer]
) -> None:
    server = serve(broken_config(tmp_path))
    async with Client(server.url) as client:
        with pytest.raises(MCPError) as caught:
            await client.call_tool("exec", {"code": 'text("never")'})
    assert "MCP server `broken` exited" in caught.value.message
    assert "Traceback" not in server.stderr.read_text()


def test_a_required_server_that_fails_makes_exec_exit_1_with_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "codemode", "exec", "--mcp-config", str(broken_config(tmp_path)), "-"],
        input='text("never")', cwd=TESTS, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        "Error: code mode failed to start: MCP server `broken` exited (or closed its stdout) before "
        "completing the MCP handshake (stderr: pytools: configuration error: API_TOKEN is not set)"
    ]


async def test_lone_surrogates_cross_http_and_cli_json(tmp_path: Path, serve: Callable[..., HttpServer]) -> None:
    server = serve(None)
    async with Client(server.url) as client:
        lone = await client.call_tool("exec", {"code": 'notify("x\\udfffy"); text("a\\ud800b")'})
        assert texts(lone)[1:] == ["a\ufffdb"]
        again = await client.call_tool("exec", {"code": 'text("still here")'})
        assert texts(again)[1:] == ["still here"]
    done = subprocess.run(
        [sys.executable, "-m", "codemode", "exec", "--json", "-"],
        input=b'text("a\\ud800b")', cwd=TESTS, capture_output=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout.decode("utf-8"))
    assert printed[1]["text"] == "a\ufffdb"


# -- options ---------------------------------------------------------------------------------
async def test_engine_and_cell_options_reach_every_session(serve: Callable[..., HttpServer]) -> None:
    server = serve(
        None, "--engine-workers", "1", "--isolate-pool-size", "2", "--cell-time-limit-ms", "300",
        "--max-concurrent-cells", "1", "--heap-limit-bytes", str(64 * 1024 * 1024),
    )  # fmt: skip
    async with Client(server.url) as client:
        stopped = await client.call_tool("exec", {"code": "while (true) {}"})
        assert "300 ms" in " ".join(texts(stopped)), texts(stopped)
        held = await client.call_tool("exec", {"code": "await new Promise(() => {})", "yield_time_ms": 50})
        refused = await client.call_tool("exec", {"code": 'text("second")'})
        assert held.is_error is False and refused.is_error is True
        assert "1" in " ".join(texts(refused))


@pytest.mark.parametrize("command", ["exec", "mcp"])
def test_the_cli_takes_the_codemode_keywords(command: str) -> None:
    shown = subprocess.run(
        [sys.executable, "-m", "codemode", command, "--help"], capture_output=True, text=True, timeout=60
    )
    for option in ("--isolation", "--engine-workers", "--isolate-pool-size", "--cell-time-limit-ms",
                   "--heap-limit-bytes", "--max-concurrent-cells"):  # fmt: skip
        assert option in shown.stdout
    if command == "mcp":
        for option in ("--session-idle-timeout", "--max-sessions", "--auth-token-env"):
            assert option in shown.stdout


def test_exec_cell_time_limit_from_the_cli() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "codemode", "exec", "--cell-time-limit-ms", "300", "-"],
        input="while (true) {}", cwd=TESTS, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    assert "300 ms" in done.stdout, done.stdout

