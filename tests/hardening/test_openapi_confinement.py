"""OpenAPI calls stay inside their API: what the host sends, seen by a real HTTP server on loopback.

Each test starts a recording server (`http.server`) that keeps every request line exactly as it
arrived (still percent-encoded) with its headers, then checks what a script can and cannot make
the host send: path parameters are one segment each, nothing leaves the `base_url`'s origin and
path prefix, configured headers, query parameters and cookies cannot be replaced, `base_url`
credentials become a header and appear in no text, redirects are not followed, and response
bodies are capped (the 400+ MiB answer runs in a child process that reports its memory).
"""

from __future__ import annotations

import base64
import http.server
import json
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import unquote

import pytest
from tests.conftest import MakeCodeMode
from tests.hardening._support import linux_only

from codemode import CodeMode, ExecResult, TextItem
from codemode.errors import UsageError
from codemode.tools.openapi import OpenApiToolset

pytestmark = pytest.mark.integration


@dataclass
class Seen:
    """One request as the server received it."""

    line: str
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "


@dataclass
class Recorder:
    """A loopback HTTP server that records requests and answers by path (see `_Handler`)."""

    server: _Server
    seen: list[Seen] = field(default_factory=list[Seen])

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"


class _Server(http.server.ThreadingHTTPServer):
    recorder: Recorder


