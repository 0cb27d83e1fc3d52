"""What the model reads about `exec` and `wait`, and the script's `ALL_TOOLS` (spec 1.2-1.5, 1.8).

The `exec` description is sections joined by blank lines:
1. the usage text and the list of global helpers (generated from `_protocol/helpers.py`);
2. guidance on deferred tools, when any nested tool is deferred;
and, only in code-mode-only mode (where nested tools are not offered to the model directly):
3. `Shared MCP Types:`, once, when any nested tool (deferred ones included) returns an MCP result;
4. the reference of non-deferred nested tools, grouped by namespace under `## <namespace>`.
When a description budget is given and the reference would exceed it, section 4 becomes the
discovery helpers (`tools_search`, `tools_describe`) and a one-line entry per tool, grouped by
server; within the budget the text is exactly the one above. When even that listing is over
`LISTING_BUDGET_TOKENS`, each server or API is named instead with its tool count and a few
representative tools, cut to fit the same bound: the description stays flat at any catalog
size (exec + wait about 3,600 tokens at most), and scripts find the rest with `tools_search`.

Invariant: pure functions of their arguments.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Literal, TypeAlias

from codemode._describe.mcp_types import is_mcp_output_schema, shared_mcp_types_section
from codemode._describe.names import DESCRIBE_HELPER_NAME, SEARCH_HELPER_NAME, NestedTool, script_namespace
from codemode._protocol.config import Defaults
from codemode._protocol.helpers import HELPERS
from codemode._protocol.tokens import approx_tokens

__all__ = [
    "DEFAULT_SEARCH_LIMIT",
    "LISTING_BUDGET_TOKENS",
    "ExecInput",
    "all_tools_entries",
    "exceeds_budget",
    "exec_description",
    "first_sentence",
    "wait_description",
    "wait_parameters",
]

ExecInput: TypeAlias = Literal["freeform", "json"]
"""How `exec` receives the script: raw source text, or a JSON `code` argument."""

DEFAULT_SEARCH_LIMIT = 8
LISTING_BUDGET_TOKENS = 1_500
"""Estimated tokens the one-line-per-tool listing may take; over it, servers are summarized."""
_REPRESENTATIVES = (5, 3, 1, 0)  # tools named per server, tried in turn until the summary fits
_SUMMARY_HEADING = "Servers and APIs:"
_SENTENCE_END = re.compile(r"(?<=[.!?])\s")
_MAX_SENTENCE_CHARS = 120

_PRAGMA_EXAMPLE = '`// @exec: {"yield_time_ms": 10000, "max_output_tokens": 1000}`'

_INPUT_BULLETS: dict[ExecInput, str] = {
    "freeform": (
        "- Send raw JavaScript source text, not JSON, a quoted string, or a markdown code fence.\n"
        f"- The input may optionally start with a first-line pragma such as {_PRAGMA_EXAMPLE}."
    ),
    "json": (
        "- `code` holds raw JavaScript source text: not JSON, not a quoted string, not a "
        "markdown code fence.\n"
        f"- `code` may optionally start with a first-line pragma such as {_PRAGMA_EXAMPLE}."
    ),
}

_HELPERS = "Global helpers:\n" + "\n".join(f"- `{helper.signature}`: {helper.description}" for helper in HELPERS)

_DEFERRED_GUIDANCE = (
    "Some deferred nested tools may be omitted from this description. They are still "
    "available on the global `tools` object and listed in `ALL_TOOLS`.\n"
    "To find one, filter `ALL_TOOLS` by `name` and `description`."
)



def exec_description(
    table: Sequence[NestedTool],
    *,
    code_mode_only: bool,
    defaults: Defaults,
    input_format: ExecInput = "freeform",
    notes: Sequence[str] = (),
    budget_tokens: int | None = None,
) -> str:
    """The `exec` tool description.

    Args:
        table: the nested tools, from `nested_tool_table`.
        code_mode_only: True when nested tools are reachable only through `exec`, so the
            description must list them; False when they are also offered directly.
        defaults: the session's defaults, quoted in the text (exec yield time, output budget).
        input_format: "freeform" for a raw-source custom tool, "json" for a `code` argument.
        notes: host paragraphs appended last (e.g. MCP servers that failed to start).
        budget_tokens: estimated tokens the tool reference may take; over it, tools are listed
            one line each with the discovery helpers described instead. None: no budget.
    """
    sections = [_usage(defaults, input_format), _HELPERS]
    if any(nested.tool.deferred for nested in table):
        sections.append(_DEFERRED_GUIDANCE)
    listed = _listed(table)
    reference = _tool_reference(listed, _namespace_descriptions(table))
    compact = _over_budget(reference, budget_tokens)
    listing = ""
    if compact and code_mode_only:
        listing = _one_line_listing(listed)
        summarized = _over_budget(listing, LISTING_BUDGET_TOKENS)
        if summarized:
            listing = _server_summary(listed, LISTING_BUDGET_TOKENS)
        sections.append(_discovery_guidance(len(table), "summary" if summarized else "listing"))
    elif compact:
        sections.append(_discovery_guidance(len(table), "elsewhere"))
    if not code_mode_only:
        return "\n\n".join([*sections, *notes])
    if any(is_mcp_output_schema(nested.tool.output_schema) for nested in table):
        sections.append(shared_mcp_types_section())
    sections.append(listing if compact else reference)
    return "\n\n".join([section for section in sections if section] + list(notes))


def exceeds_budget(table: Sequence[NestedTool], budget_tokens: int | None) -> bool:
    """Whether the reference of `table`'s listed tools is over `budget_tokens` (None: never)."""
    return budget_tokens is not None and _over_budget(
        _tool_reference(_listed(table), _namespace_descriptions(table)), budget_tokens
    )


