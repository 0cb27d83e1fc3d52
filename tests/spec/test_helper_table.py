"""The helper table (`codemode._protocol.helpers`) against what V8 installs and the model reads.

The globals a script finds, the `@openai/code_mode` exports, and the `Global helpers:` section
of the `exec` description must name the same helpers; the prelude itself refuses to start when
the table and what it installs differ.
"""

from __future__ import annotations

import asyncio
import json
import re
from importlib import resources
from typing import Any

import pytest

from codemode import CodeMode
from codemode._describe.descriptions import ExecInput, exec_description
from codemode._engine.miniracer import _compat
from codemode._imports import CODE_MODE_MODULES, module_exports
from codemode._protocol.config import Defaults
from codemode._protocol.helpers import HELPERS, MODULE_EXPORTS, PRELUDE_HELPERS

from ._support import texts

_HELPER_LINE = re.compile(r"^- `(?P<name>[A-Za-z_$][\w$]*)")


async def _bare_context_eval(code: str) -> Any:
    """Evaluate `code` in a fresh V8 context that has no prelude."""
    loop = asyncio.get_running_loop()
    context = await loop.run_in_executor(None, lambda: _compat.V8Context(loop, lambda: None))
    try:
        return await loop.run_in_executor(None, context.eval_blocking, code)
    finally:
        await loop.run_in_executor(None, context.free)


def _prelude(helpers: list[str], exports: list[str]) -> str:
    setup = {"ring_bytes": 1 << 12, "max_buffered_chars": 1 << 12, "helpers": helpers, "module_exports": exports}
    source = resources.files("codemode._engine").joinpath("prelude.js").read_text(encoding="utf-8")
    return source.replace("__CODEMODE_SETUP__", json.dumps(setup))


def _described_helpers(description: str) -> list[str]:
    section = description.split("\nGlobal helpers:\n", 1)[1].split("\n\n", 1)[0]
    names = [match["name"] for line in section.splitlines() if (match := _HELPER_LINE.match(line))]
    assert len(names) == len(section.splitlines())  # every line of the section is one helper
    return names


async def test_helper_table_names_every_installed_global(cm: CodeMode) -> None:
    result = await cm.exec("text(JSON.stringify(Object.getOwnPropertyNames(globalThis)));")
    in_session = set(json.loads(texts(result)[0]))
    builtin = set(json.loads(await _bare_context_eval("JSON.stringify(Object.getOwnPropertyNames(globalThis))")))
    assert in_session - builtin == {helper.name for helper in HELPERS} | {"tools"}


async def test_helper_table_matches_the_module_exports(cm: CodeMode) -> None:
    code = (
        'import * as m from "@openai/code_mode";\n'
        "text(JSON.stringify(Object.keys(m).sort()));\n"
        "text(JSON.stringify(Object.keys(m).filter((name) => m[name] !== globalThis[name])));"
    )
    exports, not_the_global = (json.loads(t) for t in texts(await cm.exec(code)))
    assert set(exports) == MODULE_EXPORTS
    assert not_the_global == []
    for specifier in CODE_MODE_MODULES:
        assert module_exports(set())[specifier] == MODULE_EXPORTS


async def test_helper_table_has_no_undescribed_aliases(cm: CodeMode) -> None:
    result = await cm.exec('import { output_text } from "@openai/code_mode";\noutput_text("hi");')
    assert result.error == (
        "SyntaxError: The requested module '@openai/code_mode' does not provide an export named 'output_text'"
    )


@pytest.mark.parametrize("input_format", ["freeform", "json"])
def test_helper_table_is_the_description_section(input_format: ExecInput) -> None:
    description = exec_description([], code_mode_only=True, defaults=Defaults(), input_format=input_format)
    assert _described_helpers(description) == [helper.name for helper in HELPERS]
    for helper in HELPERS:
        assert f"\n- `{helper.signature}`: {helper.description}\n" in description + "\n"
        assert helper.signature.startswith(helper.name)


def test_helper_table_exports_only_prelude_helpers() -> None:
    assert MODULE_EXPORTS <= set(PRELUDE_HELPERS)
    assert len({helper.name for helper in HELPERS}) == len(HELPERS)


async def test_helper_table_prelude_starts_with_the_real_table() -> None:
    ring = await _bare_context_eval(_prelude(list(PRELUDE_HELPERS), sorted(MODULE_EXPORTS)))
    assert isinstance(ring, memoryview)


@pytest.mark.parametrize(
    ("helpers", "exports", "message"),
    [
        ([*PRELUDE_HELPERS, "output_text"], [], 'listed but not installed ["output_text"]'),
        (
            [name for name in PRELUDE_HELPERS if name != "generatedImage"],
            [],
            'installed but not listed ["generatedImage"]',
        ),
        (list(PRELUDE_HELPERS), ["output_image"], 'exported but not installed ["output_image"]'),
    ],
)
async def test_helper_table_prelude_refuses_a_different_table(
    helpers: list[str], exports: list[str], message: str
) -> None:
    with pytest.raises(_compat.JSEvalException, match=re.escape(message)):
        await _bare_context_eval(_prelude(helpers, exports))
