"""TypeScript in scripts (issue 21): it runs as the JavaScript it holds; JavaScript is untouched.

Models read their tools as TypeScript declarations and write TypeScript back. A script that does
not parse as JavaScript has its types removed by the engine (`EngineSession.strip_types`, with the
strippers of `codemode._typescript`) before it runs; one that
parses is never stripped (`f < T > (x)` stays two comparisons); one that is neither fails with
V8's message, its position and the offending line.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from codemode import SyncCodeMode
from codemode._engine.miniracer import MiniRacerSession
from codemode._engine.process import ProcessSession

from ._support import texts


def get_forecast(city: str) -> dict[str, object]:
    """Forecast for a city."""
    return {"city": city, "temperature_c": {"Paris": 14, "Oslo": 3}.get(city, 20)}


def list_cities() -> list[str]:
    """All cities."""
    return ["Paris", "Oslo", "Lisbon"]


@pytest.fixture(scope="module")
def session() -> Iterator[SyncCodeMode]:
    with SyncCodeMode(tools=[get_forecast, list_cities]) as cm:
        yield cm


@pytest.fixture
def strips(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The scripts the session sends to the engine's TypeScript stripper during the test."""
    sent: list[str] = []
    for engine_session in (ProcessSession, MiniRacerSession):
        strip = engine_session.strip_types

        async def spy(self: Any, code: str, strip: Callable[[Any, str], Awaitable[str]] = strip) -> str:
            sent.append(code)
            return await strip(self, code)

        monkeypatch.setattr(engine_session, "strip_types", spy)
    return sent