def first_sentence(text: str) -> str:
    """The first sentence of a tool description's first non-blank line, at most 120 characters."""
    line = next((line.strip() for line in text.splitlines() if line.strip()), "")
    end = _SENTENCE_END.search(line)
    if end is not None:
        line = line[: end.start()]
    if len(line) > _MAX_SENTENCE_CHARS:
        line = line[: _MAX_SENTENCE_CHARS - 1].rstrip() + "…"
    return line


def wait_description(defaults: Defaults) -> str:
    """The `wait` tool description, quoting the session's wait defaults."""
    return f"""\
Waits on a yielded `exec` cell and returns new output or completion.
- Use `wait` only after `exec` returned `Script running with cell ID ...`.
- `cell_id` names the running `exec` cell to resume.
- `yield_time_ms` is how long to wait for more output before yielding again. Defaults to {defaults.wait_yield_time_ms} ms.
- `max_tokens` bounds the new output this call returns. Defaults to {defaults.max_output_tokens} tokens.
- `terminate: true` stops the running cell; false or omitted waits for output.
- `wait` returns only the output produced since the last yield, or the cell's final completion or termination result.
- A cell that is still running may yield again with the same `cell_id`.
- A cell that has already finished returns its completed result, and the cell is closed."""


def wait_parameters(defaults: Defaults) -> dict[str, Any]:
    """The JSON Schema of `wait`'s arguments, quoting the session's defaults (a fresh dict each call)."""
    return {
        "type": "object",
        "properties": {
            "cell_id": {"type": "string", "description": "Identifier of the running exec cell."},
            "max_tokens": {
                "type": "number",
                "description": "Output token budget for this wait call. Defaults to "
                f"{defaults.max_output_tokens} tokens.",
            },
            "terminate": {
                "type": "boolean",
                "description": "True stops the running exec cell; false or omitted waits for output.",
            },
            "yield_time_ms": {
                "type": "number",
                "description": "Wait before yielding more output. Defaults to "
                f"{defaults.wait_yield_time_ms} ms.",
            },
        },
        "required": ["cell_id"],
        "additionalProperties": False,
    }


