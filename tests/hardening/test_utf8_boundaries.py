"""Every boundary is UTF-8 safe (issue 19, point 1): arbitrary strings, lone surrogates included,
cross the model's input (exec source and pragma, wait arguments, a framework's tool arguments)
and everything a script can put out (text, notify, image/audio data URLs, stored values,
nested-call arguments and errors, approval arguments, script errors), and whatever the host
then holds or renders (each `to_model` API, the adapters' text, the CLI) encodes as UTF-8.

A lone surrogate becomes U+FFFD; a surrogate pair JavaScript joined stays one character.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator
from typing import Any, get_args

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from tests.hardening._support import Host, texts
from tests.hardening.test_engine_processes import finish_child_async, start_child

from codemode import ExecResult, ImageItem, TextItem, Tool, to_model
from codemode._engine.base import FinishedEvent, ToolCallEvent
from codemode._output import model_items
from codemode._protocol.calls import PendingApproval
from codemode._protocol.types import AudioItem
from codemode._session.script_text import safe_event
from codemode.adapters._arguments import checked_arguments
from codemode.adapters._text import text_output
from codemode.cli import _print, render_items  # pyright: ignore[reportPrivateUsage]
from codemode.errors import ToolError
from codemode.formats import Api
from codemode.formats._exec_args import exec_parameters

SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

SURROGATES = ["\ud800", "\udbff", "\udc00", "\udfff", "\ud83d", "\ude00"]
any_text = st.text(st.characters(codec=None, categories=None), max_size=30)  # lone surrogates, NUL...
surrogate_heavy = st.text(st.sampled_from([*SURROGATES, "a", "é", "😀", "\x00", '"', "\\", "\n"]), max_size=16)
strings = any_text | surrogate_heavy


def as_host(text: str) -> str:
    """`text` as the host gets it back from JavaScript: UTF-16 pairs joined, each lone surrogate
    U+FFFD (what a UTF-16 decoder that replaces makes of it)."""
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def as_source(text: str) -> str:
    """`text` as it stands in a source the model wrote: each surrogate code point U+FFFD."""
    return "".join("\ufffd" if "\ud800" <= char <= "\udfff" else char for char in text)


def js(text: str) -> str:
    """A JavaScript string literal holding exactly `text` (escapes: surrogates reach V8 intact)."""
    return json.dumps(text, ensure_ascii=True)


def raw_js(text: str) -> str:
    """A JavaScript string literal with `text` in it raw, lone surrogates too (only what would
    end or break the literal is escaped)."""
    escaped = {
        "\\": "\\\\",
        '"': '\\"',
        "\n": "\\n",
        "\r": "\\r",
        "\u2028": "\\u2028",
        "\u2029": "\\u2029",
        "\x00": "\\x00",
    }
    return '"' + "".join(escaped.get(char, char) for char in text) + '"'


def encodes(value: Any) -> None:
    """`value` as a JSON wire (an SDK, MCP, HTTP) sends it: `ensure_ascii=False`, then UTF-8."""
    json.dumps(value, ensure_ascii=False).encode("utf-8")


def assert_renders(result: ExecResult) -> None:
    """What every API, adapter and the CLI would send for `result` encodes as UTF-8."""
    for api in get_args(Api):
        encodes(to_model(result, api))
    text_output(result, "text only").encode("utf-8")
    render_items(model_items(result)).encode("utf-8")


def assert_session_made_safe(result: ExecResult) -> None:
    """A session's result renders, and what the host reads in it directly encodes too."""
    assert_renders(result)
    encodes([result.error, *(item.text for item in result.items if isinstance(item, TextItem))])
    encodes([(record.tool_name, record.arguments, record.error) for record in result.tool_calls])
    encodes([(pending.describe(), pending.arguments) for pending in result.pending_approvals])


received: list[Any] = []
notified: list[str] = []


@pytest.fixture(scope="module")
def host() -> Iterator[Host]:
    def echo(args: Any) -> Any:
        received.append(args)
        return args

    def fail(args: Any) -> Any:
        raise ToolError(f"bad {args['v']}")

    def guarded(args: Any) -> Any:
        return args

    host = Host(
        tools=[
            Tool("echo", "Return the arguments.", echo),
            Tool("fail", "Fail, quoting `v`.", fail),
            Tool("guarded", "Needs approval.", guarded, requires_approval=True),
        ],
        on_notify=lambda _cell_id, text: notified.append(text),
    )
    yield host
    host.close()


@pytest.fixture
def healthy(host: Host) -> Iterator[Host]:
    yield host
    host.assert_healthy()


# --- the model's input ----------------------------------------------------------------------------


