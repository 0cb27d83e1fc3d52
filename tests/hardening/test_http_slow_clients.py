"""`codemode mcp` against clients that are slow, stalled or hostile, and text it cannot send as is.

Each server runs in a child process (stopped, or killed, at teardown); every client read has a
deadline. The connection limits are set small so each one is reached in a fraction of a second;
the flood test runs the real CLI with its defaults under an open-file limit that 1,500 stalled
connections would exhaust if they were kept.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import mcp_types
import pytest
from mcp import Client, StdioServerParameters
from tests.conftest import ISOLATION

from codemode.errors import UsageError
from codemode.mcp_server import HttpLimits
from mcp_support import KILL_AFTER_S, STOPPED_CLEANLY, TESTS

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # each starts a server process

TOKEN = "slow-clients-token"
CODEMODE_MCP = [sys.executable, "-m", "codemode", "mcp", "--isolation", ISOLATION]
PROTOCOL = "2025-11-25"
HEAD_START = b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n"  # a request head that never ends
SERVE_WITH_LIMITS = """
import asyncio, json, sys
from codemode.mcp_server import HttpLimits, serve_http
limits = HttpLimits(**json.loads(sys.argv[1]))
announce = lambda url: print("listening on", url, file=sys.stderr, flush=True)
asyncio.run(serve_http(auth_token=sys.argv[2], port=0, http_limits=limits, isolation=sys.argv[3], on_listening=announce))
"""


@dataclass
class Server:
    url: str
    port: int
    process: subprocess.Popen[bytes]
    stderr: Path


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Start an HTTP server in a child process: `serve(limits)` with `HttpLimits` fields, or
    `serve(command=[...])` for a CLI command line; stopped (killed if it hangs) at teardown."""
    started: list[Server] = []

    def start(
        limits: dict[str, Any] | None = None,
        *,
        command: list[str] | None = None,
        open_files: int | None = None,
    ) -> Server:
        if command is None:
            command = [sys.executable, "-c", SERVE_WITH_LIMITS, json.dumps(limits or {}), TOKEN, ISOLATION]
        stderr = tmp_path / f"server{len(started)}.stderr"

        def limit_open_files(limit: int = open_files or 0) -> None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

        with stderr.open("wb") as sink:
            process = subprocess.Popen(
                command,
                cwd=TESTS,
                env=dict(os.environ, TOK=TOKEN),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=sink,
                preexec_fn=None if open_files is None else limit_open_files,
            )
        deadline = time.monotonic() + 30
        while True:
            lines = [line for line in stderr.read_text(errors="replace").splitlines() if "listening on " in line]
            if lines:
                url = lines[0].rsplit(" ", 1)[1]
                server = Server(url, int(url.split(":")[2].split("/")[0]), process, stderr)
                started.append(server)
                return server
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"the HTTP server did not come up:\n{stderr.read_text()}")
            time.sleep(0.05)

    yield start
    for server in started:
        if server.process.poll() is None:
            server.process.send_signal(signal.SIGTERM)
        try:
            code = server.process.wait(KILL_AFTER_S)
        except subprocess.TimeoutExpired:
            server.process.kill()
            pytest.fail(f"the HTTP server did not stop on SIGTERM:\n{server.stderr.read_text()}")
        assert code in STOPPED_CLEANLY, server.stderr.read_text()
        assert "Traceback" not in server.stderr.read_text()


# -- clients ---------------------------------------------------------------------------------
Connect = Callable[..., socket.socket]


@pytest.fixture
def connect() -> Iterator[Connect]:
    """`connect(port, head=HEAD_START)`: a connection that sent `head` (b"": nothing) and then
    nothing more; closed at teardown."""
    opened: list[socket.socket] = []

    def open_one(port: int, head: bytes = HEAD_START) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        opened.append(sock)
        if head:
            sock.sendall(head)
        return sock

    yield open_one
    for sock in opened:
        sock.close()