def all_tools_entries(table: Sequence[NestedTool]) -> list[dict[str, str]]:
    """The script's `ALL_TOOLS`: `{name, description}` per nested tool, deferred ones included.

    A tool in a described namespace gets that description first, then a blank line.
    """
    namespaces = _namespace_descriptions(table)
    entries: list[dict[str, str]] = []
    for nested in table:
        namespace = _namespace(nested)
        guidance = namespaces.get(namespace) if namespace is not None else None
        prefix = f"{guidance}\n\n" if guidance else ""
        entries.append({"name": nested.global_name, "description": prefix + nested.description})
    return entries


def _listed(table: Sequence[NestedTool]) -> list[NestedTool]:
    """The tools the description names: deferred ones are only on `tools` and in `ALL_TOOLS`."""
    return [nested for nested in table if not nested.tool.deferred]


def _over_budget(reference: str, budget_tokens: int | None) -> bool:
    return budget_tokens is not None and approx_tokens(reference) > budget_tokens


_WHERE: dict[str, str] = {
    "listing": "each is listed below by name and first sentence only, grouped by server",
    "summary": "below, each server or API is named with its tool count and a few of its tools; "
    f"find the others with `{SEARCH_HELPER_NAME}`",
    "elsewhere": "they are on `tools` and in `ALL_TOOLS`",
}


def _discovery_guidance(count: int, where: Literal["listing", "summary", "elsewhere"]) -> str:
    return f"""\
Finding tools:
- There are {count} nested tools, too many to declare here: {_WHERE[where]}. Read a tool's declaration before calling it.
- `{SEARCH_HELPER_NAME}(query: string, options?: {{ limit?: number }})`: Resolves to the nested tools that best match `query` (words of their names, descriptions and parameter names), best first, as `{{ name, description }}` entries with a one-sentence description. `limit` defaults to {DEFAULT_SEARCH_LIMIT}.
- `{DESCRIBE_HELPER_NAME}(name: string)`: Resolves to the description and TypeScript declaration of the nested tool `name` (the text of its `ALL_TOOLS` entry).
- Calling a nested tool that does not exist rejects with the closest existing names."""


def _one_line_listing(listed: Sequence[NestedTool]) -> str:
    groups: dict[str, list[NestedTool]] = {}
    for nested in sorted(listed, key=lambda n: (_server(n), n.code_mode_name)):
        groups.setdefault(_server(nested), []).append(nested)
    sections: list[str] = []
    for server, members in groups.items():
        lines = [f"- `{n.global_name}`: {first_sentence(n.tool.description)}" for n in members]
        if server:
            count = f"{len(members)} tool" + ("" if len(members) == 1 else "s")
            lines.insert(0, f"## {_namespace_title(server)} ({count})")
        sections.append("\n".join(lines))
    return "\n\n".join(sections)


def _server_summary(listed: Sequence[NestedTool], budget_tokens: int) -> str:
    """One line per server or API: its tool count and a few representative tools, with fewer
    tools named, then fewer servers, until the text fits `budget_tokens`."""
    groups: dict[str, list[NestedTool]] = {}
    for nested in listed:
        groups.setdefault(_server(nested), []).append(nested)
    ordered = sorted(groups.items())
    lines: list[str] = []
    for named in _REPRESENTATIVES:
        lines = [_server_line(server, members, named) for server, members in ordered]
        if not _over_budget("\n".join([_SUMMARY_HEADING, *lines]), budget_tokens) or named == 0:
            break
    kept = [_SUMMARY_HEADING]
    for index, line in enumerate(lines):
        after = _more_servers(ordered[index + 1 :])
        if _over_budget("\n".join([*kept, line, after]), budget_tokens):
            kept.append(_more_servers(ordered[index:]))
            break
        kept.append(line)
    return "\n".join(kept)


def _more_servers(rest: Sequence[tuple[str, Sequence[NestedTool]]]) -> str:
    """The line standing for the servers left out ("" when none are)."""
    if not rest:
        return ""
    return f"- and {len(rest)} more servers with {sum(len(members) for _, members in rest)} tools"


