"""Large catalogs: the description budget, and `tools_search` / `tools_describe` / closest names
in the sandbox, on real catalogs (the GitHub REST spec from npm `@octokit/openapi`, 1,000+
operations, and the npm reference MCP server `server-everything`) and the real engine.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from codemode import Defaults, ExecResult, SyncCodeMode, TextItem
from codemode._describe import exec_description, nested_tool_table
from codemode._output import approx_tokens
from codemode.formats import tool_specs
from conftest import MakeCodeMode

TESTS = Path(__file__).parent
GITHUB_SPEC = TESTS / "openapi_servers/node_modules/@octokit/openapi/generated/api.github.com.json"
EVERYTHING_BIN = TESTS / "mcp_servers/node_modules/.bin/mcp-server-everything"
UNUSED_URL = "http://127.0.0.1:9"  # these tests never send a request


def add(a: int, b: int) -> int:
    """Add two integers. The sum is exact."""
    return a + b


def shout(text: str) -> str:
    """Upper-case a text."""
    return text.upper()


def texts(result: ExecResult) -> list[str]:
    assert (result.status, result.error) == ("completed", None)
    return [item.text for item in result.items if isinstance(item, TextItem)]


@pytest.fixture(scope="module")
def github() -> Iterator[SyncCodeMode]:
    """One session over the whole GitHub REST API (plus `add`), at the default budget."""
    if not GITHUB_SPEC.exists():
        pytest.fail("npm test packages missing: run `npm ci --prefix tests/openapi_servers`")
    with SyncCodeMode(
        tools=[add], openapi={"github": {"spec": str(GITHUB_SPEC), "base_url": UNUSED_URL}}
    ) as session:
        yield session


def run(session: SyncCodeMode, code: str) -> list[str]:
    return texts(session.exec(code))


# -- the budget switch ---------------------------------------------------------------------------


async def test_below_the_budget_the_description_is_exactly_the_declaring_one(make_cm: MakeCodeMode) -> None:
    cm = await make_cm(tools=[add, shout])
    await cm.start()
    tools = [entry.tool for entry in cm.tools]
    declaring = exec_description(nested_tool_table(tools), code_mode_only=True, defaults=Defaults())
    assert cm.exec_description() == declaring
    assert "### `add`" in declaring and "Finding tools" not in declaring
    for api in ("responses", "chat", "anthropic", "mcp"):
        assert cm.tool_specs(api) == tool_specs(tools, api, code_mode_only=True, defaults=Defaults())
    out = texts(
        await cm.exec("text(typeof tools_search); text(typeof tools_describe); text(typeof tools.nope)")
    )
    assert out == ["undefined", "undefined", "undefined"]


async def test_over_the_budget_each_tool_is_one_line_and_the_helpers_are_described(
    make_cm: MakeCodeMode,
) -> None:
    declaring = await make_cm(tools=[add, shout])
    compact = await make_cm(tools=[add, shout], description_budget_tokens=10)
    await declaring.start()
    await compact.start()
    full, short = declaring.exec_description(), compact.exec_description()
    head = full[: full.index("### `add`")]
    assert short.startswith(head)  # usage and helpers unchanged
    assert (
        short[len(head) :].split("\n\n", 1)[1] == "- `add`: Add two integers.\n- `shout`: Upper-case a text."
    )
    assert "exec tool declaration" not in short
    for phrase in ("Finding tools:", "There are 2 nested tools", "`tools_search(query: string, options?: { limit?: number })`",
                   "`tools_describe(name: string)`", "rejects with the closest existing names"):  # fmt: skip
        assert phrase in short
    assert compact.exec_description() == short  # the same text every turn
    assert (
        compact.tool_specs("chat")[0]["function"]["description"]
        == compact.tool_specs("chat")[0]["function"]["description"]
    )
    out = texts(
        await compact.exec("text(typeof tools_search); text(typeof tools_describe); text(ALL_TOOLS.length)")
    )
    assert out == ["function", "function", "2"]


async def test_over_the_budget_without_code_mode_only_the_helpers_are_still_described(
    make_cm: MakeCodeMode,
) -> None:
    cm = await make_cm(tools=[add, shout], description_budget_tokens=10)
    await cm.start()
    description = cm.exec_description(code_mode_only=False)
    assert "Finding tools:" in description and "they are on `tools` and in `ALL_TOOLS`" in description
    assert "- `add`" not in description and "### `add`" not in description


async def test_no_budget_always_declares(make_cm: MakeCodeMode) -> None:
    cm = await make_cm(tools=[add], description_budget_tokens=None)
    await cm.start()
    assert "### `add`" in cm.exec_description()


def test_a_thousand_operations_exceed_the_default_budget(github: SyncCodeMode) -> None:
    session = github
    description = session.exec_description()
    count = len(session.tools)
    assert count > 1000
    assert f"There are {count} nested tools" in description
    # past the one-line listing's budget too: each server named with its count and a few tools
    summary = description[description.index("Servers and APIs:\n") :]  # tools of no server first
    assert summary.startswith(
        f"Servers and APIs:\n- no server: 1 tool, e.g. `add`\n- `github`: {count - 1} tools, e.g. "
        "`github__repos_get`, `github__actions_get_artifact`, "
    )
    assert "- `github__issues_create`: Create an issue." not in description
    assert "exec tool declaration" not in description
    declaring = exec_description(nested_tool_table([t.tool for t in session.tools]), code_mode_only=True,
                                 defaults=session.defaults)  # fmt: skip
    assert approx_tokens(description) * 10 < approx_tokens(declaring)


@pytest.mark.integration
async def test_mcp_tools_are_grouped_by_server(make_cm: MakeCodeMode) -> None:
    config = {"mcpServers": {"everything": {"command": str(EVERYTHING_BIN), "args": ["stdio"]}}}
    cm = await make_cm(tools=[add], mcp_servers=config, description_budget_tokens=0)
    await cm.start()
    listing = cm.exec_description().split("\n\n")
    group = next(section for section in listing if section.startswith("## mcp__everything ("))
    lines = group.splitlines()
    assert lines[0] == f"## mcp__everything ({len(lines) - 1} tools)"
    assert all(line.startswith("- `mcp__everything__") for line in lines[1:])
    out = texts(
        await cm.exec(
            'text(JSON.stringify((await tools_search("sum of two numbers", {limit: 3})).map((t) => t.name)))'
        )
    )
    assert "mcp__everything__get_sum" in json.loads(out[0])


# -- search ----------------------------------------------------------------------------------------


def test_search_ranks_issues_create_first_three_for_create_an_issue(github: SyncCodeMode) -> None:
    out = run(github, 'text(JSON.stringify(await tools_search("create an issue", { limit: 3 })))')
    hits = json.loads(out[0])
    assert len(hits) == 3 and all(set(hit) == {"name", "description"} for hit in hits)
    assert "github__issues_create" in [hit["name"] for hit in hits]
    assert {"name": "github__issues_create", "description": "Create an issue."} in hits


def test_search_defaults_to_eight_and_finds_by_parameter_and_description_words(github: SyncCodeMode) -> None:
    out = run(
        github,
        'text((await tools_search("merge a pull request")).length);\n'
        'text((await tools_search("merge a pull request"))[0].name);\n'
        'text(JSON.stringify(await tools_search("zzzz qqqq")));\n'
        'text(JSON.stringify((await tools_search("branch protection", { limit: 50 })).map((t) => t.name)));',
    )
    assert out[:3] == ["8", "github__pulls_merge", "[]"]
    assert "github__repos_delete_branch_protection" in json.loads(out[3])


def test_search_rejects_bad_arguments(github: SyncCodeMode) -> None:
    out = run(
        github,
        "for (const call of [() => tools_search(), () => tools_search(5), () => tools_search('x', { limit: 0 }),\n"
        "                    () => tools_search('x', { limit: 'all' })]) {\n"
        "  try { await call(); text('resolved'); } catch (e) { text(String(e)); }\n"
        "}",
    )
    assert out[:2] == ['tools_search expects a query string, like tools_search("create issue")'] * 2
    assert out[2:] == ["tools_search options must be { limit?: number } with a limit from 1 to 50"] * 2


# -- describe ----------------------------------------------------------------------------------------


def test_describe_returns_the_declaration_of_all_tools(github: SyncCodeMode) -> None:
    out = run(
        github,
        'const text_ = await tools_describe("github__issues_create");\n'
        "text(text_);\n"
        'text(String(text_ === ALL_TOOLS.find((t) => t.name === "github__issues_create").description));',
    )
    declaration = out[0]
    assert "Create an issue." in declaration
    assert "HTTP: `POST /repos/{owner}/{repo}/issues`" in declaration
    assert "declare const tools: { github__issues_create(args: {" in declaration
    for field in ("  owner: string;", "  repo: string;", "  title: string | number;", "  body?: string;"):
        assert field in declaration
    result_type = declaration[declaration.index("}): Promise<{") :]  # the typed 201 response
    assert "  // Title of the issue\n  title: string;" in result_type and "  number: number;" in result_type
    assert out[1] == "true"


def test_describe_of_a_missing_tool_names_the_closest(github: SyncCodeMode) -> None:
    out = run(github, 'try { await tools_describe("github__repo_get"); } catch (e) { text(String(e)); }')
    assert out[0].startswith(
        "tool `github__repo_get` is not enabled in exec; the closest names are: `github__repos_get`"
    )


# -- names that do not exist -------------------------------------------------------------------------


def test_a_misspelt_tool_rejects_with_the_closest_names(github: SyncCodeMode) -> None:
    out = run(
        github,
        "try { await tools.github__issue_create({ owner: 'o', repo: 'r', title: 't' }); } catch (e) { text(typeof e); text(e); }\n"
        "try { await tools.frobnicate_everything(); } catch (e) { text(e); }\n"
        "text(typeof tools.github__issues_create); text(String('github__nope' in tools));\n"
        "text(Object.keys(tools).length === ALL_TOOLS.length); text(ALL_TOOLS.some((t) => t.name.includes(':')));\n"
        "text(String(await tools.add({ a: 2, b: 3 })));",
    )
    assert out[0] == "string"
    assert out[1].startswith(
        "tool `github__issue_create` is not enabled in exec; the closest names are: `github__issues_create`"
    )
    assert (
        out[2] == "tool `frobnicate_everything` is not enabled in exec; find tools with `tools_search(query)`"
    )
    assert out[3:] == ["function", "false", "true", "false", "5"]


def test_modules_and_awaiting_tools_still_work_over_the_budget(github: SyncCodeMode) -> None:
    out = run(
        github,
        'import { add, ALL_TOOLS as listed } from "tools.js";\n'
        "const t = await tools;\n"  # `then` is not answered as a tool
        "text(String(await add({ a: 1, b: 1 }))); text(String(t === tools)); text(String(listed.length === ALL_TOOLS.length));\n"
        "text(JSON.stringify(tools));",  # nor `toJSON`: functions are left out as usual
    )
    assert out == ["2", "true", "true", "{}"]