def read_until_closed(sock: socket.socket, within_s: float) -> tuple[bytes, float]:
    """What the server sent before closing `sock`, and after how many seconds it closed."""
    started = time.monotonic()
    received = b""
    sock.settimeout(within_s)
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except TimeoutError:
        pytest.fail(f"the server kept the connection open for {within_s} s; it sent {received!r}")
    except ConnectionResetError:
        pass
    return received, time.monotonic() - started


def read_response(sock: socket.socket) -> bytes:
    """One whole response (head and `content-length` body) from a connection kept open."""
    sock.settimeout(10)
    received = b""
    while b"\r\n\r\n" not in received:
        received += sock.recv(65536)
    head, _, body = received.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += sock.recv(65536)
    return received


def still_open(sock: socket.socket) -> bool:
    """Whether the server neither answered nor closed `sock` (a read would block)."""
    readable, _, _ = select.select([sock], [], [], 0)
    return not readable


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def authorized_exec(url: str, code: str = 'text("ok")', timeout_s: float = 30) -> dict[str, Any]:
    """An MCP client with the token: initialize, then one exec; the exec's JSON-RPC result."""
    headers = {
        "authorization": f"Bearer {TOKEN}",
        "accept": "application/json, text/event-stream",
        "mcp-protocol-version": PROTOCOL,
    }
    with httpx2.Client(timeout=timeout_s, headers=headers) as http:
        hello = {"protocolVersion": PROTOCOL, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}
        answer = http.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": hello})
        assert answer.status_code == 200, answer.text
        headers["mcp-session-id"] = answer.headers["mcp-session-id"]
        note = http.post(url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers)
        assert note.status_code == 202, note.text
        call = {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "tools/call",
            "params": {"name": "exec", "arguments": {"code": code}},
        }
        answer = http.post(url, json=call, headers=headers)
        assert answer.status_code == 200, answer.text
        if answer.headers["content-type"].startswith("text/event-stream"):
            datas = [line[5:].strip() for line in answer.text.splitlines() if line.startswith("data:")]
            return json.loads([data for data in datas if data][-1])["result"]  # type: ignore[no-any-return]
        return answer.json()["result"]  # type: ignore[no-any-return]


def texts(result: dict[str, Any]) -> list[str]:
    return [block["text"] for block in result["content"] if block["type"] == "text"]


# -- deadlines -------------------------------------------------------------------------------
def test_a_head_that_never_ends_is_answered_408_and_closed(serve: Callable[..., Server], connect: Connect) -> None:
    server = serve({"header_timeout_s": 0.6})
    answer, after_s = read_until_closed(connect(server.port), within_s=10)
    assert status_of(answer) == 408
    assert b"the request head did not arrive within 0.6 s" in answer
    assert 0.5 < after_s < 5


def test_a_head_trickled_a_byte_at_a_time_still_meets_the_deadline(
    serve: Callable[..., Server], connect: Connect
) -> None:
    """The deadline runs from the connection's start: each byte does not buy more time."""
    server = serve({"header_timeout_s": 0.8})
    sock = connect(server.port, b"POST /mcp HTTP/1.1\r\n")
    started = time.monotonic()
    header = b"X-Slow: " + b"a" * 10_000
    for byte in header:
        readable, _, _ = select.select([sock], [], [], 0.05)  # the pace of the trickle
        if readable:
            break
        sock.sendall(bytes([byte]))
    answer, _ = read_until_closed(sock, within_s=10)
    assert status_of(answer) == 408
    assert time.monotonic() - started < 5


def test_a_head_over_the_size_limit_is_answered_431(serve: Callable[..., Server], connect: Connect) -> None:
    server = serve({"max_head_bytes": 4096})
    sock = connect(server.port, HEAD_START + b"X-Big: " + b"b" * 8000)
    answer, after_s = read_until_closed(sock, within_s=10)
    assert status_of(answer) == 431
    assert b"over 4096 bytes" in answer
    assert after_s < 5  # at once, not at the header deadline


