"""Two `codemode mcp --store postgresql://...` replicas serving the same sessions (issue 22 point 5).

Real parts only: the replicas are `codemode mcp --transport http` subprocesses on loopback sharing
one real PostgreSQL store (scripts/postgres.sh), HAProxy (Debian's package, scripts/haproxy.sh)
in front with scripts/haproxy-test.cfg, and the `mcp` SDK's client. A replica is SIGKILLed; the
client's next call through the proxy goes on on the other replica.
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from codemode.mcp_server import HEALTH_PATH, SESSION_META_KEY
from mcp_support import TESTS, server_command, texts
from postgres_support import fresh_postgres_schema

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = TESTS.parent
HAPROXY_CONFIG = ROOT / "scripts" / "haproxy-test.cfg"
LIVENESS_S = 30.0  # only a hang takes this long
TOKEN = "replica-test-token"
OTHER_TOKEN = "another-deployment-token"
# Prints, yields (the exec answers after 500 ms), waits 2 s on a timer, prints again.
YIELDS = {
    "code": 'store("k", "v"); text("before"); await new Promise((r) => setTimeout(r, 2000)); text("after")',
    "yield_time_ms": 500,
}


# -- the parts -------------------------------------------------------------------------------
def haproxy_bin() -> str:
    found = shutil.which("haproxy") or ("/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None)
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("no HAProxy for the replica tests: `make test` runs scripts/haproxy.sh")
        pytest.skip("no HAProxy: run scripts/haproxy.sh")
    return found


@dataclass
class Replica:
    """One `codemode mcp --transport http --store ...` process."""

    name: str
    directory: Path
    args: tuple[str, ...]
    env: dict[str, str]
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    @property
    def log(self) -> str:
        return (self.directory / f"{self.name}.stderr").read_text(errors="replace")

    def start(self) -> None:
        """Start it (again on the same port, once it had one) and return once it listens."""
        stderr = self.directory / f"{self.name}.stderr"
        with stderr.open("ab") as sink:
            sink.write(f"--- {self.name} starting\n".encode())
            sink.flush()
            start_at = sink.tell()
            self.process = subprocess.Popen(
                server_command(None, "--transport", "http", "--port", str(self.port), *self.args),
                env=self.env,
                cwd=TESTS,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=sink,
            )
        deadline = time.monotonic() + LIVENESS_S
        while True:
            with stderr.open("rb") as log:
                log.seek(start_at)
                for line in log.read().decode(errors="replace").splitlines():
                    if "listening on " in line:
                        self.port = int(line.rsplit(":", 1)[1].split("/", 1)[0])
                        return
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.process.kill()
                pytest.fail(f"replica {self.name} did not come up:\n{self.log}")
            time.sleep(0.05)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=LIVENESS_S)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def store_url() -> Iterator[str]:
    """The test PostgreSQL (scripts/postgres.sh), in a schema of this test's own."""
    with fresh_postgres_schema() as url:
        yield url


@pytest.fixture
def replicas(tmp_path: Path, store_url: str) -> Iterator[Callable[..., Replica]]:
    """Make replicas sharing the store with `make(name, *args, token=...)`; stopped after the test."""
    made: list[Replica] = []
    url = store_url

    def make(name: str, *args: str, token: str | None = None) -> Replica:
        env = dict(os.environ)
        extra = ("--store", url, *args)
        if token is not None:
            env["CODEMODE_TEST_TOKEN"] = token
            extra = (*extra, "--auth-token-env", "CODEMODE_TEST_TOKEN")
        replica = Replica(name, tmp_path, extra, env)
        replica.start()
        made.append(replica)
        return replica

    yield make
    for replica in made:
        replica.stop()
    for replica in made:
        assert "Traceback" not in replica.log, replica.log


class HAProxy:
    """HAProxy in front of replicas a and b, with scripts/haproxy-test.cfg; asked via its stats socket."""

    def __init__(self, a: Replica, b: Replica) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="cm-ha-"))  # short: a unix socket path is short
        self.port = _free_port()
        env = dict(os.environ)
        env.update(
            CODEMODE_HA_DIR=str(self.directory),
            CODEMODE_HA_PORT=str(self.port),
            CODEMODE_HA_A=str(a.port),
            CODEMODE_HA_B=str(b.port),
        )
        self.log = self.directory / "haproxy.log"
        with self.log.open("wb") as sink:
            self.process = subprocess.Popen(
                [haproxy_bin(), "-db", "-f", str(HAPROXY_CONFIG)], env=env, stdout=sink, stderr=sink
            )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def ask(self, command: str) -> str:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(10)
            conn.connect(str(self.directory / "stats.sock"))
            conn.sendall(command.encode() + b"\n")
            chunks: list[bytes] = []
            while chunk := conn.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def states(self) -> dict[str, str]:
        """Each replica's state as the health checks see it: "UP", "DOWN", ..."""
        try:
            text = self.ask("show stat")
        except OSError:
            return {}
        rows = csv.DictReader(io.StringIO(text.removeprefix("# ")))
        return {row["svname"]: row["status"].split()[0] for row in rows if row["pxname"] == "replicas" and row["svname"] in ("a", "b")}

    def stuck_to(self) -> str:
        """The replica the one session in the stick table is routed to."""
        entries = [line for line in self.ask("show table replicas").splitlines() if "key=" in line]
        assert len(entries) == 1, entries
        server_id = entries[0].split("server_id=", 1)[1].split()[0]
        return {"1": "a", "2": "b"}[server_id]

    async def until(self, wanted: dict[str, str]) -> None:
        deadline = time.monotonic() + LIVENESS_S
        while (states := self.states()) != wanted or not states:
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise AssertionError(f"HAProxy saw {states}, not {wanted}:\n{self.log.read_text()}")
            await asyncio.sleep(0.1)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)