# (label, script, texts it prints): each script is TypeScript that is not valid JavaScript.
TYPESCRIPT = [
    ("annotated const", "const cities: string[] = await tools.list_cities({});\ntext(cities.length);", ["3"]),
    (
        "interface",
        "interface Forecast { city: string; temperature_c: number }\n"
        'const f: Forecast = await tools.get_forecast({ city: "Paris" });\ntext(f.temperature_c);',
        ["14"],
    ),
    (
        "type alias and as",
        'type F = { city: string; temperature_c: number };\nconst f = (await tools.get_forecast({ city: "Oslo" })) as F;\n'
        "text(f.city);",
        ["Oslo"],
    ),
    ("typed arrow function", "const warm = (t: number): boolean => t > 10;\ntext(warm(14));", ["true"]),
    (
        "generic function",
        "function first<T>(xs: T[]): T | undefined { return xs[0]; }\ntext(first(await tools.list_cities({})));",
        ["Paris"],
    ),
    (
        "non-null assertion",
        'const cs = await tools.list_cities({});\nconst c = cs.find((x: string) => x.startsWith("L"))!;\ntext(c);',
        ["Lisbon"],
    ),
    (
        "async function returning Promise<number>",
        "async function temp(city: string): Promise<number> {\n"
        "  const f = await tools.get_forecast({ city });\n  return f.temperature_c;\n}\ntext(await temp(\"Oslo\"));",
        ["3"],
    ),
    (
        "Record and satisfies",
        "const byCity: Record<string, number> = {};\n"
        "for (const c of await tools.list_cities({})) { byCity[c] = (await tools.get_forecast({ city: c })).temperature_c; }\n"
        'const cfg = { unit: "c" } satisfies { unit: string };\ntext(JSON.stringify(byCity) + cfg.unit);',
        ['{"Paris":14,"Oslo":3,"Lisbon":20}c'],
    ),
    (
        "catch (e: unknown) and as Error",
        'try { throw new Error("boom"); } catch (e: unknown) { text("caught " + (e as Error).message); }',
        ["caught boom"],
    ),
    ("string enum", 'enum Unit { C = "c", F = "f" }\ntext(Unit.C + Unit.F);', ["cf"]),
    (
        "numeric enum with its reverse mapping",
        "enum Color { Red, Green, Blue = 10 }\ntext(JSON.stringify([Color.Green, Color[0], Color.Blue]));",
        ['[1,"Red",10]'],
    ),
    ("const enum", "const enum Dir { Up = 1, Down = -1 }\nlet d: Dir = Dir.Down;\ntext(d);", ["-1"]),
    ("import type", 'import type { Forecast } from "tools.js";\ntext("ok");', ["ok"]),
    (
        "type-only specifiers beside values",
        'import { type Helper, text as say } from "@openai/code_mode";\nimport { list_cities, type Other } from "tools.js";\n'
        "say(String((await list_cities({})).length));",
        ["3"],
    ),
    (
        "export type and export interface",
        "export interface Row { a: number }\nexport type Rows = Row[];\nconst rows: Rows = [{ a: 1 }, { a: 2 }];\n"
        "text(rows.length);",
        ["2"],
    ),
    (
        "generic calls and constructors",
        "const m = new Map<string, number>([[\"a\", 1]]);\n"
        "const all = await Promise.all<Promise<any>>((await tools.list_cities({})).map((c: string) => "
        "tools.get_forecast({ city: c })));\ntext(m.get(\"a\")! + all.length);",
        ["4"],
    ),
    (
        "class field modifiers, definite assignment and optional fields",
        "abstract class Shape { abstract area(): number; }\n"
        "class Square extends Shape implements Object {\n"
        "  private readonly side: number;\n  protected label?: string;\n  public static count: number = 0;\n"
        "  declare kind: string;\n  ready!: boolean;\n"
        "  constructor(side: number) { super(); this.side = side; Square.count++; }\n"
        "  override area(): number { return this.side ** 2; }\n}\n"
        "const s = new Square(3);\ntext(s.area() + \"/\" + Square.count + \"/\" + ('kind' in s));",
        ["9/1/false"],
    ),
    (
        "constructor parameter properties",
        "class Point {\n  constructor(public x: number, private readonly y: number = 2) {}\n"
        "  sum(): number { return this.x + this.y; }\n}\ntext(new Point(1).sum());",
        ["3"],
    ),
    (
        "declare",
        "declare const injected: number;\ndeclare function helper(x: string): void;\n"
        "declare global { interface Window { x: number } }\ntext(typeof injected);",
        ["undefined"],
    ),
    (
        "optional and default parameters",
        'function greet(name?: string, greeting: string = "hi"): string { return greeting + " " + (name ?? "you"); }\n'
        'text(greet());\ntext(greet("Ada", "hello"));',
        ["hi you", "hello Ada"],
    ),
    (
        "type predicates and assertion functions",
        "function isText(x: unknown): x is string { return typeof x === \"string\"; }\n"
        "function check(x: unknown): asserts x is number { if (typeof x !== \"number\") throw new Error(\"no\"); }\n"
        "const v: unknown = 5; check(v);\ntext(isText(\"a\") + \",\" + isText(v));",
        ["true,false"],
    ),
    (
        "overloads",
        "function twice(x: string): string;\nfunction twice(x: number): number;\n"
        "function twice(x: any): any { return x + x; }\ntext(twice(\"ab\") + twice(2));",
        ["abab4"],
    ),
    (
        "as const and typeof types",
        'const units = ["c", "f"] as const;\ntype Unit = (typeof units)[number];\n'
        "const u: Unit = units[1];\ntext(u);",
        ["f"],
    ),
    (
        "tuples, unions and intersections",
        'let pair: [string, number] = ["a", 1];\nlet id: string | number = 7;\n'
        "type Named = { name: string } & { age?: number };\nconst n: Named = { name: \"x\" };\n"
        "text(pair[0] + id + n.name);",
        ["a7x"],
    ),
    ("generic arrow function", "const identity = <T,>(x: T): T => x;\ntext(identity<string>(\"same\"));", ["same"]),
    ("angle-bracket assertion", "const raw: unknown = \"42\";\nconst n = parseInt(<string>raw, 10);\ntext(n + 1);", ["43"]),
    (
        "annotated destructuring and getters",
        'const { city }: { city: string } = await tools.get_forecast({ city: "Oslo" });\n'
        "class Box { #v = 2; get value(): number { return this.#v; } }\ntext(city + new Box().value);",
        ["Oslo2"],
    ),
    (
        "pragma line before TypeScript",
        '// @exec: {"yield_time_ms": 5000}\nconst n: number = 2;\ntext(n * 21);',
        ["42"],
    ),
]