class _Handler(http.server.BaseHTTPRequestHandler):
    """Answers: `/fail...` 500 with a text body, `/moved...` 302 to `Location: <query ?to=>`,
    `/sized/<n>` n bytes with a Content-Length, `/streamed/<n>` n bytes without one, anything
    else 200 with `{"ok": true}`."""

    protocol_version = "HTTP/1.0"

    def do_GET(self) -> None:
        recorder = cast(_Server, self.server).recorder
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        recorder.seen.append(Seen(self.requestline, headers))
        path = self.path.split("?", 1)[0]
        if "/fail" in path:
            self._answer(500, b"backend exploded: " + b"e" * 20_000, "text/plain")
        elif "/moved" in path:
            self.send_response(302)
            self.send_header("Location", unquote(self.path.split("to=", 1)[1]))
            self.end_headers()
        elif "/sized/" in path or "/streamed/" in path:
            size = int(path.rsplit("/", 1)[1])
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            if "/sized/" in path:
                self.send_header("Content-Length", str(size))
            self.end_headers()
            self.wfile.write(b"z" * size)
        else:
            self._answer(200, b'{"ok": true}', "application/json")

    do_POST = do_GET

    def _answer(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _serve() -> Recorder:
    server = _Server(("127.0.0.1", 0), _Handler)
    recorder = Recorder(server)
    server.recorder = recorder
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return recorder


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    recorder = _serve()
    yield recorder
    recorder.server.shutdown()
    recorder.server.server_close()


def _param(name: str, where: str = "path", required: bool | None = None) -> dict[str, Any]:
    return {"name": name, "in": where, "required": where == "path" if required is None else required,
            "schema": {"type": "string"}}  # fmt: skip


def _spec(**operations: tuple[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """An OpenAPI document with one GET per path: `operationId=(path, parameters)`."""
    paths = {
        path: {"get": {"operationId": op_id, "parameters": parameters, "responses": {"200": {"description": "ok"}}}}
        for op_id, (path, parameters) in operations.items()
    }
    return {"openapi": "3.0.3", "info": {"title": "Confined"}, "paths": paths}


def _texts(result: ExecResult) -> list[str]:
    return [item.text for item in result.items if isinstance(item, TextItem)]


async def _schema(cm: CodeMode, name: str) -> dict[str, Any]:
    """The input schema of nested tool `name` as the session offers it."""
    await cm.start()
    [nested] = [nested for nested in cm.tools if nested.global_name == name]
    return nested.tool.input_schema or {}


async def _outcomes(cm: CodeMode, *calls: str) -> list[str]:
    """What the script read for each call: `ok` or `rejected: <error>`."""
    body = "".join(
        f"try {{ await tools.{call}; text('ok') }} catch (e) {{ text('rejected: ' + e) }}\n" for call in calls
    )
    result = await cm.exec(body, yield_time_ms=30_000)
    assert (result.status, result.error) == ("completed", None)
    return _texts(result)


# -- path parameters --------------------------------------------------------------------------------


async def test_each_path_parameter_is_one_encoded_segment(make_cm: MakeCodeMode, recorder: Recorder) -> None:
    spec = _spec(orgs=("/orgs/{org}/members/{member}", [_param("org"), _param("member")]))
    cm = await make_cm(openapi={"hr": {"spec": spec, "base_url": f"{recorder.origin}/svc/v2"}})
    values = {
        "a/b/../../c": "a%2Fb%2F..%2F..%2Fc",
        "q?admin=1#top": "q%3Fadmin%3D1%23top",
        "line\r\nX-Injected: yes": "line%0D%0AX-Injected%3A%20yes",
        "%2e%2E": "%252e%252E",
        "...": "...",
        "café .x": "caf%C3%A9%20.x",
    }
    calls = [f"hr__orgs({{org: {json.dumps(value)}, member: 'm-7'}})" for value in values]
    assert await _outcomes(cm, *calls) == ["ok"] * len(values)
    assert [seen.line for seen in recorder.seen] == [
        f"GET /svc/v2/orgs/{encoded}/members/m-7 HTTP/1.1" for encoded in values.values()
    ]
    assert all("x-injected" not in seen.headers for seen in recorder.seen)


async def test_dot_and_empty_path_parameters_are_refused_unsent(make_cm: MakeCodeMode, recorder: Recorder) -> None:
    spec = _spec(orgs=("/orgs/{org}/members/{member}", [_param("org"), _param("member")]),
                 files=("/files/{stem}{suffix}", [_param("stem"), _param("suffix")]))  # fmt: skip
    cm = await make_cm(openapi={"hr": {"spec": spec, "base_url": f"{recorder.origin}/svc/v2"}})
    out = await _outcomes(
        cm,
        "hr__orgs({org: 'acme', member: '..'})",
        "hr__orgs({org: '.', member: 'm-7'})",
        "hr__orgs({org: '', member: 'm-7'})",
        "hr__files({stem: '.', suffix: 'x'})",  # also where it fills part of a segment
        "hr__files({stem: '.x', suffix: '..y'})",
    )
    assert out[:3] == [
        "rejected: path parameter `member` cannot be '..': each path parameter is one path segment; "
        "the request was not sent",
        "rejected: path parameter `org` cannot be '.': each path parameter is one path segment; "
        "the request was not sent",
        "rejected: path parameter `org` cannot be '': each path parameter is one path segment; "
        "the request was not sent",
    ]
    assert out[3:] == [
        "rejected: path parameter `stem` cannot be '.': each path parameter is one path segment; "
        "the request was not sent",
        "ok",
    ]
    assert [seen.line for seen in recorder.seen] == ["GET /svc/v2/files/.x..y HTTP/1.1"]


async def test_a_path_outside_the_base_url_is_never_sent(make_cm: MakeCodeMode, recorder: Recorder) -> None:
    spec = _spec(admin=("/../../admin/{id}", [_param("id")]), internal=("internal", []), reports=("/reports", []))
    cm = await make_cm(openapi={"acct": {"spec": spec, "base_url": f"{recorder.origin}/tenants/t-9/"}})
    out = await _outcomes(cm, "acct__admin({id: 'x'})", "acct__internal()", "acct__reports()")
    base = f"{recorder.origin}/tenants/t-9"
    assert out == [
        f"rejected: GET /../../admin/x would leave the API's base URL {base}; the request was not sent",
        f"rejected: GET internal would leave the API's base URL {base}; the request was not sent",
        "ok",
    ]
    assert [seen.line for seen in recorder.seen] == ["GET /tenants/t-9/reports HTTP/1.1"]


# -- configured query, headers, cookies -------------------------------------------------------------


async def test_the_base_url_query_is_kept_first_and_shown_nowhere(make_cm: MakeCodeMode, recorder: Recorder) -> None:
    spec = _spec(
        search=("/search", [_param("q", "query"), _param("tenant", "query", required=True)]), fail=("/fail", [])
    )
    base_url = f"{recorder.origin}/svc?tenant=acme&key=k-7731&key=k-7732"
    cm = await make_cm(openapi={"idx": {"spec": spec, "base_url": base_url}})
    assert "tenant" not in json.dumps(await _schema(cm, "idx__search")) and "k-7731" not in cm.exec_description()
    out = await _outcomes(cm, "idx__search({q: 'red shoes'})", "idx__search({q: 'x', tenant: 'evil'})", "idx__fail()")
    assert out[0] == "ok"
    assert out[1].startswith("rejected: tool `idx__search` got invalid arguments: Additional properties")
    assert out[2].startswith(f"rejected: GET {recorder.origin}/svc/fail answered HTTP 500 Internal Server Error: ")
    assert [seen.line for seen in recorder.seen] == [
        "GET /svc/search?tenant=acme&key=k-7731&key=k-7732&q=red+shoes HTTP/1.1",
        "GET /svc/fail?tenant=acme&key=k-7731&key=k-7732 HTTP/1.1",
    ]
    assert not any("k-773" in text for text in out)


async def test_header_parameters_cannot_replace_configured_or_transport_headers(
    make_cm: MakeCodeMode, recorder: Recorder
) -> None:
    header_names = ["x-service-token", "Host", "Cookie", "Connection", "Transfer-Encoding", "Content-Length",
                    "Proxy-Authorization", "Upgrade", "X-Request-Id"]  # fmt: skip
    parameters = [_param(name, "header", required=name == "Host") for name in header_names]
    parameters += [_param("session", "cookie"), _param("theme", "cookie")]
    spec = _spec(profile=("/profile", parameters))
    headers = {"X-Service-Token": "tok-5150", "Cookie": "session=sess-88; lang=en"}
    cm = await make_cm(openapi={"prof": {"spec": spec, "base_url": recorder.origin, "headers": headers}})
    schema = await _schema(cm, "prof__profile")
    assert set(schema["properties"]) == {"X-Request-Id", "theme"} and "required" not in schema
    out = await _outcomes(
        cm,
        "prof__profile({'X-Request-Id': 'req-1', theme: 'dark mode'})",
        "prof__profile({Host: 'intranet.example', 'x-service-token': 'forged'})",
        "prof__profile({session: 'stolen'})",
        "prof__profile({'X-Request-Id': 'a\\r\\nX-Evil: 1'})",
    )
    assert out[0] == "ok"
    assert "Additional properties are not allowed ('Host', 'x-service-token' were unexpected)" in out[1]
    assert "Additional properties are not allowed ('session' was unexpected)" in out[2]
    assert out[3] == (
        "rejected: header parameter `X-Request-Id` must be printable ASCII on one line; the request was not sent"
    )
    [seen] = recorder.seen
    assert seen.headers["host"] == recorder.origin.removeprefix("http://")
    assert seen.headers["x-service-token"] == "tok-5150"
    assert seen.headers["cookie"] == "session=sess-88; lang=en; theme=dark%20mode"
    assert seen.headers["x-request-id"] == "req-1"


def test_unconfigured_authorization_stays_a_parameter() -> None:
    spec = _spec(me=("/me", [_param("Authorization", "header"), _param("Host", "header")]))
    [tool] = OpenApiToolset({"api": {"spec": spec, "base_url": "http://127.0.0.1:9"}}).tools
    assert set((tool.input_schema or {})["properties"]) == {"Authorization"}  # Host never
    [tool] = OpenApiToolset(
        {"api": {"spec": spec, "base_url": "http://127.0.0.1:9", "headers": {"AUTHORIZATION": "t"}}}
    ).tools
    assert (tool.input_schema or {})["properties"] == {}


# -- base_url credentials ---------------------------------------------------------------------------


async def test_base_url_credentials_become_a_header_and_appear_in_no_text(
    make_cm: MakeCodeMode, recorder: Recorder
) -> None:
    spec = _spec(fail=("/fail", []), ok=("/ok", []))
    closed_port = _closed_port()
    cm = await make_cm(openapi={
        "live": {"spec": spec, "base_url": f"http://svc-user:pa%3Ass-qzxw@{recorder.origin[7:]}/api"},
        "down": {"spec": spec, "base_url": f"http://svc-user:pa%3Ass-qzxw@127.0.0.1:{closed_port}/api"},
    })  # fmt: skip
    result = await cm.exec(
        "for (const call of [tools.live__ok, tools.live__fail, tools.down__ok]) {\n"
        "  try { text(JSON.stringify(await call())) } catch (e) { text('rejected: ' + e) } }",
        yield_time_ms=30_000,
    )
    out = _texts(result)
    assert out[0] == '{"ok":true}'
    assert out[1].startswith(f"rejected: GET {recorder.origin}/api/fail answered HTTP 500")
    assert out[2].startswith(f"rejected: GET http://127.0.0.1:{closed_port}/api/ok failed: ConnectError")
    basic = "Basic " + base64.b64encode(b"svc-user:pa:ss-qzxw").decode()
    assert [seen.headers["authorization"] for seen in recorder.seen] == [basic, basic]
    # (A secret of letters: the trace's durations and timestamps are full of digits.)
    seen_by_script_or_trace = [*out, repr(result.tool_calls), repr(cm.tool_calls(str(result.cell_id))),
                               cm.exec_description(), json.dumps([tool.description for tool in cm.tools])]  # fmt: skip
    assert not any(secret in text for text in seen_by_script_or_trace for secret in ("qzxw", "svc-user", basic))


def test_base_url_credentials_and_an_authorization_header_are_refused() -> None:
    spec = _spec(ok=("/ok", []))
    with pytest.raises(UsageError, match=r"`base_url` has credentials .* keep one") as refused:
        OpenApiToolset({"api": {"spec": spec, "base_url": "https://bot:hunter2-secret@api.example",
                                "headers": {"authorization": "Bearer t"}}})  # fmt: skip
    with pytest.raises(UsageError, match="`base_url` is not a valid URL") as invalid:
        OpenApiToolset({"api": {"spec": spec, "base_url": "https://bot:hunter2-secret@[::1"}})
    with pytest.raises(UsageError, match="absolute http:// or https:// URL"):
        OpenApiToolset({"api": {"spec": spec, "base_url": "ftp://files.example/pub"}})
    assert "hunter2" not in str(refused.value) + str(invalid.value)


# -- redirects and response size ---------------------------------------------------------------------


async def test_redirects_are_not_followed(make_cm: MakeCodeMode, recorder: Recorder) -> None:
    elsewhere = _serve()
    try:
        spec = _spec(moved=("/moved", [_param("to", "query")]))
        config = {"spec": spec, "base_url": recorder.origin, "headers": {"X-Service-Token": "tok-302"}}
        cm = await make_cm(openapi={"api": config})
        [out] = await _outcomes(cm, f"api__moved({{to: '{elsewhere.origin}/collect'}})")
        assert out.startswith(f"rejected: GET {recorder.origin}/moved?to=") and "answered HTTP 302 Found" in out
        assert len(recorder.seen) == 1 and elsewhere.seen == []
    finally:
        elsewhere.server.shutdown()
        elsewhere.server.server_close()


async def test_response_bodies_are_capped(make_cm: MakeCodeMode, recorder: Recorder) -> None:
    spec = _spec(sized=("/sized/{n}", [_param("n")]), streamed=("/streamed/{n}", [_param("n")]), fail=("/fail", []))
    cm = await make_cm(openapi={"api": {"spec": spec, "base_url": recorder.origin, "max_response_bytes": 3000}})
    result = await cm.exec(
        "for (const [call, n] of [[tools.api__sized, 3000], [tools.api__streamed, 3000],\n"
        "                         [tools.api__sized, 3001], [tools.api__streamed, 70000], [tools.api__fail, 0]]) {\n"
        "  try { text(String((await call(n ? {n: String(n)} : {})).length)) } catch (e) { text(String(e)) } }",
        yield_time_ms=30_000,
    )
    out = _texts(result)
    assert out[:2] == ["3000", "3000"]
    cap = "max_response_bytes (3000 bytes), so the host read no more of it; ask for less (e.g. a smaller page)"
    assert out[2] == f"GET {recorder.origin}/sized/3001: the answer declares more than {cap}"
    assert out[3] == f"GET {recorder.origin}/streamed/70000: the answer has more than {cap}"
    assert out[4] == (
        f"GET {recorder.origin}/fail answered HTTP 500 Internal Server Error: backend exploded: "
        + "e" * (3000 - len("backend exploded: "))
        + "… (cut at max_response_bytes, 3000 bytes)"
    )
    with pytest.raises(UsageError, match="`max_response_bytes` must be a positive integer"):
        OpenApiToolset({"api": {"spec": spec, "base_url": recorder.origin, "max_response_bytes": 0}})


_BIG_ANSWER_CHILD = textwrap.dedent(
    """
    import asyncio, json, socketserver, sys, threading, time
    from codemode import CodeMode

    CHUNK = b"x" * (1 << 20)

    class Big(socketserver.StreamRequestHandler):
        def handle(self):
            line = self.rfile.readline()
            while self.rfile.readline() not in (b"\\r\\n", b""):
                pass
            mib = 450 if b"/declared" in line else 600
            head = b"HTTP/1.1 200 OK\\r\\nContent-Type: application/json\\r\\nConnection: close\\r\\n"
            if b"/declared" in line:
                head += b"Content-Length: %d\\r\\n" % (mib << 20)
            try:
                self.wfile.write(head + b"\\r\\n")
                if b"/small" in line:
                    self.wfile.write(b"[1]")
                    return
                for _ in range(mib):
                    self.wfile.write(CHUNK)
            except OSError:
                pass  # the host stopped reading

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Big)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    ok = {"200": {"description": "ok"}}
    spec = {"openapi": "3.0.0", "info": {"title": "t"}, "paths": {
        p: {"get": {"operationId": p[1:], "responses": ok}} for p in ("/small", "/declared", "/undeclared")}}

    def rss():
        with open("/proc/self/status") as status:
            return next(int(l.split()[1]) << 10 for l in status if l.startswith("VmRSS"))

    peak = [0]
    def watch():
        while True:
            peak[0] = max(peak[0], rss())
            time.sleep(0.005)

    async def main():
        base = f"http://127.0.0.1:{server.server_address[1]}"
        async with CodeMode(openapi={"api": {"spec": spec, "base_url": base}}) as cm:
            warm = await cm.exec("text(String((await tools.api__small()).length))")
            before = rss()
            threading.Thread(target=watch, daemon=True).start()
            out = []
            for name in ("declared", "undeclared"):
                r = await cm.exec(f"try {{ await tools.api__{name}(); text('resolved') }} catch (e) {{ text(String(e)) }}",
                                  yield_time_ms=60000)
                out.append(r.items[0].text)
            time.sleep(0.05)
            print(json.dumps({"warm": warm.items[0].text, "out": out, "before": before, "peak": peak[0],
                              "after": rss()}))

    asyncio.run(main())
    """
)


@linux_only
@pytest.mark.slow
def test_a_huge_answer_does_not_grow_host_memory() -> None:
    child = subprocess.run(
        [sys.executable, "-c", _BIG_ANSWER_CHILD], capture_output=True, text=True, timeout=120, check=False
    )
    assert child.returncode == 0, child.stderr[-3000:]
    report = json.loads(child.stdout.strip().splitlines()[-1])
    assert report["warm"] == "1"
    declared, undeclared = report["out"]
    assert "/declared: the answer declares more than max_response_bytes (4194304 bytes)" in declared
    assert "/undeclared: the answer has more than max_response_bytes (4194304 bytes)" in undeclared
    mib = 1 << 20
    assert report["peak"] - report["before"] < 48 * mib, report  # a 450/600 MiB answer, a 4 MiB cap
    assert report["after"] - report["before"] < 32 * mib, report


def _closed_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
