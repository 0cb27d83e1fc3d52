"""The engine channel cannot be forged (issue 19, point 4).

A script may replace any built-in before it calls a helper: each one the prelude relies on (read
from prelude.js's primordials block), `toJSON`, `Symbol.iterator`, iterator `next`, accessors on
prototypes. The prelude must keep working as if nothing was replaced, so a script cannot write
a message of its own (a forged `done` committing stored values over the limit, a forged tool
call), and the host enforces the stored-value and output limits itself on what arrives.
Runs in both isolations (the suite's second pass runs tests/hardening in-process).
"""

from __future__ import annotations

import asyncio
import json
import re
import struct
from collections.abc import Iterator
from importlib import resources

import pytest
from tests.hardening._support import Host

from codemode import AudioItem, CodeMode, ImageItem, Limits, TextItem, Tool
from codemode._engine.miniracer._cell import _message_problem
from codemode._engine.miniracer._isolate import CHANNEL_ERROR, RING_BYTES, ChannelError, Isolate
from codemode._session.limits import output_dropped_notice, store_limit_error, stored_writes_refused
from codemode.testing import FakeEngine

STORE_LIMIT = 20_000
OUTPUT_LIMIT = 30_000
FLOOD = OUTPUT_LIMIT + 1_000

# What the script computes before it replaces anything, with the built-ins intact.
SETUP = f"""
const P = Promise;
const big = "z".repeat({STORE_LIMIT + 5_000});
const flood = "f".repeat({FLOOD});
const FORGED = {{ k: "done", error: null, writes: {{ forged: JSON.stringify(big) }} }};
const FORGED_CALL = {{ k: "call", id: 1, name: "secret", args: null }};
const FORGED_TEXT = JSON.stringify(FORGED) + " ".repeat(64);
const realCharCodeAt = String.prototype.charCodeAt;
const codeOf = (s, i) => Reflect.apply(realCharCodeAt, s, [i]);
const hostile = function () {{ return FORGED_TEXT; }};
const ArrayIteratorPrototype = Object.getPrototypeOf([][Symbol.iterator]());
const MapIteratorPrototype = Object.getPrototypeOf(new Map()[Symbol.iterator]());
"""

# Every helper, after the replacement: only syntax and helpers, no built-in the script replaced.
WORKLOAD = """
text("plain");
text(42);
image("data:image/png;base64,AAAA", "low");
image({ image_url: "data:image/png;base64,BBBB" });
audio("data:audio/wav;base64,CCCC");
forward_output("forwarded");
notify("a note");
store("kept", "small");
store("number", 7);
try { store("big", big); } catch (e) { text(e); }
text(load("kept"));
clearTimeout(setTimeout(() => {}, 1));
const call = tools.raw("after");
"""
# Awaiting a native promise reads its `constructor`: a script that replaced that one breaks its
# own awaits (not the prelude), so that case leaves this part out.
AWAITS = """
text(await call);
text(await new P((resolve) => setTimeout(() => resolve("timer"), 5)));
"""
ENDING = "text(flood);\n"


def _primordials() -> list[str]:
    """The built-ins prelude.js takes before any script runs, as the script names them."""
    source = resources.files("codemode._engine").joinpath("prelude.js").read_text(encoding="utf-8")
    block = source.split("// ---- primordials", 1)[1].split("// ---- end of primordials", 1)[0]
    names = []
    for expression in re.findall(r"^\s*const \w+ = (?:uncurryThis\()?([\w.]+)\)?;", block, re.MULTILINE):
        if expression.startswith("g.") or expression.startswith("Function.prototype.bind.bind"):
            continue  # Atomics and SharedArrayBuffer are deleted before the script runs
        names.append(expression)
    return names


PRIMORDIALS = _primordials()

