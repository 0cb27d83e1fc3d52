"""Fuzzing: the pragma parser, helper arguments, tool arguments and results.

Whatever goes in, the outcome is a result or a string error: never a host exception, never a
loop error, never a hang.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from tests.hardening._support import Host, texts

from codemode import Limits, Tool
from codemode._source import SourceError, parse_exec_source

pytestmark = pytest.mark.slow  # property-based: each test runs a hundred examples

SETTINGS = settings(
    max_examples=150,
    deadline=None,
    # `healthy` checks the host once after all examples; each exec checks loop errors itself
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

# --- JSON values and JavaScript expressions ------------------------------------------------------

any_text = st.text(st.characters(codec=None, categories=None), max_size=20)  # lone surrogates, NUL...
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | any_text
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4),
    max_leaves=12,
)


def as_js(value: Any) -> Any:
    """`value` as JavaScript sees it: every number is a double (JSON text from V8 may spell a
    large double as an integer, which Python then reads as an exact int)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, list):
        return [as_js(v) for v in value]
    return {k: as_js(v) for k, v in value.items()}


def as_host(value: Any) -> Any:
    """`value` as the host gets it back from JavaScript: UTF-16 pairs joined, each lone surrogate
    U+FFFD (issue 19: no lone surrogate enters the host)."""
    if isinstance(value, str):
        return value.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    if isinstance(value, list):
        return [as_host(v) for v in value]
    if isinstance(value, dict):
        return {as_host(k): as_host(v) for k, v in value.items()}
    return value


def js_literal(value: Any) -> str:
    """`value` as a JavaScript expression (ASCII, so surrogates survive as escapes)."""
    return json.dumps(value, ensure_ascii=True)


def js_parsed(value: Any) -> str:
    """`value` as a JavaScript expression that builds exactly it (`{"__proto__": 1}` as an object
    literal would set the prototype; JSON.parse makes an own property)."""
    return f"JSON.parse({json.dumps(json.dumps(value, ensure_ascii=True))})"


js_only = st.sampled_from(
    [
        "undefined",
        "NaN",
        "-Infinity",
        "-0",
        "10n",
        "2n ** 80n",
        'Symbol("s")',
        "() => 1",
        "new Date(0)",
        "new Map([[1, 2]])",
        "new Set([1])",
        "new Uint8Array(3)",
        "/re/g",
        "Object.create(null)",
        "new Proxy({}, {})",
        'new Proxy({}, { get() { throw "trap" } })',
        '({ toJSON() { return 1n } })',
        '({ toJSON() { throw "tojson" } })',
        '({ get image_url() { throw "getter" } })',
        "globalThis",
        "tools",
        "new Error('e')",
        '"data:image/png;base64,AAAA"',
        '{ type: "image", data: "AAAA", mimeType: "image/png" }',
        '{ type: "audio", data: "AAAA", mimeType: "audio/wav" }',
        '{ content: [{ type: "text", text: "t" }, { type: "image", data: "AA" }] }',
        '{ image_url: "data:x", detail: "LOW" }',
        '{ audio_url: "data:audio/wav;base64,AA" }',
        "(() => { const c = {}; c.c = c; return c })()",
    ]
)


def js_expressions() -> st.SearchStrategy[str]:
    leaf = json_values.map(js_literal) | js_only
    return st.recursive(
        leaf,
        lambda inner: st.lists(inner, max_size=3).map(lambda xs: f"[{', '.join(xs)}]")
        | st.lists(st.tuples(any_text, inner), max_size=3).map(
            lambda kvs: "({" + ", ".join(f"{js_literal(k)}: {v}" for k, v in kvs) + "})"
        ),
        max_leaves=6,
    )


# --- the pragma parser (pure) -------------------------------------------------------------------


@settings(max_examples=500, deadline=None)
@given(st.text(st.characters(codec=None, categories=None)))
def test_pragma_parser_any_text(raw: str) -> None:
    try:
        request = parse_exec_source(raw)
    except SourceError as error:
        assert str(error)
    else:
        assert request.code in raw


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(["", " ", "\t", "\u3000"]),
    json_values | st.dictionaries(st.sampled_from(["yield_time_ms", "max_output_tokens", "x"]), json_values),
    st.sampled_from(["\n", "\r\n", "\n\n", ""]),
    any_text,
)
def test_pragma_parser_json_pragmas(indent: str, pragma: Any, newline: str, code: str) -> None:
    raw = f"{indent}// @exec: {json.dumps(pragma)}{newline}{code}"
    try:
        request = parse_exec_source(raw)
    except SourceError as error:
        assert str(error).startswith("exec ")
    else:
        for field in (request.yield_time_ms, request.max_output_tokens):
            assert field is None or (isinstance(field, int) and 0 <= field <= 2**53 - 1)


# --- the engine --------------------------------------------------------------------------------

received: list[Any] = []
to_return: list[Any] = [None]