def test_a_body_that_stalls_is_answered_408_and_closed(serve: Callable[..., Server], connect: Connect) -> None:
    server = serve({"body_timeout_s": 0.6})
    head = HEAD_START + f"Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n".encode()
    sock = connect(server.port, head + b"Accept: application/json, text/event-stream\r\nContent-Length: 500\r\n\r\n{")
    answer, after_s = read_until_closed(sock, within_s=10)
    assert status_of(answer) == 408
    assert b"the request body did not arrive within 0.6 s" in answer
    assert 0.5 < after_s < 5


def test_an_idle_kept_alive_connection_is_closed(serve: Callable[..., Server], connect: Connect) -> None:
    server = serve({"keep_alive_timeout_s": 0.5})
    sock = connect(server.port, b"GET /elsewhere HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    answer, after_s = read_until_closed(sock, within_s=10)
    assert status_of(answer) == 401  # answered (kept alive), then closed when idle
    assert after_s < 5


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("header_timeout_s", 0),
        ("body_timeout_s", -1.0),
        ("keep_alive_timeout_s", True),
        ("max_head_bytes", 0),
        ("max_pending_connections", 2.5),
        ("max_connections", None),
    ],
)
def test_limits_that_cannot_work_are_refused_when_made(field: str, value: object) -> None:
    with pytest.raises(UsageError, match=f"HttpLimits.{field} must be a positive"):
        HttpLimits(**{field: value})  # type: ignore[arg-type]


# -- how many connections --------------------------------------------------------------------
def test_beyond_the_pending_bound_the_longest_waiting_head_is_closed(
    serve: Callable[..., Server], connect: Connect
) -> None:
    server = serve({"max_pending_connections": 5})
    socks = [connect(server.port) for _ in range(8)]
    for sock in socks[:3]:
        answer, _ = read_until_closed(sock, within_s=10)
        assert status_of(answer) == 503
        assert b"waited longest" in answer
    assert all(still_open(sock) for sock in socks[3:])
    # A client that sends its head at once gets through while five stalled heads hold the bound.
    assert texts(authorized_exec(server.url))[-1] == "ok"