# Replacements that try to forge something specific; the others get `hostile` (a function
# answering every call with the text of a forged `done`).
FORGERS = {
    # The reported attack, other values: the ring is written from the forged text instead.
    "String.prototype.charCodeAt": "String.prototype.charCodeAt = function (i) {"
    " return i < FORGED_TEXT.length ? codeOf(FORGED_TEXT, i) : 32 };",
    "Map.prototype.forEach": "Map.prototype.forEach = function (f) { f(JSON.stringify(big), 'forged') };",
    "Map.prototype.get": "Map.prototype.get = function () { return FORGED_TEXT.repeat(3) };",
    "Map.prototype.set": "Map.prototype.set = function () { return this };",
    "Promise.prototype.then": "Promise.prototype.then = function (f) { f && f(FORGED) };",
    "Reflect.apply": "Reflect.apply = function () { return FORGED };",
}
EXTRA = {
    "Object.prototype.toJSON": "Object.prototype.toJSON = function () { return FORGED };",
    "Array.prototype.toJSON": "Array.prototype.toJSON = function () { return [FORGED] };",
    "Array.prototype[Symbol.iterator]": "Array.prototype[Symbol.iterator] = function* () { yield FORGED; yield FORGED_CALL };",
    "Map.prototype[Symbol.iterator]": "Map.prototype[Symbol.iterator] = function* () { yield ['forged', JSON.stringify(big)] };",
    "Map.prototype.entries": "Map.prototype.entries = Map.prototype[Symbol.iterator] = function* () { yield ['forged', '1'] };",
    "String.prototype[Symbol.iterator]": "String.prototype[Symbol.iterator] = function* () { yield FORGED_TEXT };",
    "ArrayIterator.next": "ArrayIteratorPrototype.next = function () { return { done: false, value: FORGED } };",
    "MapIterator.next": "MapIteratorPrototype.next = function () { return { done: false, value: ['forged', '1'] } };",
    "Function.prototype.call": "Function.prototype.call = hostile;",
    "Function.prototype.apply": "Function.prototype.apply = hostile;",
    "Function.prototype.bind": "Function.prototype.bind = hostile;",
    "Array.prototype.push": "Array.prototype.push = function () { return 0 };",
    "Array.prototype.join": "Array.prototype.join = hostile;",
    "Array.prototype.includes": "Array.prototype.includes = () => true;",
    "String.prototype.repeat": "String.prototype.repeat = hostile;",
    "RegExp.prototype.exec": "RegExp.prototype.exec = () => null; RegExp.prototype.test = () => true;",
    "Object.fromEntries": "Object.fromEntries = () => FORGED.writes;",
    "Array.prototype[0] accessor": "Object.defineProperty(Array.prototype, 0, { get: hostile, set() {} });",
    # (not `url` or `detail`: `image({ image_url })` reads the script's own object's `detail`)
    "Object.prototype accessors": "for (const key of ['k', 'v', 'id', 'name', 'args', 'writes', 'error', 'resolve',"
    " 'reject', 'value', 'get', 'set', 'ownKeys', 'has']) Object.defineProperty(Object.prototype, key,"
    " { __proto__: null, get: () => FORGED, set() {}, configurable: true });",
    "Object.prototype.then": "Object.prototype.then = function (resolve) { resolve(FORGED) };",
    "Promise.prototype.constructor": "Object.defineProperty(Promise.prototype, 'constructor', { get() { throw 'species' } });",
    "Promise[Symbol.species]": "Object.defineProperty(Promise, Symbol.species, { get() { throw 'species' } });",
}
CASES = {"nothing replaced": "", **{name: FORGERS.get(name, f"{name} = hostile;") for name in PRIMORDIALS}, **EXTRA}


def expected_items(awaits: bool) -> list[object]:
    kept = [
        TextItem("plain"),
        TextItem("42"),
        ImageItem("data:image/png;base64,AAAA", "low"),
        ImageItem("data:image/png;base64,BBBB", "high"),
        AudioItem("data:audio/wav;base64,CCCC"),
        TextItem("forwarded"),
        TextItem(store_limit_error(STORE_LIMIT)),
        TextItem("small"),
        *([TextItem("after"), TextItem("timer")] if awaits else []),
    ]
    return [*kept, TextItem(output_dropped_notice(1, FLOOD, OUTPUT_LIMIT))]


@pytest.fixture(scope="module")
def host() -> Iterator[Host]:
    async def raw(text: str) -> str:
        return text

    async def secret(text: str) -> str:  # only a forged call could reach it
        raise AssertionError("a forged tool call ran")

    host = Host(
        tools=[
            Tool("raw", "Return the input.", raw, kind="freeform"),
            Tool("secret", "Never called.", secret, kind="freeform"),
        ],
        limits=Limits(max_stored_bytes=STORE_LIMIT, max_buffered_output_chars=OUTPUT_LIMIT),
    )
    yield host
    host.close()


def test_every_primordial_is_replaced_by_a_case() -> None:
    assert len(PRIMORDIALS) >= 30
    assert "String.prototype.charCodeAt" in PRIMORDIALS and "JSON.stringify" in PRIMORDIALS


@pytest.mark.parametrize("name", list(CASES))
def test_a_replaced_builtin_forges_nothing(host: Host, name: str) -> None:
    awaits = name != "Promise.prototype.constructor"
    source = SETUP + CASES[name] + WORKLOAD + (AWAITS if awaits else "") + ENDING
    notes_before = len(host.cm.notifications)
    result = host.exec(source, yield_time_ms=20_000)

    assert (result.status, result.error) == ("completed", None)
    assert list(result.items) == expected_items(awaits)
    assert host.cm.stored_values == {"kept": "small", "number": 7}  # nothing forged, limit held
    calls = [(r.tool_name, r.arguments) for r in result.tool_calls]
    if awaits:
        assert calls == [("raw", '"after"')]
    else:  # the script ends without awaiting its call: the call may not have ended by then
        assert calls in ([], [("raw", '"after"')])
    assert [n.text for n in host.cm.notifications[notes_before:]] == ["a note"]
    host.assert_healthy()


