"""The sandbox: globals, Intl, module semantics and imports (spec 5, 6; section 9 cases 22, 28, 29).

The reference rejects every import; codemode also synthesizes the pre-merge modules
`@openai/code_mode` (alias `openai/code_mode`) and `tools.js`, because models write them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from codemode import CodeMode, SyncCodeMode, Tool
from codemode._output import model_items

from ._support import MakeCodeMode, texts

# Spec 6, the LATEST runtime allow-list, plus `forward_output` (spec 4.6: a branch-only helper
# codemode installs on purpose).
ALLOWED_GLOBALS = {
    "AggregateError", "ALL_TOOLS", "Array", "ArrayBuffer", "AsyncDisposableStack", "BigInt",
    "BigInt64Array", "BigUint64Array", "Boolean", "clearTimeout", "DataView", "Date",
    "DisposableStack", "Error", "EvalError", "FinalizationRegistry", "Float16Array", "Float32Array",
    "Float64Array", "Function", "Infinity", "Int16Array", "Int32Array", "Int8Array", "Intl",
    "Iterator", "JSON", "Map", "Math", "NaN", "Number", "Object", "Promise", "Proxy", "RangeError",
    "ReferenceError", "Reflect", "RegExp", "Set", "String", "SuppressedError", "Symbol",
    "SyntaxError", "Temporal", "TypeError", "URIError", "Uint16Array", "Uint32Array", "Uint8Array",
    "Uint8ClampedArray", "WeakMap", "WeakRef", "WeakSet", "__codexContentItems", "add_content",
    "audio", "decodeURI", "decodeURIComponent", "encodeURI", "encodeURIComponent", "escape", "exit",
    "eval", "generatedImage", "globalThis", "image", "isFinite", "isNaN", "load", "notify",
    "parseFloat", "parseInt", "setTimeout", "store", "text", "tools", "undefined", "unescape",
    "yield_control",
    "forward_output",
}  # fmt: skip
REQUIRED_GLOBALS = {
    "tools", "ALL_TOOLS", "text", "image", "audio", "generatedImage", "store", "load", "notify",
    "yield_control", "exit", "setTimeout", "clearTimeout", "forward_output",
}  # fmt: skip
FORBIDDEN_GLOBALS = [
    "console", "Atomics", "SharedArrayBuffer", "WebAssembly", "require", "process", "fetch",
    "setInterval", "queueMicrotask", "structuredClone", "TextEncoder", "module", "Deno", "Bun",
    "__codemode_ping__",
]  # fmt: skip


def my_tool(x: int = 0) -> int:
    """Return x."""
    return x


@pytest.fixture
async def tool_cm(make_cm: MakeCodeMode) -> CodeMode:
    return await make_cm(tools=[my_tool])


@pytest.fixture(scope="module")
def shared() -> Iterator[SyncCodeMode]:
    """One session with `my_tool` for the stateless table cases (its own event-loop thread)."""
    with SyncCodeMode(tools=[my_tool]) as session:
        yield session


def s_run(session: SyncCodeMode, code: str) -> list[str]:
    result = session.exec(code)
    assert (result.status, result.error) == ("completed", None)
    return texts(result)


async def run(cm: CodeMode, code: str) -> list[str]:
    result = await cm.exec(code)
    assert (result.status, result.error) == ("completed", None)
    return texts(result)


# -- globals (cases 22, 28) ----------------------------------------------------------------------


async def test_case28_globals_are_within_the_allow_list(tool_cm: CodeMode) -> None:
    names = json.loads((await run(tool_cm, "text(JSON.stringify(Object.getOwnPropertyNames(globalThis)));"))[0])
    assert set(names) <= ALLOWED_GLOBALS, set(names) - ALLOWED_GLOBALS
    assert REQUIRED_GLOBALS <= set(names)


@pytest.mark.parametrize("name", FORBIDDEN_GLOBALS)
def test_forbidden_globals_are_absent(shared: SyncCodeMode, name: str) -> None:
    code = f'text(String(Object.hasOwn(globalThis, "{name}"))); text(typeof {name});'
    assert s_run(shared, code) == ["false", "undefined"]


async def test_helpers_are_not_enumerable_but_replaceable(cm: CodeMode) -> None:
    code = (
        "text(JSON.stringify(Object.keys(globalThis)));\n"
        "const original = text; globalThis.text = (v) => original(`wrapped ${v}`); text('x');"
    )
    assert await run(cm, code) == ["[]", "wrapped x"]


async def test_replacing_intrinsics_does_not_break_the_runtime(cm: CodeMode) -> None:
    code = (
        "Promise.prototype.then = function () { return this; };\n"
        "globalThis.Int32Array = null; JSON.stringify = () => 'x'; JSON.parse = () => 'y';\n"
        "setTimeout(() => text('timer'), 1);\n"
        "text({ a: 1 }); store('k', [1]); text(load('k')[0]);"
    )
    result = await cm.exec(code)
    # The script's top-level promise settles even though `then` was replaced; the timer is
    # dropped with the finished cell.
    assert (result.status, texts(result)) == ("completed", ['{"a":1}', "1"])


async def test_tools_and_all_tools_shapes(make_cm: MakeCodeMode) -> None:
    def beta() -> str:
        """Second tool."""
        return "b"

    def alpha() -> str:
        """First tool."""
        return "a"

    session = await make_cm(tools=[beta, alpha])
    code = (
        "text(JSON.stringify(Object.keys(tools)));\n"
        "text(String(Object.isFrozen(tools)) + ' ' + String(Array.isArray(ALL_TOOLS)));\n"
        "text(JSON.stringify(ALL_TOOLS.map((t) => [t.name, Object.keys(t)])));\n"
        "text(typeof tools.alpha);\n"
        "try { await tools.gamma({}); } catch (e) { text(e.constructor.name + ': ' + e.message); }"
    )
    out = await run(session, code)
    assert out[:4] == ['["alpha","beta"]', "false true", '[["alpha",["name","description"]],["beta",["name","description"]]]', "function"]
    assert out[4] == "TypeError: tools.gamma is not a function"


async def test_tools_is_made_on_first_read_and_all_tools_only_for_a_script_that_names_it(
    tool_cm: CodeMode,
) -> None:
    """A fresh isolate pays for what it compiles: `tools` is built when first read, and ALL_TOOLS'
    entries come only to a script that names them. Nothing a script sees changes but a global
    reached by a computed name, which says what to do."""
    code = (
        'const d = Object.getOwnPropertyDescriptor(globalThis, "tools");'
        "text(JSON.stringify([d.enumerable, d.configurable, typeof tools, Object.keys(tools)]));"
        'text(JSON.stringify(Object.getOwnPropertyDescriptor(globalThis, "tools").value === tools));'
        'try { globalThis["ALL_" + "TOOLS"]; } catch (e) { text(String(e)); }'
        "tools = 5; text(String(tools));"
    )
    assert await run(tool_cm, code) == [
        '[false,true,"object",["my_tool"]]',
        "true",
        "ALL_TOOLS is loaded only for a script that names it: write ALL_TOOLS in the script",
        "5",
    ]
    named = 'text(JSON.stringify(globalThis["ALL_" + "TOOLS"].map((t) => t.name))); ALL_TOOLS;'
    assert await run(tool_cm, named) == ['["my_tool"]']


async def test_eval_function_math_random_and_date_are_real(cm: CodeMode) -> None:
    before = time.time() * 1000
    out = await run(
        cm,
        'text(eval("1 + 1")); text(new Function("return 3")());\n'
        "text(String(Math.random() !== Math.random())); text(Date.now());",
    )
    assert out[:3] == ["2", "3", "true"]
    assert before - 60_000 <= float(out[3]) <= time.time() * 1000 + 60_000


# -- Intl (case 29) -------------------------------------------------------------------------------


async def test_case29_fr_fr_date_formatting(cm: CodeMode) -> None:
    code = (
        'const d = new Date("2025-01-02T03:04:05Z");\n'
        'const o = { weekday: "long", month: "long", day: "numeric", hour: "2-digit", minute: "2-digit",'
        ' second: "2-digit", hour12: false, timeZone: "UTC" };\n'
        'text(d.toLocaleString("fr-FR", o)); text(new Intl.DateTimeFormat("fr-FR", o).format(d));\n'
        'text(new Intl.NumberFormat("de-DE").format(1234567.891));'
    )
    assert await run(cm, code) == ["jeudi 2 janvier à 03:04:05", "jeudi 2 janvier à 03:04:05", "1.234.567,891"]


# -- module semantics (spec 5) ---------------------------------------------------------------------


async def test_scripts_are_strict_module_like(cm: CodeMode) -> None:
    code = (
        "var v = 1; function f() {} let l = 2; const c = 3;\n"
        "text(JSON.stringify([typeof this, 'v' in globalThis, 'f' in globalThis, 'l' in globalThis]));\n"
        "try { undeclared = 1; text('sloppy'); } catch (e) { text(e.name); }\n"
        "text(await Promise.resolve('top-level await'));"
    )
    assert await run(cm, code) == ['["undefined",false,false,false]', "ReferenceError", "top-level await"]


async def test_top_level_return_is_a_syntax_error_like_in_a_module(cm: CodeMode) -> None:
    result = await cm.exec('text("a");\nreturn;')
    # A module cannot `return` at top level; the wrapper must not make it legal.
    assert result.status == "failed", result
    assert result.error == "SyntaxError: Illegal return statement\n    at exec_main.mjs:2:1\n    2 | return;\n      | ^^^^^^"
    nested = await cm.exec("if (true) {\n  text('x'); return;\n}")
    assert (nested.items, nested.error) == (
        (),
        "SyntaxError: Illegal return statement\n    at exec_main.mjs:2:14\n    2 |   text('x'); return;\n"
        "      |              ^^^^^^",
    )
    first = await cm.exec("const ok = () => { return 1; };\nif (ok()) return;\nreturn 2;")
    assert first.error == (
        "SyntaxError: Illegal return statement\n    at exec_main.mjs:2:11\n    2 | if (ok()) return;\n      |           ^^^^^^"
    )
    unicode = await cm.exec("const s = '😀'; return;")
    assert unicode.error == (
        "SyntaxError: Illegal return statement\n    at exec_main.mjs:1:17\n    1 | const s = '😀'; return;\n"
        "      |                ^^^^^^"
    )
    legal = await cm.exec("function f() { return 1; }\nconst g = () => { return 2; };\ntext(f() + g());")
    assert texts(legal) == ["3"]


# -- imports ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "code",
    [
        'import { text, exit } from "@openai/code_mode";\ntext("hi"); exit(); text("no");',
        "import { text, exit } from 'openai/code_mode';\ntext('hi'); exit(); text('no');",
        'import * as cm from "@openai/code_mode";\ncm.text("hi");',
        'import { text as say } from "@openai/code_mode";\nsay("hi");',
        'const { text: t } = await import("@openai/code_mode");\nt("hi");',
        'import {text as t} from "@openai/code_mode"\nconst text = 1;\nt("hi");',
    ],
)
def test_code_mode_module_imports(shared: SyncCodeMode, code: str) -> None:
    assert s_run(shared, code) == ["hi"]


async def test_code_mode_module_exports(cm: CodeMode) -> None:
    code = 'import * as cm from "@openai/code_mode";\ntext(JSON.stringify(Object.keys(cm).sort()));'
    exports = json.loads((await run(cm, code))[0])
    assert set(exports) >= {"exit", "image", "load", "notify", "store", "text", "yield_control"}
    assert set(exports) <= ALLOWED_GLOBALS


@pytest.mark.parametrize(
    "code",
    [
        'import { my_tool, ALL_TOOLS } from "tools.js";\ntext(await my_tool({ x: 3 })); text(ALL_TOOLS.length);',
        'import * as t from "tools.js";\ntext(await t.my_tool({ x: 3 })); text(t.ALL_TOOLS.length);',
        'import t from "tools.js";\ntext(await t.my_tool({ x: 3 })); text(String(t === tools).length - 3);',
        'import { "my_tool" as q, ALL_TOOLS as all } from "tools.js";\ntext(await q({ x: 3 })); text(all.length);',
        'const m = await import("tools.js");\ntext(await m.my_tool({ x: 3 })); text(m.ALL_TOOLS.length);',
        'import "tools.js";\ntext(await tools.my_tool({ x: 3 })); text(ALL_TOOLS.length);',
    ],
)
def test_tools_module_imports(shared: SyncCodeMode, code: str) -> None:
    assert s_run(shared, code) == ["3", "1"]


@pytest.mark.parametrize(
    ("code", "spec"),
    [
        ('import x from "nope";', "nope"),
        ('text("before");\nimport { readFile } from "fs";', "fs"),
        ("import json from './data.json' with { type: 'json' };", "./data.json"),
        ('import * as path from "node:path";', "node:path"),
        ('export { x } from "elsewhere";', "elsewhere"),
        ('import "tools";', "tools"),
        ('import { text } from "@openai/code_mode/index.js";', "@openai/code_mode/index.js"),
    ],
)
def test_unsupported_static_import_fails_before_any_output(shared: SyncCodeMode, code: str, spec: str) -> None:
    result = shared.exec(code)
    assert (result.status, result.items, result.error) == ("failed", (), f"Unsupported import in exec: {spec}")
    assert [getattr(item, "text", None) for item in model_items(result)][1] == (
        f"Script error:\nUnsupported import in exec: {spec}"
    )


async def test_missing_named_export_fails(tool_cm: CodeMode) -> None:
    result = await tool_cm.exec('import { nope } from "tools.js";')
    assert result.status == "failed"
    assert result.error == "SyntaxError: The requested module 'tools.js' does not provide an export named 'nope'"


async def test_unsupported_dynamic_import_rejects_with_a_string(cm: CodeMode) -> None:
    code = (
        'const r = await import("nope").then(() => "resolved", (e) => `${typeof e}:${e}`);\ntext(r);\n'
        'import("also-nope"); text("unawaited rejection is harmless");'
    )
    assert await run(cm, code) == ["string:Unsupported import in exec: nope", "unawaited rejection is harmless"]


async def test_uncaught_dynamic_import_failure_is_the_error(cm: CodeMode) -> None:
    result = await cm.exec('text("a");\nawait import("nope");')
    assert (result.status, texts(result), result.error) == ("failed", ["a"], "Unsupported import in exec: nope")


async def test_exports_are_ignored_but_declarations_run(cm: CodeMode) -> None:
    code = 'export const a = 1;\nexport function f() { return 2; }\nexport default 3;\nexport { a as b };\ntext(a + f());'
    assert await run(cm, code) == ["3"]


async def test_import_text_in_strings_and_comments_is_left_alone(cm: CodeMode) -> None:
    code = (
        '// import x from "y"\n/* import("z") */\nconst s = "import q from \\"r\\"";\n'
        "const o = { import: 1 };\ntext(s); text(o.import);"
    )
    assert await run(cm, code) == ['import q from "r"', "1"]


async def test_static_import_keeps_positions(cm: CodeMode) -> None:
    result = await cm.exec('import { text } from "@openai/code_mode"; throw new Error("x");')
    assert result.error == "Error: x\n    at exec_main.mjs:1:49"
    result = await cm.exec('import {\n  text,\n} from "@openai/code_mode";\ntext("a");\nthrow new Error("y");')
    assert (texts(result), result.error) == (["a"], "Error: y\n    at exec_main.mjs:5:7")


async def test_dynamic_import_keeps_positions(tool_cm: CodeMode) -> None:
    result = await tool_cm.exec('await import("tools.js"); throw new Error("z");')
    assert result.error == "Error: z\n    at exec_main.mjs:1:33"


async def test_tool_named_like_a_helper_is_only_on_tools(make_cm: MakeCodeMode) -> None:
    session = await make_cm(
        tools=[Tool(name="text", description="A tool called text.", handler=lambda args: "tool text")]
    )
    code = 'import { text as t } from "tools.js";\ntext(await t({})); text(await tools.text({}));'
    assert await run(session, code) == ["tool text", "tool text"]
