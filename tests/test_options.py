"""Session options: `Limits` and `Defaults` groups, the texts that quote them, and the typed
`CodeModeOptions` the wrappers take (a typo fails when the wrapper is built)."""

from __future__ import annotations

import inspect
import json
from typing import Any

import pytest

from codemode import CodeMode, CodeModeOptions, Defaults, Limits, UsageError
from codemode.formats import Api
from codemode.mcp_server import create_server, http_app
from codemode.testing import FakeEngine

APIS: list[Api] = ["responses", "chat", "anthropic", "mcp"]


def test_options_name_every_keyword_of_code_mode() -> None:
    keywords = set(inspect.signature(CodeMode).parameters) - {"tools"}
    assert set(CodeModeOptions.__optional_keys__) == keywords
    assert len(keywords) <= 12


@pytest.mark.parametrize("api", APIS)
async def test_every_spec_quotes_the_sessions_defaults(api: Api) -> None:
    defaults = Defaults(exec_yield_time_ms=3000, wait_yield_time_ms=2000, max_output_tokens=500)
    async with CodeMode(engine=FakeEngine(), defaults=defaults) as cm:
        exec_spec, wait_spec = cm.tool_specs(api)
    wait_text = json.dumps(wait_spec)
    assert "Defaults to 2000 ms." in wait_text and "Defaults to 500 tokens." in wait_text
    assert "Defaults to 10000" not in json.dumps([exec_spec, wait_spec])
    assert "Defaults to 3000 ms." in json.dumps(exec_spec)


async def test_limits_and_defaults_are_read_only() -> None:
    limits, defaults = Limits(max_concurrent_cells=3), Defaults(max_output_tokens=7)
    cm = CodeMode(engine=FakeEngine(), limits=limits, defaults=defaults)
    assert (cm.limits, cm.defaults) == (limits, defaults)
    with pytest.raises(AttributeError):
        cm.limits = Limits()  # type: ignore[misc]
    with pytest.raises(AttributeError):
        cm.defaults.max_output_tokens = 1  # type: ignore[misc]


@pytest.mark.parametrize("bad", [{"exec_yield_time_ms": -1}, {"max_output_tokens": 1.5}, {"max_yield_time_ms": True}])
def test_bad_defaults_are_a_usage_error(bad: dict[str, Any]) -> None:
    with pytest.raises(UsageError, match=next(iter(bad))):
        Defaults(**bad)


def test_a_grouped_option_must_be_its_group() -> None:
    with pytest.raises(UsageError, match=r"`limits` must be a codemode\.Limits"):
        CodeMode(limits={"max_concurrent_cells": 3})  # type: ignore[arg-type]


@pytest.mark.parametrize("build", [create_server, http_app])
def test_server_entry_points_refuse_a_typo_when_built(build: Any) -> None:
    with pytest.raises(UsageError, match="`limit` \\(did you mean `limits`\\?\\)"):
        build([], limit=Limits())


def test_server_entry_points_refuse_on_notify() -> None:
    with pytest.raises(UsageError, match="on_notify"):
        create_server([], on_notify=lambda cell_id, text: None)


def test_adapters_refuse_a_typo_when_built() -> None:
    pytest.importorskip("pydantic_ai")
    from codemode.adapters.pydantic_ai import CodeModeToolset

    with pytest.raises(UsageError, match="did you mean `defaults`"):
        CodeModeToolset([], default=Defaults())  # type: ignore[call-arg]
