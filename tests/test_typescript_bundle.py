"""The TypeScript strippers bundled into the package, and the sign that a script needs them.

`src/codemode/_typescript/strippers.js` is built by `make typescript-bundle` from the versions
pinned in `scripts/typescript_bundle/`; these tests fail when the committed bundle, its licence
notice and the pins disagree.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from codemode._engine.miniracer._stripper import TypeStripper
from codemode._imports import parses_as_javascript
from codemode.errors import EngineError

ROOT = Path(__file__).resolve().parent.parent
RECIPE = ROOT / "scripts" / "typescript_bundle"
BUNDLE = ROOT / "src" / "codemode" / "_typescript"


def pinned() -> dict[str, str]:
    """The strippers' versions: exact in package.json, the same in the lock `npm ci` installs."""
    declared = json.loads((RECIPE / "package.json").read_text())["dependencies"]
    locked = json.loads((RECIPE / "package-lock.json").read_text())["packages"]
    for name, version in declared.items():
        assert re.fullmatch(r"\d+\.\d+\.\d+", version), f"{name} must be pinned exactly, not {version!r}"
        assert locked[f"node_modules/{name}"]["version"] == version
    return declared


@pytest.fixture(scope="module")
def stripper() -> Iterator[TypeStripper]:
    """One stripper for the module (its context takes about 0.7 s to make)."""
    stripper = TypeStripper()
    yield stripper
    asyncio.run(stripper.aclose())


async def test_the_committed_bundle_is_the_pinned_strippers(stripper: TypeStripper) -> None:
    assert await stripper.versions() == pinned()


def test_the_bundle_header_and_notice_name_every_bundled_package_at_its_locked_version() -> None:
    locked = json.loads((RECIPE / "package-lock.json").read_text())["packages"]
    header = (BUNDLE / "strippers.js").read_text(encoding="utf-8").split("\n", 1)[0]
    built_from = re.search(r"from (.*)\. Licences", header)
    assert built_from is not None, header
    bundled = dict(entry.rsplit("@", 1) for entry in built_from.group(1).split(", "))
    assert set(pinned()) <= set(bundled)
    notice = (BUNDLE / "NOTICE.md").read_text(encoding="utf-8")
    for name, version in bundled.items():
        assert locked[f"node_modules/{name}"]["version"] == version
        assert f"\n## {name} {version}\n" in notice  # its licence text follows


# Valid JavaScript of every kind a model writes: it must parse, so it is never stripped.
MODERN_JAVASCRIPT = [
    "const a = b ? c : d;",
    "x < y > z;",
    "f < T > (x);",
    "outer: for (const i of [1]) { continue outer; }",
    "const o = { a: 1, b: { c: 2 } };",
    "class A { static { this.x = 1; } #p = 1; has(o) { return #p in o; } }",
    "let r = /[\\p{L}--[a-z]]/v;",
    "a ??= b; a ||= c; a &&= d;",
    "const n = 1_000_000n;",
    "const t = tag`x${1}y`;",
    "for await (const x of xs) {}",
    "x = a?.b?.[c]?.(d);",
    "const {a, ...rest} = obj;",
    "const f = async function* () { yield* g(); };",
    "o = { get a() { return 1; }, set a(v) {}, [k]: 1 };",
    "let async = 1; async\nfunction f() {}",
    "const x = await tools.list({});\nreturn;",
    "import x, * as y from 'tools.js';\nexport const z = 1;",
    "const v = import('tools.js');",
    "class B extends (A) { constructor() { super(); } }",
    "const type = 1, declare = 2, as = 3;",
]

TYPESCRIPT = [
    "const a: number = 1;",
    "interface A { x: number }",
    "type A = 1;",
    "let x = y as any;",
    "const c = cs.find(x => x)!;",
    "enum E { A }",
    "function f(a?: number) {}",
    "import type { A } from 'tools.js';",
    "declare const z: number;",
    "class A { private x = 1; }",
    "try {} catch (e: unknown) {}",
    "let v = f satisfies F;",
    "let f = <T,>(x: T) => x;",
]


@pytest.mark.parametrize("code", MODERN_JAVASCRIPT)
def test_javascript_parses_as_javascript(code: str) -> None:
    assert parses_as_javascript(code)


@pytest.mark.parametrize("code", TYPESCRIPT)
def test_typescript_does_not_parse_as_javascript(code: str) -> None:
    assert not parses_as_javascript(code)


async def test_erasable_types_become_spaces_so_every_position_stays(stripper: TypeStripper) -> None:
    code = "const a: number = 1;\ninterface I {\n  x: string\n}\nfunction f<T>(x: T, y?: T): T { return x as T; }\n"
    stripped = await stripper.strip_types(code)
    assert stripped == "const a         = 1;\n             \n           \n \nfunction f   (x   , y    )    { return x     ; }\n"
    assert len(stripped) == len(code)


async def test_a_script_typescript_does_not_parse_either_is_returned_as_written(stripper: TypeStripper) -> None:
    for code in ["const x: = 1;", "function f(a: number { }", "namespace N { export const a = 1; }"]:
        assert await stripper.strip_types(code) == code


async def test_a_closed_stripper_refuses_with_an_engine_error() -> None:
    stripper = TypeStripper()
    assert await stripper.strip_types("const a: number = 1;") == "const a         = 1;"
    await stripper.aclose()
    with pytest.raises(EngineError, match="closed"):
        await stripper.strip_types("const a: number = 1;")


async def test_a_stripper_that_fails_on_a_script_says_so_as_an_engine_error(stripper: TypeStripper) -> None:
    # Deep enough to overflow the stack of TypeScript's recursive-descent parser.
    code = "let a: number = " + "(" * 100_000 + "1" + ")" * 100_000 + ";"
    with pytest.raises(EngineError, match="could not be removed"):
        await stripper.strip_types(code)