@pytest.fixture(scope="module")
def host() -> Iterator[Host]:
    def echo(args: Any) -> Any:
        received.append(args)
        return args

    async def give(args: Any) -> Any:
        return to_return[0]

    def raw(text: str) -> str:
        received.append(text)
        return text

    host = Host(
        tools=[
            Tool("echo", "Return the arguments.", echo),
            Tool("give", "Return the prepared value.", give),
            Tool("raw", "Return the input.", raw, kind="freeform"),
        ],
        limits=Limits(heap_limit_bytes=64 * 1024 * 1024),
    )
    yield host
    host.close()


@pytest.fixture
def healthy(host: Host) -> Iterator[Host]:
    yield host
    host.assert_healthy()


HELPER_CALLS = [
    "text({v})",
    "notify({v})",
    "image({v})",
    'image("data:image/png;base64,AA", {v})',
    "audio({v})",
    "generatedImage({v})",
    'store("k", {v})',
    "store({v}, 1)",
    "load({v})",
    "forward_output({v})",
    "forward_output({v}, {v})",
    "clearTimeout({v})",
    "setTimeout(() => {{}}, {v})",
]


@SETTINGS
@given(call=st.sampled_from(HELPER_CALLS), value=js_expressions())
def test_helpers_take_anything(healthy: Host, call: str, value: str) -> None:
    source = f'try {{ {call.format(v=value)}; text("ok") }} catch (e) {{ text("threw " + typeof e) }}'
    result = healthy.exec(source, yield_time_ms=10_000)
    assert result.status == "completed", result.error
    outcome = texts(result)[-1]
    # helpers throw strings; a TypeError may only come from JavaScript itself (e.g. BigInt math)
    assert outcome in ("ok", "threw string", "threw object"), outcome
    if outcome == "threw object":
        assert "setTimeout" in call or "clearTimeout" in call  # ToNumber of a Symbol/BigInt


@SETTINGS
@given(call=st.sampled_from(HELPER_CALLS), value=js_expressions())
def test_helpers_uncaught_errors_are_script_errors(healthy: Host, call: str, value: str) -> None:
    result = healthy.exec(call.format(v=value), yield_time_ms=10_000)
    assert result.status in ("completed", "failed")
    if result.status == "failed":
        assert isinstance(result.error, str) and result.error


@SETTINGS
@given(value=st.dictionaries(any_text, json_values, max_size=5))
def test_tool_arguments_round_trip(healthy: Host, value: dict[str, Any]) -> None:
    received.clear()
    result = healthy.exec(f"text(JSON.stringify(await tools.echo({js_parsed(value)})))")
    assert result.status == "completed", result.error
    assert as_js(received) == as_js([as_host(value)])
    assert as_js(json.loads(texts(result)[0])) == as_js(as_host(value))


@SETTINGS
@given(value=json_values)
def test_tool_results_round_trip(healthy: Host, value: Any) -> None:
    to_return[0] = value
    result = healthy.exec("text(JSON.stringify(await tools.give({})))")
    assert result.status == "completed", result.error
    assert as_js(json.loads(texts(result)[0])) == as_js(value)


@SETTINGS
@given(value=any_text)
def test_freeform_input_round_trips(healthy: Host, value: str) -> None:
    received.clear()
    result = healthy.exec(f"text(JSON.stringify(await tools.raw({js_literal(value)})))")
    assert result.status == "completed", result.error
    assert received == [as_host(value)]
    assert json.loads(texts(result)[0]) == as_host(value)


@SETTINGS
@given(value=js_expressions())
def test_tool_arguments_of_any_kind(healthy: Host, value: str) -> None:
    source = f"try {{ await tools.echo({value}); text('ok') }} catch (e) {{ text('rejected ' + typeof e) }}"
    result = healthy.exec(source)
    assert result.status == "completed", result.error
    assert texts(result)[-1] in ("ok", "rejected string")


def non_json(depth: int) -> st.SearchStrategy[Any]:
    odd = st.sampled_from([object(), {1, 2}, b"bytes", frozenset(), 1j, range(3), Ellipsis])
    return odd | st.lists(odd, min_size=1, max_size=2) | st.dictionaries(st.text(max_size=3), odd, min_size=1)


@SETTINGS
@given(value=non_json(2))
def test_non_json_results_are_rejected_clearly(healthy: Host, value: Any) -> None:
    to_return[0] = value
    result = healthy.exec("try { await tools.give({}) ; text('ok') } catch (e) { text(e) }")
    assert result.status == "completed"
    assert texts(result)[0].startswith("tool `give` returned a value that cannot be sent to JavaScript as JSON: ")


@SETTINGS
@given(value=st.floats(allow_nan=True, allow_infinity=True))
def test_float_results_match_json_stringify(healthy: Host, value: float) -> None:
    to_return[0] = [value]
    result = healthy.exec("text(JSON.stringify(await tools.give({})))")
    [back] = json.loads(texts(result)[0])
    assert as_js(back) == (value if math.isfinite(value) else None)