@pytest.mark.parametrize(("script", "expected"), [case[1:] for case in TYPESCRIPT], ids=[case[0] for case in TYPESCRIPT])
def test_typescript_runs_as_if_its_types_were_absent(
    session: SyncCodeMode, strips: list[str], script: str, expected: list[str]
) -> None:
    result = session.exec(script)
    assert (result.status, texts(result), result.error) == ("completed", expected, None)
    assert len(strips) == 1  # it did not parse as JavaScript


# (label, script, texts it prints): valid JavaScript that looks like TypeScript here and there.
JAVASCRIPT = [
    ("conditional", "const a = 1, b = 2;\ntext(a ? b : 3);\ntext(a ? (b) : (3));", ["2", "2"]),
    # TypeScript would read `f<T>(x)` as a generic call (5); JavaScript compares twice.
    ("comparisons that look like type arguments", "const T = 1, x = 0;\nfunction f() { return 5; }\ntext(f < T > (x));", ["false"]),
    ("chained comparison", "const x = 1, y = 2, z = 0;\ntext(x < y > z);", ["true"]),
    (
        "labels",
        "outer: for (const i of [1, 2]) {\n  for (const j of [1, 2]) {\n    if (j === 2) continue outer;\n"
        '    text(i + ":" + j);\n  }\n}',
        ["1:1", "2:1"],
    ),
    (
        "object literals, renames and switch cases",
        "const o = { a: 1, b: { c: 2 } };\nconst { a: renamed, b: { c } } = o;\n"
        'switch (renamed) { case 1: text("one:" + c); break; default: text("other"); }',
        ["one:2"],
    ),
    (
        "TypeScript keywords as JavaScript names",
        "const type = 1, declare = 2, readonly = 3, abstract = 4, namespace = 5, satisfies = 6, as = 7, is = 8;\n"
        "text(type + declare + readonly + abstract + namespace + satisfies + as + is);",
        ["36"],
    ),
    ("not-equal after a name", "const a = 1, b = 2;\ntext(a!== b);", ["true"]),
    ("regular expression with type-like text", 'text(/a:b<c>/.test("a:b<c>"));', ["true"]),
    ("optional chaining and a decimal", "const o = { p: null };\ntext(String(o?.p ?? (o ? .5 : 1)));", ["0.5"]),
    ("arrow returning an object", "const pair = (k, v) => ({ [k]: v });\ntext(JSON.stringify(pair(\"k\", 1)));", ['{"k":1}']),
]


@pytest.mark.parametrize(("script", "expected"), [case[1:] for case in JAVASCRIPT], ids=[case[0] for case in JAVASCRIPT])
def test_javascript_is_never_stripped(session: SyncCodeMode, strips: list[str], script: str, expected: list[str]) -> None:
    result = session.exec(script)
    assert (result.status, texts(result), result.error) == ("completed", expected, None)
    assert strips == []