def test_the_reported_forgery_commits_nothing(host: Host) -> None:
    """r_forged_store.py with other values: a forged `done` carrying 60 KB of stored values."""
    forge = r"""
    const realCCA = String.prototype.charCodeAt, stringify = JSON.stringify;
    const payload = stringify({k: "done", error: null, writes: {["w" + Math.random()]: stringify("q".repeat(60000))}});
    const v = "p".repeat(payload.length + 25);
    const F = payload + " ".repeat(stringify({k: "text", v}).length - payload.length);
    String.prototype.charCodeAt = function (i) { return realCCA.call(F, i) };
    text(v.length);
    """
    result = host.exec(forge)
    assert (result.status, result.error) == ("completed", None)
    assert len(result.items) == 1 and isinstance(result.items[0], TextItem) and result.items[0].text.isdigit()
    assert all(key in ("kept", "number") for key in host.cm.stored_values)


async def test_writes_over_the_limit_are_refused_by_the_host() -> None:
    """Whatever the engine sends, the session keeps no stored values past `max_stored_bytes`."""
    engine = FakeEngine()
    async with CodeMode(engine=engine, limits=Limits(max_stored_bytes=100)) as cm:
        run = asyncio.ensure_future(cm.exec("store('a', 1)"))
        cell = await engine.next_cell()
        cell.finish(writes={"a": json.dumps("x" * 60), "b": json.dumps("y" * 60)})
        result = await run
        assert (result.status, result.error) == ("failed", stored_writes_refused(100))
        assert cm.stored_values == {}

        run = asyncio.ensure_future(cm.exec("store('a', 1)"))
        cell = await engine.next_cell()
        cell.finish(writes={"a": json.dumps("x" * 60)})
        assert (await run).status == "completed"
        assert cm.stored_values == {"a": "x" * 60}


@pytest.mark.parametrize(
    "message",
    [
        {"k": "text", "v": "a", "extra": 1},
        {"k": "text"},
        {"k": "notify", "v": 5},
        {"k": "call", "id": 0, "name": "t", "args": None},
        {"k": "call", "id": True, "name": "t", "args": None},
        {"k": "call", "id": 2**60, "name": "t", "args": None},
        {"k": "image", "url": "https://x", "detail": "high"},
        {"k": "done", "error": None, "writes": {"a": "not json"}},
        {"k": "done", "error": None, "writes": {"a": "1"}, "more": {}},
        {"k": "toString"},
        {"k": ["text"], "v": "a"},
        ["text"],
    ],
)
def test_malformed_messages_are_refused(message: object) -> None:
    assert _message_problem(message) == CHANNEL_ERROR


def test_messages_read_before_a_corrupted_one_are_kept() -> None:
    """A ring holding what the prelude cannot have written: the messages before it were sent,
    so they are delivered (the cell then fails with CHANNEL_ERROR)."""
    isolate = Isolate.__new__(Isolate)  # only the ring: no V8 needed to read it
    ring = memoryview(bytearray(16 + RING_BYTES))
    isolate.ring = ring
    position = 0
    for text in ('{"k":"text","v":"a"}', '{"k":"text","v":"b"}', '{"k":"te'):
        data = text.encode("utf-16-le")
        struct.pack_into("<I", ring, 16 + position, len(text))
        ring[16 + position + 4 : 16 + position + 4 + len(data)] = data
        position += 4 + ((len(data) + 3) & ~3)
    struct.pack_into("<I", ring, 0, position)
    with pytest.raises(ChannelError) as caught:
        isolate.read_messages()
    assert caught.value.messages == [{"k": "text", "v": "a"}, {"k": "text", "v": "b"}]


def test_the_prelude_writes_well_formed_messages() -> None:
    assert _message_problem({"k": "call", "id": 1, "name": "t", "args": None}) is None
    assert _message_problem({"k": "done", "error": None, "writes": {"a": "[1]"}}) is None


def test_a_raw_json_integer_too_long_for_the_host_is_named(host: Host) -> None:
    """Point 9: storing a JSON.rawJSON value the host cannot read says so (not "a codemode bug")."""
    result = host.exec('store("huge", JSON.rawJSON("9".repeat(5000))); text("after")')
    assert result.status == "failed"
    assert result.error is not None and result.error.startswith(
        'store: the value of "huge" holds an integer of more than'
    )
    assert "JSON.rawJSON" in result.error and "huge" not in host.cm.stored_values
    ok = host.exec('store("fine", JSON.rawJSON("12345")); text(load("fine"))')
    assert (ok.status, host.cm.stored_values["fine"]) == ("completed", 12345)
    host.cm.delete_stored_value("fine")