@SETTINGS
@given(value=strings)
def test_a_raw_lone_surrogate_in_the_source_reaches_the_script_as_u_fffd(healthy: Host, value: str) -> None:
    result = healthy.exec(f"text({raw_js(value)})")
    assert_session_made_safe(result)
    assert (result.status, texts(result)) == ("completed", [as_source(value)])


@SETTINGS
@given(value=strings)
def test_any_text_in_the_pragma_is_rejected_with_an_encodable_error(healthy: Host, value: str) -> None:
    for pragma in (f'{{"x": "{value}"}}', json.dumps({"x" + value: 1}), json.dumps({"yield_time_ms": value})):
        result = healthy.exec(f"// @exec: {pragma}\ntext(1)")
        assert result.status == "rejected", result
        assert_session_made_safe(result)
        assert result.error is not None
        result.error.encode("utf-8")


@SETTINGS
@given(value=strings)
def test_wait_arguments_are_quoted_back_encodable(healthy: Host, value: str) -> None:
    result = healthy.call(healthy.cm.wait(value))
    assert (result.status, result.error_kind) == ("failed", "not_found")
    assert result.error == f"exec cell {as_source(value)} not found"
    assert_session_made_safe(result)


@SETTINGS
@given(value=strings)
def test_a_frameworks_exec_arguments_are_made_safe(value: str) -> None:
    schema = exec_parameters()
    from_text = checked_arguments("exec", json.dumps({"code": value}), schema)  # JSON text: escapes
    from_dict = checked_arguments("exec", {"code": value}, schema)  # a framework's parsed dict
    assert from_text == {"code": as_host(value)}  # JSON joins an escaped pair, like JavaScript
    assert from_dict == {"code": as_source(value)}
    encodes([from_text, from_dict])


def test_a_frameworks_invalid_arguments_give_an_encodable_error() -> None:
    with pytest.raises(ToolError) as caught:
        checked_arguments("exec", {"code": 1, "\ud800": "\udc00"}, {**exec_parameters(), "additionalProperties": False})
    str(caught.value).encode("utf-8")


# --- what a script puts out -----------------------------------------------------------------------


@SETTINGS
@given(value=strings)
def test_text_notify_media_and_stored_values(healthy: Host, value: str) -> None:
    notified.clear()
    source = (
        f"const v = {js(value)};"
        'text(v); notify("n" + v);'
        'image("data:image/png;base64,AAAA" + v); audio("data:audio/wav;base64,AAAA" + v);'
        'store("k" + v, {[v]: [v]});'
    )
    result = healthy.exec(source)
    assert_session_made_safe(result)
    seen = as_host(value)
    assert result.status == "completed", result.error
    assert result.items == (
        TextItem(seen),
        ImageItem("data:image/png;base64,AAAA" + seen),
        AudioItem("data:audio/wav;base64,AAAA" + seen),
    )
    assert notified == ["n" + seen]
    assert healthy.cm.notifications[-1].text == "n" + seen
    stored = healthy.cm.stored_values
    assert stored["k" + seen] == {seen: [seen]}
    encodes(stored)
    healthy.cm.delete_stored_value("k" + seen)


@SETTINGS
@given(value=strings)
def test_nested_call_arguments_and_errors(healthy: Host, value: str) -> None:
    received.clear()
    source = (
        f"const v = {js(value)};"
        "text(JSON.stringify(await tools.echo({[v]: v, v})));"
        "try { await tools.fail({v}) } catch (e) { text(String(e)) }"
    )
    result = healthy.exec(source)
    assert_session_made_safe(result)
    assert result.status == "completed", result.error
    seen = as_host(value)
    assert received == [{seen: seen, "v": seen}]
    stringified, error = texts(result)
    assert (json.loads(stringified), error) == ({seen: seen, "v": seen}, f"bad {seen}")
    echo, fail = result.tool_calls
    assert json.loads(echo.arguments) == {seen: seen, "v": seen}
    assert (fail.outcome, fail.error) == ("error", f"bad {seen}")


@SETTINGS
@given(value=strings)
def test_approval_arguments(healthy: Host, value: str) -> None:
    result = healthy.call(healthy.cm.exec(f"await tools.guarded({{v: {js(value)}}})", yield_time_ms=10_000))
    try:
        assert result.status == "running", result
        assert_session_made_safe(result)
        (pending,) = result.pending_approvals
        assert pending.arguments == {"v": as_host(value)}
    finally:
        assert result.cell_id is not None
        healthy.call(healthy.cm.wait(result.cell_id, terminate=True))