def test_beyond_the_connection_bound_a_stalled_head_makes_room_or_the_new_one_is_refused(
    serve: Callable[..., Server], connect: Connect
) -> None:
    server = serve({"max_connections": 3, "keep_alive_timeout_s": 60})
    kept = [connect(server.port, b"GET /elsewhere HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n") for _ in range(2)]
    for sock in kept:  # answered 401 and kept alive: open, but not inside a head
        assert status_of(read_response(sock)) == 401
    first = connect(server.port)
    second = connect(server.port)  # the fourth connection: the stalled head makes room
    answer, _ = read_until_closed(first, within_s=10)
    assert status_of(answer) == 503
    assert b"connection limit" in answer
    third = connect(server.port, b"")
    # Now the only head in progress is `second`'s, older than `third`: it goes too.
    answer, _ = read_until_closed(second, within_s=10)
    assert status_of(answer) == 503
    third.sendall(b"GET /elsewhere HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert status_of(read_response(third)) == 401
    # Three connections open, none inside a head: a new one is refused itself.
    answer, _ = read_until_closed(connect(server.port, b""), within_s=10)
    assert status_of(answer) == 503
    assert b"max_connections" in answer
    assert all(still_open(sock) for sock in kept)


HOLD_STALLED = """
import resource, socket, sys
port, count = int(sys.argv[1]), int(sys.argv[2])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (count + 100, hard))
socks = []
for _ in range(count):
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=2)
        sock.sendall(b"POST /mcp HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\n")
    except OSError:
        break
    socks.append(sock)
print(len(socks), flush=True)
sys.stdin.readline()
closed = 0
for sock in socks:
    sock.setblocking(False)
    try:
        sock.recv(65536)
        closed += 1
    except BlockingIOError:
        pass
    except OSError:
        closed += 1
print(closed, flush=True)
"""
STALLED = 1500
SERVER_OPEN_FILES = 1024  # fewer than the stalled connections: keeping them all would exhaust it


def test_with_1500_stalled_connections_a_client_with_the_token_still_runs_code(serve: Callable[..., Server]) -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < STALLED + 100:
        pytest.skip(f"the open-file hard limit is below {STALLED + 100}")
    command = [*CODEMODE_MCP, "--transport", "http", "--port", "0", "--auth-token-env", "TOK"]
    server = serve(command=command, open_files=SERVER_OPEN_FILES)
    with subprocess.Popen(
        [sys.executable, "-c", HOLD_STALLED, str(server.port), str(STALLED)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as holder:
        assert holder.stdout is not None and holder.stdin is not None
        assert int(holder.stdout.readline() or 0) == STALLED
        try:
            started = time.monotonic()
            result = authorized_exec(server.url, 'text("still served")', timeout_s=20)
            took_s = time.monotonic() - started
            server_files = len(os.listdir(f"/proc/{server.process.pid}/fd"))
            holder.stdin.write("count\n")
            holder.stdin.flush()
            closed = int(holder.stdout.readline() or 0)
        finally:
            holder.kill()
    assert texts(result)[-1] == "still served"
    assert took_s < 10
    # The stalled heads beyond the pending bound were closed at once, not kept.
    assert closed >= STALLED - 128
    assert server_files < 128 + 100
    assert "the open-file limit (1024) leaves room for 768 HTTP connections" in server.stderr.read_text()


# -- text the wire cannot carry --------------------------------------------------------------
SURROGATE_CODES = [
    'text("a\\ud800b")',
    'image("data:image/png;base64,AAAA\\ud800")',
    'audio("data:audio/\\udc00;base64,AAAA")',
    'notify("n\\udfff"); text("notified")',
    'text(await tools.echo_path({path: "x\\udbffy"}))',
    'text("still alive")',
]


async def _run_surrogate_codes(target: Any) -> list[tuple[bool, list[str]]]:
    async def approve(context: Any, params: Any) -> mcp_types.ElicitResult:
        assert "x\ufffdy" in params.message  # the question shows the argument, readable
        return mcp_types.ElicitResult(action="accept", content={"approve": True})

    outcomes: list[tuple[bool, list[str]]] = []
    async with asyncio.timeout(90), Client(target, mode="legacy", elicitation_callback=approve) as client:
        for code in SURROGATE_CODES:
            result = await client.call_tool("exec", {"code": code})
            outcomes.append(
                (result.is_error, [getattr(b, "text", None) or getattr(b, "data", "") for b in result.content])
            )
    return outcomes


def _check_surrogate_outcomes(outcomes: list[tuple[bool, list[str]]]) -> None:
    assert [failed for failed, _ in outcomes] == [False] * len(SURROGATE_CODES)
    text, image, audio, notified, approved, alive = (blocks[-1] for _, blocks in outcomes)
    assert text == "a\ufffdb"
    assert image == "AAAA\ufffd"
    assert audio == "AAAA"
    assert notified == "notified"
    assert approved == "ran x\ufffdy"
    assert alive == "still alive"


async def test_lone_surrogates_in_results_and_approvals_do_not_end_the_stdio_server() -> None:
    command = [*CODEMODE_MCP, "--tools", "fixtures_tools:APPROVAL_TOOLS"]
    params = StdioServerParameters(command=command[0], args=command[1:], cwd=TESTS)
    _check_surrogate_outcomes(await _run_surrogate_codes(params))


async def test_lone_surrogates_in_results_and_approvals_are_answered_over_http(serve: Callable[..., Server]) -> None:
    command = [*CODEMODE_MCP, "--tools", "fixtures_tools:APPROVAL_TOOLS", "--transport", "http", "--port", "0"]
    server = serve(command=command)
    _check_surrogate_outcomes(await _run_surrogate_codes(server.url))
