"""The exec + wait definitions stay flat at any catalog size (issue 21, point 3).

Past the one-line listing's budget, the exec description names each server or API with its
tool count and a few representative tools, and says how to find the rest; every API format's
definitions then stay under about 4,000 tokens however many tools there are, and the text is
the same every turn (and every session) for the same tools.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from codemode import Defaults, Tool
from codemode._describe import LISTING_BUDGET_TOKENS, ToolCatalog, nested_tool_table
from codemode._protocol.tokens import approx_tokens
from codemode.formats import Api, described_tool_specs, exec_input
from codemode.tools.openapi import OpenApiToolset
from conftest import MakeCodeMode

GENERATED = Path(__file__).parent / "openapi_servers/node_modules/@octokit/openapi/generated"
APIS: tuple[Api, ...] = ("responses", "chat", "anthropic", "mcp")
BOUND_TOKENS = 4_000
BUDGET_TOKENS = 2_000  # the default description budget


def generated_tools(count: int, servers: int) -> list[Tool]:
    """`count` tools spread over `servers` namespaces, each with a schema and a real description."""

    def handler(arguments: Any) -> Any:
        return arguments

    schema = {"type": "object", "properties": {"id": {"type": "string", "description": "Which record."}}}
    return [
        Tool(
            name=f"{('list', 'get', 'create', 'delete')[i % 4]}_record_{i}",
            description=f"Works on record kind {i} of server {i % servers}. Longer text follows here.",
            handler=handler,
            input_schema=schema,
            namespace=f"server{i % servers:05d}",
        )
        for i in range(count)
    ]


def definitions_tokens(catalog: ToolCatalog, api: Api) -> int:
    description = catalog.exec_description(
        code_mode_only=True, defaults=Defaults(), input_format=exec_input(api)
    )
    return approx_tokens(json.dumps(described_tool_specs(description, api, Defaults())))


@pytest.fixture(scope="module")
def two_github_apis() -> list[Tool]:
    """GitHub.com and GitHub Enterprise Server 3.19: 2,000+ real operations."""
    if not GENERATED.exists():
        pytest.fail("npm test packages missing: run `npm ci --prefix tests/openapi_servers`")
    apis = {
        "github": {"spec": str(GENERATED / "api.github.com.json"), "base_url": "http://127.0.0.1:9"},
        "ghes": {"spec": str(GENERATED / "ghes-3.19.json"), "base_url": "http://127.0.0.1:9"},
    }
    return OpenApiToolset(apis).tools


@pytest.mark.slow
def test_two_thousand_operations_stay_under_the_bound_in_every_format(two_github_apis: list[Tool]) -> None:
    assert len(two_github_apis) >= 2_000
    catalog = ToolCatalog(nested_tool_table(two_github_apis), budget_tokens=BUDGET_TOKENS)
    sizes = {api: definitions_tokens(catalog, api) for api in APIS}
    assert all(size < BOUND_TOKENS for size in sizes.values()), sizes
    description = catalog.exec_description(code_mode_only=True, defaults=Defaults())
    summary = description[description.index("Servers and APIs:\n") :]
    lines = summary.splitlines()[1:]
    assert [line.split(":")[0] for line in lines] == ["- `ghes`", "- `github`"]
    github = lines[1]
    assert re.fullmatch(r"- `github`: \d+ tools, e\.g\. (`github__\w+`, ){4}`github__\w+`", github), github
    assert "`github__repos_get`" in github and "`github__issues_get`" in github
    assert "find the others with `tools_search`" in description and "`tools_describe(name: string)`" in description
    # the same text every turn, and in another session over the same tools
    again = ToolCatalog(nested_tool_table(two_github_apis), budget_tokens=BUDGET_TOKENS)
    assert again.exec_description(code_mode_only=True, defaults=Defaults()) == description
    assert catalog.exec_description(code_mode_only=True, defaults=Defaults()) is description


@pytest.mark.slow
async def test_the_description_is_flat_from_two_hundred_to_five_thousand_tools(make_cm: MakeCodeMode) -> None:
    sizes: dict[int, int] = {}
    for count in (200, 2_000, 5_000):
        cm = await make_cm(tools=generated_tools(count, servers=8))
        await cm.start()
        specs = cm.tool_specs("chat")
        sizes[count] = approx_tokens(json.dumps(specs))
        assert cm.tool_specs("chat") == specs
        assert f"- `server00000`: {count // 8} tools, e.g. `server00000__" in cm.exec_description()
    assert max(sizes.values()) < BOUND_TOKENS
    assert max(sizes.values()) - min(sizes.values()) < 50, sizes  # only the counts' digits differ


@pytest.mark.slow
def test_thousands_of_servers_are_cut_to_the_listing_budget_and_counted() -> None:
    tools = generated_tools(3_000, servers=3_000)
    catalog = ToolCatalog(nested_tool_table(tools), budget_tokens=BUDGET_TOKENS)
    sizes = {api: definitions_tokens(catalog, api) for api in APIS}
    assert all(size < BOUND_TOKENS for size in sizes.values()), sizes
    description = catalog.exec_description(code_mode_only=True, defaults=Defaults())
    summary = description[description.index("Servers and APIs:\n") :]
    assert approx_tokens(summary) <= LISTING_BUDGET_TOKENS
    lines = summary.splitlines()[1:]
    assert lines[0] == "- `server00000`: 1 tool"  # no room for names: counts only
    named = len(lines) - 1
    assert lines[-1] == f"- and {3_000 - named} more servers with {3_000 - named} tools"


async def test_a_listing_within_its_budget_stays_a_listing(make_cm: MakeCodeMode) -> None:
    cm = await make_cm(tools=generated_tools(40, servers=2), description_budget_tokens=100)
    await cm.start()
    description = cm.exec_description()
    assert "## server00000 (20 tools)\n- `server00000__create_record_10`: Works on record kind 10 of server 0.\n" in description
    assert "Servers and APIs:" not in description and "each is listed below by name" in description