def _server_line(server: str, members: Sequence[NestedTool], named: int) -> str:
    """`- github: 1223 tools, e.g. `github__repos_get`, ...`: the shortest name of each of the
    `named` largest areas (a name's first word: `repos`, `issues`, ...)."""
    title = f"`{_namespace_title(server)}`" if server else "no server"
    line = f"- {title}: {len(members)} tool" + ("" if len(members) == 1 else "s")
    areas: dict[str, list[str]] = {}
    for nested in members:
        unqualified = nested.global_name.removeprefix(_namespace_title(server)).lstrip("_")
        areas.setdefault(re.split(r"_+", unqualified, maxsplit=1)[0], []).append(nested.global_name)
    largest = sorted(areas.values(), key=lambda names: (-len(names), min(names)))[:named]
    examples = [min(names, key=lambda name: (len(name), name)) for names in largest]
    return line + (", e.g. " + ", ".join(f"`{name}`" for name in examples) if examples else "")


def _server(nested: NestedTool) -> str:
    """The group a tool is listed under: its namespace, or the qualifier of an already
    qualified name (`mcp__everything` for `mcp__everything__echo`), or "" for plain tools."""
    namespace = _namespace(nested)
    if namespace is not None:
        return namespace
    qualifier, separator, _ = nested.code_mode_name.rpartition("__")
    return qualifier if separator and qualifier else ""


def _usage(defaults: Defaults, input_format: ExecInput) -> str:
    return f"""\
Run JavaScript code to orchestrate and compose tool calls.
- Evaluates the code as an async module in a fresh V8 isolate.
- All nested tools are methods of the global `tools` object, for example `await tools.exec_command(...)`. Tool names are normalized into JavaScript identifiers, for example `await tools.mcp__ologs__get_profile(...)`.
- A nested tool method takes either a string or an object as its argument.
- A nested tool returns either an object or a string, as its description says.
- Runs plain JavaScript: no Node, no file system, no network access, no console.
{_INPUT_BULLETS[input_format]}
- `yield_time_ms` makes `exec` yield early if the script is still running. Defaults to {defaults.exec_yield_time_ms} ms.
- `max_output_tokens` is the token budget for what `exec` returns directly. Defaults to {defaults.max_output_tokens} tokens.
- Once the code has been evaluated the isolate is discarded, and promises that were not awaited are silently dropped."""


def _tool_reference(listed: Sequence[NestedTool], namespaces: dict[str, str]) -> str:
    ordered = sorted(
        listed,
        key=lambda n: (_namespace(n) is not None, _namespace(n) or "", n.tool.name, n.code_mode_name),
    )
    sections: list[str] = []
    current: str | None = None
    for nested in ordered:
        namespace = _namespace(nested)
        if namespace != current:
            current = namespace
            if namespace is not None and namespace in namespaces:
                sections.append(f"## {_namespace_title(namespace)}\n{namespaces[namespace]}")
        heading = f"### `{nested.global_name}`"
        if nested.global_name != nested.code_mode_name:
            heading += f" (`{nested.code_mode_name}`)"
        sections.append(f"{heading}\n{nested.description.strip()}")
    return "\n\n".join(sections)


def _namespace(nested: NestedTool) -> str | None:
    return script_namespace(nested.tool.namespace)


def _namespace_descriptions(table: Sequence[NestedTool]) -> dict[str, str]:
    """Each namespace's description: the first non-blank one its tools carry, trimmed."""
    descriptions: dict[str, str] = {}
    for nested in table:
        namespace = _namespace(nested)
        text = (nested.tool.namespace_description or "").strip()
        if namespace is not None and text:
            descriptions.setdefault(namespace, text)
    return descriptions


def _namespace_title(namespace: str) -> str:
    """`mcp__server__` is titled `mcp__server`: trailing underscores only join names."""
    return namespace.rstrip("_") or namespace