@asynccontextmanager
async def haproxy(a: Replica, b: Replica) -> AsyncGenerator[HAProxy]:
    proxy = HAProxy(a, b)
    try:
        await proxy.until({"a": "UP", "b": "UP"})
        yield proxy
    finally:
        proxy.stop()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def wait_taking_over(client: Client, cell_id: str) -> Any:
    """`wait` on a cell whose replica died: until its lease runs out the store says it runs
    elsewhere, and the caller (a model) is told to try again in a few seconds."""
    deadline = time.monotonic() + LIVENESS_S
    while True:
        result = await client.call_tool("wait", {"cell_id": cell_id, "yield_time_ms": 20_000})
        if "running on another host" not in texts(result)[0] or time.monotonic() > deadline:
            return result
        await asyncio.sleep(0.5)


def cell_id_of(result: Any) -> str:
    header = texts(result)[0]
    assert header.startswith("Script running with cell ID "), header
    return header.split("cell ID ", 1)[1].split()[0]


# -- failover through the proxy (2025-11-25, Mcp-Session-Id) -----------------------------------
async def test_a_cell_continues_on_the_other_replica_after_its_replica_is_killed(replicas: Any) -> None:
    a: Replica = replicas("a")
    b: Replica = replicas("b")
    by_name = {"a": a, "b": b}
    async with haproxy(a, b) as proxy, Client(proxy.url) as client:
        started = await client.call_tool("exec", YIELDS)
        assert texts(started)[1:] == ["before"]
        cell_id = cell_id_of(started)

        stuck = by_name[proxy.stuck_to()]
        other = b if stuck is a else a
        stuck.kill()
        await proxy.until({stuck.name: "DOWN", other.name: "UP"})

        rest = await wait_taking_over(client, cell_id)
        assert texts(rest)[0].startswith("Script completed"), texts(rest)
        assert texts(rest)[1:] == ["after"]  # what the client already had is not sent again

        # The killed replica comes back with nothing in memory; the other one dies: the session
        # (its stored value) is served by the restarted one, no 404 "Session not found".
        await asyncio.to_thread(stuck.start)
        await proxy.until({"a": "UP", "b": "UP"})
        other.kill()
        await proxy.until({stuck.name: "UP", other.name: "DOWN"})
        again = await client.call_tool("exec", {"code": 'text(String(load("k")))'})
        assert texts(again)[1:] == ["v"]


async def test_a_session_the_store_does_not_know_or_its_client_ended_is_not_found(replicas: Any) -> None:
    a: Replica = replicas("a")
    b: Replica = replicas("b")
    headers = {"accept": "application/json, text/event-stream", "mcp-protocol-version": "2025-11-25"}
    listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}}
    async with httpx2.AsyncClient(timeout=LIVENESS_S) as http:
        unknown = await http.post(a.url, json=listing, headers={**headers, "mcp-session-id": "0" * 32})
        assert unknown.status_code == 404
        assert unknown.json()["error"]["message"] == "Session not found"

        hello = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}
        initialize = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": hello}
        opened = await http.post(a.url, json=initialize, headers=headers)
        session = {**headers, "mcp-session-id": opened.headers["mcp-session-id"]}
        assert (await http.post(b.url, json=listing, headers=session)).status_code == 200  # taken over
        assert (await http.delete(b.url, headers=session)).status_code == 200  # the client ends it
        # a still holds it: it finds out from the store within seconds, ends it, and answers 404.
        deadline = time.monotonic() + LIVENESS_S
        while (ended := await http.post(a.url, json=listing, headers=session)).status_code == 200:
            assert time.monotonic() < deadline, "replica a kept serving a session its client ended on b"
            await asyncio.sleep(0.5)
        assert (ended.status_code, ended.json()["error"]["message"]) == (404, "Session not found")
        assert (await http.post(b.url, json=listing, headers=session)).status_code == 404  # not taken over again