# (label, script, the error): invalid as TypeScript too, so V8 reports the script as written.
INVALID_IN_BOTH = [
    (
        "annotation without a type",
        "const x: = 1;",
        "SyntaxError: Missing initializer in const declaration\n    at exec_main.mjs:1:7\n    1 | const x: = 1;\n"
        "      |       ^",
    ),
    (
        "error on a later line",
        "const a = 1;\ntext(a);\nlet b: number = ;",
        "SyntaxError: Unexpected token ':'\n    at exec_main.mjs:3:6\n    3 | let b: number = ;\n      |      ^",
    ),
    (
        "missing parenthesis",
        "function f(a: number { return a; }\ntext(f(1));",
        "SyntaxError: Unexpected token ':'\n    at exec_main.mjs:1:13\n    1 | function f(a: number { return a; }\n"
        "      |             ^",
    ),
    (
        "unclosed block",
        "function f(x) {\n  text(x);",
        "SyntaxError: Unexpected token ')'\n    at exec_main.mjs:3:2\n"
        "    (past the script's end: something it opens is not closed, or its last statement is unfinished)",
    ),
    (
        # Only erasable TypeScript and what sucrase generates faithfully is accepted: a namespace
        # with values is left to V8.
        "namespace with values",
        "const a = 1;\nnamespace N { export const b = 2; }\ntext(N.b);",
        "SyntaxError: Unexpected identifier 'N'\n    at exec_main.mjs:2:11\n    2 | namespace N { export const b = 2; }\n"
        "      |           ^",
    ),
    (
        "a long line is cut around the error",
        "const v = [" + "1, " * 100 + "2 3];",
        "SyntaxError: Unexpected number\n    at exec_main.mjs:1:314\n"
        # The last 160 of its 316 characters (the token is near the end); under `…` and the 157
        # characters before the token, spaces.
        "    1 | …" + ", 1" * 51 + ", 2 3];\n      | " + " " * 158 + "^",
    ),
]


@pytest.mark.parametrize(("script", "error"), [case[1:] for case in INVALID_IN_BOTH], ids=[case[0] for case in INVALID_IN_BOTH])
def test_invalid_in_both_languages_shows_position_and_line(
    session: SyncCodeMode, strips: list[str], script: str, error: str
) -> None:
    result = session.exec(script)
    assert (result.status, result.items, result.error) == ("failed", (), error)
    assert strips == [script.split("\n", 1)[1] if script.startswith("//") else script]


def test_runtime_errors_in_stripped_scripts_point_at_the_models_columns(session: SyncCodeMode) -> None:
    script = 'type P = { x: number };\nconst p: P | undefined = undefined as P | undefined;\ntext(p!.x);'
    result = session.exec(script)
    assert result.error == "TypeError: Cannot read properties of undefined (reading 'x')\n    at exec_main.mjs:3:9"
    assert script.split("\n")[2][8] == "x"  # column 9 is where the model wrote the `x` of `p!.x`


def test_a_stripped_script_that_v8_refuses_is_reported_where_the_model_wrote_it(session: SyncCodeMode) -> None:
    # TypeScript's parser accepts the redeclaration (its checker would not); V8 refuses it.
    result = session.exec("const a: number = 1;\nconst a: string = 'b';")
    assert result.error == (
        "SyntaxError: Identifier 'a' has already been declared\n    at exec_main.mjs:2:7\n"
        "    2 | const a         = 'b';\n      |       ^"
    )


def test_scripts_with_an_enum_keep_their_lines(session: SyncCodeMode) -> None:
    # sucrase writes the enum as code on its own line; the lines after it stay where they were.
    result = session.exec('enum E { A = "a" }\nconst e: E = E.A;\n\nconst n = null;\nn.boom;')
    assert result.error == "TypeError: Cannot read properties of null (reading 'boom')\n    at exec_main.mjs:5:3"


def test_typescript_with_module_syntax_is_stripped_before_its_imports_are_rewritten(session: SyncCodeMode, strips: list[str]) -> None:
    """A TypeScript script with module syntax: stripped first, then its imports rewritten."""
    result = session.exec(
        'import { text } from "@openai/code_mode";\nimport type { Anything } from "tools.js";\n'
        "const n: number = (await import(\"tools.js\")).ALL_TOOLS.length;\ntext(n);"
    )
    assert (result.status, texts(result)) == ("completed", ["2"])
    assert len(strips) == 1


def test_scripts_cannot_see_the_stripper(session: SyncCodeMode) -> None:
    # The strippers run in the engine's own context: not in any script's isolate, even after a strip.
    result = session.exec("const n: number = 1;\ntext(typeof __codemode_typescript__ + typeof ts + typeof sucrase);")
    assert texts(result) == ["undefinedundefinedundefined"]