@SETTINGS
@given(value=strings)
def test_script_errors(healthy: Host, value: str) -> None:
    result = healthy.exec(f'throw new Error("e" + {js(value)})')
    assert_session_made_safe(result)
    assert result.status == "failed"
    assert result.error is not None
    assert result.error.startswith(f"Error: e{as_host(value)}\n")


# --- the engine events and the renderers, directly ------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | strings,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(strings, inner, max_size=3),
    max_leaves=10,
)


def as_host_data(value: Any) -> Any:
    if isinstance(value, str):
        return as_host(value)
    if isinstance(value, list):
        return [as_host_data(item) for item in value]
    if isinstance(value, dict):
        return {as_host(key): as_host_data(item) for key, item in value.items()}
    return value


@settings(max_examples=300, deadline=None)
@given(value=json_values, key=strings, name=strings)
def test_json_texts_from_the_engine_decode_to_safe_values(value: Any, key: str, name: str) -> None:
    """Arguments and stored values arrive as `JSON.stringify` text: lone surrogates as escapes."""
    stringified = json.dumps(value, ensure_ascii=True, separators=(",", ":"))
    call = safe_event(ToolCallEvent(1, name, stringified))
    finished = safe_event(FinishedEvent(None, {key: stringified}))
    assert isinstance(call, ToolCallEvent) and isinstance(finished, FinishedEvent)
    expected = as_host_data(json.loads(stringified))  # JSON joins escaped pairs, as JavaScript does
    assert call.arguments_json is not None
    assert json.loads(call.arguments_json) == expected
    assert call.tool_name == as_source(name)
    assert {k: json.loads(v) for k, v in finished.stored_writes.items()} == {as_source(key): expected}
    encodes([call.arguments_json, call.tool_name, dict(finished.stored_writes)])


@settings(max_examples=200, deadline=None)
@given(value=json_values)
def test_events_without_lone_surrogates_pass_unchanged(value: Any) -> None:
    """The common case costs no copy: the very event (and JSON text) goes on."""
    event = ToolCallEvent(1, "echo", json.dumps(as_host_data(value), ensure_ascii=False))
    assert safe_event(event) is event
    escaped = ToolCallEvent(1, "echo", json.dumps(as_host_data(value), ensure_ascii=True))  # pairs escaped too
    assert safe_event(escaped) is escaped


@settings(max_examples=300, deadline=None)
@given(text=strings, error=strings, key=strings, status=st.sampled_from(["completed", "failed", "running", "rejected"]))
def test_every_rendering_of_any_result_encodes(text: str, error: str, key: str, status: Any) -> None:
    result = ExecResult(
        status,
        None if status == "rejected" else "1",
        items=(
            TextItem(text),
            ImageItem("data:image/png;base64,AA" + text),
            AudioItem("data:audio/wav;base64,AA" + text),
        ),
        error=error,
        max_output_tokens=40,
        pending_approvals=(PendingApproval("1", "2", "guarded", {key: text}),) if status == "running" else (),
    )
    assert_renders(result)
    for item in model_items(result):
        for field in ("text", "image_url", "audio_url"):
            assert not any("\ud800" <= char <= "\udfff" for char in getattr(item, field, ""))
    stdout = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict")
    with contextlib.redirect_stdout(stdout):  # the CLI's printing, to a strict UTF-8 terminal
        _print(result, as_json=False)
        _print(result, as_json=True)
        stdout.flush()


# --- a lone surrogate in a source does not end another session's cell -------------------------------

SHARED_WORKER_CHILD = """
async def main():
    engine = ProcessEngine(workers=1)
    async with CodeMode(engine=engine) as busy, CodeMode(engine=engine) as other:
        running = asyncio.ensure_future(busy.exec(
            'const until = Date.now() + 1500; while (Date.now() < until) {} text("busy done")', yield_time_ms=60000))
        await asyncio.sleep(0.5)  # the busy cell runs on the one worker now
        surrogate = await other.exec('text("x\\ud800y")')
        done = await running
        after = await other.exec('text("after")')
        report(busy=[done.status, texts(done), done.error], other=[surrogate.status, texts(surrogate), surrogate.error],
               after=[after.status, texts(after)])
    await engine.aclose()

asyncio.run(main())
"""


@pytest.mark.slow
async def test_a_lone_surrogate_in_a_source_does_not_end_a_worker_running_another_sessions_cell() -> None:
    child = start_child(SHARED_WORKER_CHILD)  # its exec source holds a raw U+D800 (a Python escape there)
    report = await finish_child_async(child, timeout=120)
    assert report == {
        "busy": ["completed", ["busy done"], None],
        "other": ["completed", ["x\ufffdy"], None],
        "after": ["completed", ["after"]],
    }