# -- sessionless (2026-07-28): session handles ---------------------------------------------------
@asynccontextmanager
async def _client(url: str, token: str) -> AsyncGenerator[Client]:
    """A sessionless (2026-07-28) SDK client sending the bearer `token`."""
    http = httpx2.AsyncClient(headers={"authorization": f"Bearer {token}"}, timeout=LIVENESS_S)
    async with http, Client(streamable_http_client(url, http_client=http), mode="2026-07-28") as client:
        yield client


async def test_a_session_handle_works_on_any_replica_and_only_for_its_credential(replicas: Any) -> None:
    a: Replica = replicas("a", token=TOKEN)
    b: Replica = replicas("b", token=TOKEN)
    elsewhere: Replica = replicas("c", token=OTHER_TOKEN)  # another deployment on the same store
    async with _client(a.url, TOKEN) as on_a:
        first = await on_a.call_tool("exec", {"code": 'store("k", "from a"); text("stored")'})
        assert texts(first)[1:] == ["stored"]
        handle = (first.meta or {})[SESSION_META_KEY]
        again = await on_a.call_tool("exec", {"code": 'text("same")'}, meta={SESSION_META_KEY: handle})
        assert (again.meta or {})[SESSION_META_KEY] == handle
        fresh = await on_a.call_tool("exec", {"code": 'text(String(load("k")))'})
        assert texts(fresh)[1:] == ["undefined"]  # no handle: a session of its own
        assert (fresh.meta or {})[SESSION_META_KEY] != handle

    async with _client(b.url, TOKEN) as on_b:
        seen = await on_b.call_tool("exec", {"code": 'text(String(load("k")))'}, meta={SESSION_META_KEY: handle})
        assert texts(seen)[1:] == ["from a"]
        session_id, mac = handle.rsplit(".", 1)
        forged = f"{session_id}.{mac[::-1]}"
        with pytest.raises(MCPError, match="was not issued by this server for these credentials"):
            await on_b.call_tool("exec", {"code": 'text("x")'}, meta={SESSION_META_KEY: forged})
        with pytest.raises(MCPError, match="was not issued"):
            await on_b.call_tool("exec", {"code": 'text("x")'}, meta={SESSION_META_KEY: "0" * 32 + "." + mac})

    async with _client(elsewhere.url, OTHER_TOKEN) as other_credential:
        with pytest.raises(MCPError, match="was not issued by this server for these credentials"):
            await other_credential.call_tool("exec", {"code": 'text("x")'}, meta={SESSION_META_KEY: handle})


# -- health ----------------------------------------------------------------------------------
async def test_the_health_endpoint_answers_without_the_token_and_fails_with_the_store(
    replicas: Any, store_url: str, tmp_path: Path
) -> None:
    a: Replica = replicas("a", token=TOKEN)
    health = a.url.removesuffix("/mcp") + HEALTH_PATH
    async with httpx2.AsyncClient(timeout=LIVENESS_S) as http:
        ok = await http.get(health)
        assert (ok.status_code, ok.json()) == (200, {"status": "ok"})
        assert (await http.post(a.url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"})).status_code == 401

    async with _store_through_a_relay(store_url) as (relayed_url, cut):
        r = Replica("relayed", tmp_path, ("--store", relayed_url), dict(os.environ))
        try:
            await asyncio.to_thread(r.start)  # the relay runs on this loop
            relayed_health = r.url.removesuffix("/mcp") + HEALTH_PATH
            async with httpx2.AsyncClient(timeout=LIVENESS_S) as http:
                assert (await http.get(relayed_health)).status_code == 200
                await cut()
                down = await http.get(relayed_health)
                assert (down.status_code, down.json()) == (503, {"status": "unavailable"})
        finally:
            await asyncio.to_thread(r.stop)


@asynccontextmanager
async def _store_through_a_relay(url: str) -> AsyncGenerator[tuple[str, Callable[[], Awaitable[None]]]]:
    """The test PostgreSQL (on a unix socket) reached through a loopback TCP relay the test can cut."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    target = f"{query.pop('host')}/.s.PGSQL.{query.pop('port', '5432')}"
    user = query.pop("user", "postgres")
    connections: list[asyncio.StreamWriter] = []

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_unix_connection(target)
        connections.extend((writer, up_writer))
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    server = await asyncio.start_server(relay, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    relayed = f"postgresql://{user}@127.0.0.1:{port}{parts.path}?{urlencode(query)}"

    async def cut() -> None:
        server.close()
        for writer in connections:
            writer.close()
        await server.wait_closed()

    try:
        yield relayed, cut
    finally:
        server.close()
        for writer in connections:
            writer.close()


def test_the_cli_takes_a_store() -> None:
    shown = subprocess.run([*server_command(None), "--help"], cwd=TESTS, capture_output=True, text=True, check=True)
    assert "--store URL" in shown.stdout
