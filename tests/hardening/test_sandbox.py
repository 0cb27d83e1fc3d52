"""Escape attempts: model code is untrusted. Each case pins what the script gets; none may hurt the host.

After every case the host must have recorded no loop errors and still run a fresh cell, and what
the model would receive must render in every API format (see `Host`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from tests.hardening._support import Host, texts

from codemode import Limits, Tool

ALLOWED_GLOBALS = set(
    """AggregateError ALL_TOOLS Array ArrayBuffer AsyncDisposableStack BigInt BigInt64Array BigUint64Array
    Boolean clearTimeout DataView Date DisposableStack Error EvalError FinalizationRegistry Float16Array
    Float32Array Float64Array Function Infinity Int16Array Int32Array Int8Array Intl Iterator JSON Map Math
    NaN Number Object Promise Proxy RangeError ReferenceError Reflect RegExp Set String SuppressedError
    Symbol SyntaxError Temporal TypeError URIError Uint16Array Uint32Array Uint8Array Uint8ClampedArray
    WeakMap WeakRef WeakSet audio decodeURI decodeURIComponent encodeURI encodeURIComponent escape exit
    eval generatedImage globalThis image isFinite isNaN load notify parseFloat parseInt setTimeout store
    text tools undefined unescape yield_control forward_output""".split()
)


@dataclass(frozen=True)
class Case:
    """One attempt: the source, and the outcome the script must get."""

    id: str
    source: str
    status: str = "completed"
    texts: list[str] | None = None
    error_has: str | None = None
    slow: bool = False  # takes seconds (marked `slow`, left out of `make test-quick`)


CASES = [
    # --- no ambient authority ------------------------------------------------------------------
    Case("process", "text(typeof process)", texts=["undefined"]),
    Case("require", 'require("fs")', "failed", error_has="ReferenceError: require is not defined"),
    Case("fetch", 'await fetch("http://127.0.0.1/")', "failed", error_has="ReferenceError: fetch is not defined"),
    Case("dynamic-import", 'await import("fs")', "failed", error_has="Unsupported import in exec: fs"),
    Case("computed-import", 'const m = "node:" + "fs"; await import(m)', "failed", error_has="Unsupported import in exec: node:fs"),
    Case("static-import", 'import fs from "fs";\ntext(1)', "failed", error_has="Unsupported import in exec: fs"),
    Case("webassembly", "text(typeof WebAssembly)", texts=["undefined"]),
    Case("shared-memory", "text(typeof SharedArrayBuffer + typeof Atomics)", texts=["undefinedundefined"]),
    Case("console", "text(typeof console)", texts=["undefined"]),
    Case("function-this", 'const g = Function("return this")(); text(g === globalThis, typeof g.process)', texts=["true"]),
    Case(
        "constructor-chain",
        'text(({}).constructor.constructor("return typeof require + typeof process")())',
        texts=["undefinedundefined"],
    ),
    Case(
        "async-function-constructor",
        'const AF = (async () => {}).constructor; text(await AF("return typeof fetch")())',
        texts=["undefined"],
    ),
    Case("indirect-eval", 'text((0, eval)("typeof process + typeof __codemode_ping__"))', texts=["undefinedundefined"]),
    Case(
        "globals-allow-list",
        "text(JSON.stringify(Object.getOwnPropertyNames(globalThis)))",
    ),
    Case("string-timer", 'setTimeout("text(1)", 1)', "failed", error_has="setTimeout expects a function callback"),
    Case(
        "callsite-api",  # V8's structured stack traces must not hand out prelude functions or receivers
        "Error.prepareStackTrace = (e, s) => [...new Set(s.map((c) => typeof c.getFunction() + typeof c.getThis()))].join();"
        "try { image(5) } catch (e) {} text(new Error().stack)",
        texts=["undefinedundefined"],
    ),
    Case("prepare-stack-trace-throws", 'Error.prepareStackTrace = () => { throw 1 }; throw new Error("x")', "failed", error_has="Error: x"),
    Case("prepare-stack-trace-bigint", 'Error.prepareStackTrace = () => 10n; throw new Error("x")', "failed", error_has="Error: x"),
    # --- the host hook and the wrapper -------------------------------------------------------------
    Case("host-hook-unnamed", "text(typeof __codemode_host__)", texts=["undefined"]),
    Case(
        "host-hook-not-a-global",
        'text(Object.getOwnPropertyNames(globalThis).filter((n) => n.startsWith("__codemode")).length)',
        texts=["0"],
    ),
    Case("host-hook-not-in-eval-scope", 'text(eval("typeof __codemode_host__"))', texts=["undefined"]),
    Case(
        "host-hook-shadowed-global",
        'Object.defineProperty(globalThis, "__codemode_host__", { value: 1 }); text(JSON.stringify(await tools.echo({ a: 1 })))',
        texts=['{"a":1}'],
    ),
    Case(
        "ring-unreachable-from-helpers",  # no helper leaks the SharedArrayBuffer behind the channel
        "text([text, image, store, tools.echo].some((f) => String(f).includes('SharedArrayBuffer')))",
        texts=["false"],
    ),
    Case("wrapper-breakout", '}); text("outside"); (function () {', texts=["outside"]),
    Case("wrapper-breakout-bigint", "}); (x => 10n)(function () {", texts=[]),  # a BigInt eval result must not hang
    # --- prototypes and built-ins the prelude uses ----------------------------------------------
    Case("json-replaced", 'JSON.stringify = () => "garbage"; JSON.parse = () => 1; store("k", {a: 1}); text(load("k").a)', texts=["1"]),
    # (the prelude keeps its own copies of them: tests/hardening/test_forgery.py covers each one)
    Case("object-tojson", 'Object.prototype.toJSON = function () { return "x" }; text("a")', texts=["a"]),
    Case("string-methods", 'String.prototype.charCodeAt = () => 0; text("abc")', texts=["abc"]),
    Case(
        "toctou-getter",  # a getter that answers the checks with a string, then hands over an object
        'let n = 0; image({ get image_url() { n++; return n < 3 ? "data:image/png;base64,AA" :'
        '{ indexOf: () => 4, slice: () => ({ toLowerCase: () => "data" }) } } }); text(n)',
        texts=["image", "1"],  # read once: the image is the string it checked
    ),
    Case("promise-then-replaced", 'Promise.prototype.then = function () {}; text("x")', texts=["x"]),
    Case(
        "array-includes-and-lowercase",
        'Array.prototype.includes = () => true; String.prototype.toLowerCase = () => "high"; image("data:image/png;base64,AA", "ZZ")',
        "failed",
        error_has="image detail must be one of: auto, low, high, original",
    ),
    # --- values that cross to Python: getters, proxies, toJSON -----------------------------------
    Case(
        "getter-argument",
        'text(JSON.stringify(await tools.echo({ get x() { text("getter ran"); return 1 } })))',
        texts=["getter ran", '{"x":1}'],
    ),
    Case(
        "proxy-argument",
        "const p = new Proxy({}, { ownKeys: () => ['a'], getOwnPropertyDescriptor: () => ({ value: 1, enumerable: true,"
        " configurable: true }), get: () => 2 }); text(JSON.stringify(await tools.echo(p)))",
        texts=['{"a":2}'],
    ),
    Case("proxy-trap-throws", 'text(new Proxy({}, { get() { throw "trap" } }))', "failed", error_has="trap"),
    Case("proxy-to-image", 'image(new Proxy({}, { get() { throw "image trap" } }))', "failed", error_has="image trap"),
    Case("proxy-to-store", 'store("p", new Proxy([], { get: (t, k) => k === "length" ? 2 : 7 })); text(JSON.stringify(load("p")))', texts=["[7,7]"]),
    Case("revoked-proxy", 'const { proxy, revoke } = Proxy.revocable({}, {}); revoke(); notify(proxy)', "failed", error_has="TypeError"),
    Case("tojson-to-string-args", 'await tools.echo({ toJSON() { return "s" } })', "failed", error_has="expects a JSON object for arguments"),
    Case("tojson-store", 'store("t", { toJSON() { return { a: 1 } } }); text(JSON.stringify(load("t")))', texts=['{"a":1}']),
    Case("tojson-throws", 'text({ toJSON() { throw new Error("nope") } })', "failed", error_has="nope"),
    Case("tojson-bigint", "text({ toJSON() { return 10n } })", "failed", error_has="BigInt"),
    Case("forward-output-proxy", 'forward_output(new Proxy({}, { ownKeys() { throw "keys" } }))', "failed", error_has="forward_output expects"),
    # --- BigInt and Symbol everywhere a value crosses ----------------------------------------------
    Case("bigint-text-notify", 'text(10n); notify(2n ** 70n); text(2n ** 64n)', texts=["10", "18446744073709551616"]),
    Case("bigint-store", 'store("b", 10n)', "failed", error_has="Do not know how to serialize a BigInt"),
    Case("bigint-nested-store", 'store("b", { n: [1n] })', "failed", error_has="BigInt"),
    Case("bigint-tool-args", "await tools.echo({ n: 1n })", "failed", error_has="BigInt"),
    Case("bigint-freeform-args", "await tools.raw(1n)", "failed", error_has="BigInt"),
    Case("bigint-image", "image(10n)", "failed", error_has="image expects a non-empty image URL string"),
    Case("bigint-image-detail", 'image("data:image/png;base64,AA", 1n)', "failed", error_has="image detail must be a string"),
    Case("bigint-audio", "audio(1n)", "failed", error_has="audio expects"),
    Case("bigint-thrown", "throw 10n", "failed", error_has="10"),
    Case("bigint-exit", 'text("a"); exit(10n)', texts=["a"]),
    Case("bigint-timer", "setTimeout(() => {}, 10n)", "failed", error_has="BigInt"),
    Case("bigint-tojson", 'BigInt.prototype.toJSON = function () { return this.toString() }; store("b", 10n);'
         "text(JSON.stringify([load(\"b\"), await tools.echo({ n: 5n })]))", texts=['["10",{"n":"5"}]']),
    Case("symbol-text-notify", 'text(Symbol("q")); notify(Symbol("n"))', texts=["Symbol(q)"]),
    Case("symbol-store", "store(\"s\", Symbol())", "failed", error_has='Unable to store "s"'),
    Case("symbol-store-key", 'store(Symbol("k"), 1); text(load(Symbol("k")))', texts=["1"]),
    Case("symbol-tool-args", "text(JSON.stringify(await tools.echo(Symbol())))", texts=["{}"]),
    Case("symbol-keyed-args", "text(JSON.stringify(await tools.echo({ [Symbol()]: 1, a: Symbol() })))", texts=["{}"]),
    Case("symbol-thrown", 'throw Symbol("z")', "failed", error_has="Symbol(z)"),
    Case("symbol-image", "image(Symbol())", "failed", error_has="image expects"),
    Case("unprintable-thrown", "throw { get stack() { throw 1 }, toString() { throw 2 } }", "failed", error_has="[unprintable value]"),
    Case("null-proto-thrown", "throw Object.create(null)", "failed", error_has="[unprintable value]"),
    # --- strings ------------------------------------------------------------------------------
    Case(
        "surrogates-and-nul",
        'text("\\ud800|\\u0000|\\udfff"); notify("\\ud800\\u0000"); store("\\ud800\\u0000", "\\udc00");'
        'text(load("\\ud800\\u0000")); text(JSON.stringify(await tools.echo({ "\\u0000": "\\ud800" })));'
        'text(await tools.raw("\\udc00\\u0000"))',
        texts=["\ufffd|\x00|\ufffd", "\ufffd", '{"\\u0000":"\ufffd"}', "\ufffd\x00"],  # U+FFFD in the host
    ),
    Case("surrogate-error", 'throw new Error("\\ud800\\u0000")', "failed", error_has="Error: \ufffd\x00"),
    Case("nul-image", 'image("data:image/png;base64,\\u0000")', texts=["image"]),
    Case("huge-string-limit", 'text("x".repeat(2 ** 30))', "failed", error_has="RangeError: Invalid string length"),
    Case("huge-text", 'text("x".repeat(2 ** 29 - 24))', "failed", slow=True),
    Case("string-bomb", 'let s = "x"; for (let i = 0; i < 40; i++) s += s; text(s.length)', "failed", error_has="RangeError"),
    # --- recursion and floods -------------------------------------------------------------------
    Case("deep-recursion", "function f() { return f() } f()", "failed", error_has="RangeError: Maximum call stack size exceeded"),
    Case("deep-recursion-caught", 'function f() { return f() } try { f() } catch (e) { text(e.constructor.name) }', texts=["RangeError"]),
    Case("deep-json", "let a = []; for (let i = 0; i < 1e6; i++) a = [a]; text(a)", slow=True),  # V8 copes
    Case(
        "deep-tool-args",  # Python cannot parse it: a rejection, not a crash
        "let a = {}; for (let i = 0; i < 100000; i++) a = { a }; await tools.echo(a)",
        "failed",
        error_has="recursion",
    ),
    Case(
        "nested-store",
        'let a = {}; for (let i = 0; i < 500; i++) a = { a }; store("nested", a); let d = load("nested"), n = 0;'
        "while (d.a) { d = d.a; n++ } text(n)",
        texts=["500"],
    ),
    Case(
        "too-deep-store",  # the host could not read it back: refused, with the reason
        'let a = {}; for (let i = 0; i < 5000; i++) a = { a }; store("deep", a); store("other", 1); text("done")',
        "failed",
        texts=["done"],
        error_has='store: the value of "deep" is nested too deeply',
    ),
    Case("microtask-flood", "const f = () => Promise.resolve().then(f); f(); text(\"x\")", texts=["x"]),
    Case("timer-flood", 'for (let i = 0; i < 100000; i++) setTimeout(() => {}, 1e6); text("many")', texts=["many"]),
    Case("tool-call-flood", 'for (let i = 0; i < 2000; i++) tools.echo({ i }); text("queued")', texts=["queued"]),
]


@pytest.fixture(scope="module")
def host() -> Iterator[Host]:
    async def echo(args: Any) -> Any:
        return args

    async def never(args: Any) -> None:
        import asyncio

        await asyncio.sleep(3600)

    async def raw(text: str) -> str:
        return text

    tools = [
        Tool("echo", "Return the arguments.", echo),
        Tool("never", "Never returns.", never),
        Tool("raw", "Return the input.", raw, kind="freeform"),
    ]
    host = Host(tools=tools, limits=Limits(heap_limit_bytes=128 * 1024 * 1024))
    yield host
    host.close()


@pytest.fixture
def healthy(host: Host) -> Iterator[Host]:
    yield host
    host.assert_healthy()


def test_the_corpus_is_large_enough() -> None:
    assert len(CASES) >= 30
    assert len({case.id for case in CASES}) == len(CASES)


@pytest.mark.parametrize(
    "case", [pytest.param(case, id=case.id, marks=[pytest.mark.slow] if case.slow else []) for case in CASES]
)
def test_escape_attempt(healthy: Host, case: Case) -> None:
    result = healthy.exec(case.source, yield_time_ms=300 if case.status == "terminated" else 20_000)
    assert result.status == case.status, (result.status, result.error)
    if case.texts is not None:
        assert texts(result) == case.texts
    if case.error_has is not None:
        assert case.error_has in (result.error or "")
    if case.id == "globals-allow-list":
        assert set(json.loads(texts(result)[0])) <= ALLOWED_GLOBALS


POLLUTERS = [
    "Object.prototype.polluted = 1; Array.prototype.polluted = 1; Function.prototype.polluted = 1;",
    "Object.prototype.toJSON = () => 'x';",
    "JSON.parse = () => ({ polluted: 1 }); JSON.stringify = () => 'polluted';",
    "globalThis.text = () => {}; globalThis.tools = {}; globalThis.polluted = 1; delete globalThis.store;",
    "Object.defineProperty(Object.prototype, 'polluted', { get() { while (true) {} } });",
    "Error.prepareStackTrace = () => 'polluted'; Promise.prototype.then = null;",
]


@pytest.mark.parametrize("polluter", POLLUTERS)
def test_pollution_does_not_reach_the_next_cell(healthy: Host, polluter: str) -> None:
    healthy.exec(polluter + 'text("polluted")', yield_time_ms=2000)
    clean = healthy.exec(
        "text([typeof ({}).polluted, typeof [].polluted, typeof globalThis.polluted, typeof ({}).toJSON,"
        "typeof store, typeof Promise.prototype.then, JSON.stringify({ a: 1 }), String(new Error('e').stack).split('\\n')[0]].join())"
    )
    assert (clean.status, texts(clean)) == (
        "completed",
        ['undefined,undefined,undefined,undefined,function,function,{"a":1},Error: e'],
    )
    assert healthy.cm.stored_values == {**healthy.cm.stored_values}  # readable by the host


def test_pollution_does_not_reach_the_host(healthy: Host) -> None:
    before = (dict.__dict__.copy(), list.__dict__.copy(), json.dumps({"a": [1]}))
    healthy.exec("Object.prototype.x = 1; Object.prototype.toString = () => 'p'; text(1)")
    assert (dict.__dict__.copy(), list.__dict__.copy(), json.dumps({"a": [1]})) == before


def test_stored_values_stay_readable_by_the_host(healthy: Host) -> None:
    healthy.exec(
        'store("nan", NaN); store("date", new Date(0)); store("map", new Map([[1, 2]])); store("neg0", -0);'
        'store("\\ud800", "\\udfff")'
    )
    values = healthy.cm.stored_values
    assert values["nan"] is None and values["map"] == {} and values["date"] == "1970-01-01T00:00:00.000Z"
    # Lone surrogates cannot cross a UTF-8 boundary: the host keeps U+FFFD in their place (issue 19).
    assert values["\ufffd"] == "\ufffd" and "\ud800" not in values
