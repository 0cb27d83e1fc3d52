"""How nested tools are named inside the script, and which of them the script gets (spec 1.7, 1.8).

Invariants:
* Every `NestedTool` has a distinct `global_name`, a valid JavaScript identifier.
* `exec` and `wait` themselves are never nested tools.
* When two tools normalize to the same identifier, the first registered one wins (LATEST).
* `nested_tool_table` returns tools ordered by code-mode name, the order of `ALL_TOOLS`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from codemode._describe.declaration import augmented_description
from codemode._protocol.helpers import HOST_HELPER_PREFIX

if TYPE_CHECKING:
    from codemode.tools._tool import Tool

__all__ = [
    "DESCRIBE_HELPER_NAME",
    "EXEC_TOOL_NAME",
    "HOST_HELPER_PREFIX",
    "SEARCH_HELPER_NAME",
    "WAIT_TOOL_NAME",
    "NestedTool",
    "code_mode_name",
    "nested_tool_table",
    "normalize_identifier",
    "script_namespace",
    "shadowed_tools",
]

EXEC_TOOL_NAME = "exec"
WAIT_TOOL_NAME = "wait"
# The discovery helpers scripts get when the catalog is over the description budget. The names
# live only here: the host hands them to the sandbox as bindings `HOST_HELPER_PREFIX + name`
# (a prefix no tool identifier can have), which the prelude installs as globals of that name.
SEARCH_HELPER_NAME = "tools_search"
DESCRIBE_HELPER_NAME = "tools_describe"
# Namespaces that mean "no namespace" (`functions` is the Responses API's default one).
_DEFAULT_NAMESPACES = frozenset({"", "functions"})


@dataclass(frozen=True)
class NestedTool:
    """A tool as the script sees it.

    Attributes:
        tool: the registered tool.
        global_name: the property on the script's `tools` object.
        code_mode_name: the raw name before normalization (`namespace__name`).
        description: the tool's description plus its `exec tool declaration` block.
    """

    tool: Tool
    global_name: str
    code_mode_name: str
    description: str


def normalize_identifier(name: str) -> str:
    """`name` as a JavaScript identifier: each disallowed character becomes one `_`.

    A leading digit is replaced rather than prefixed (`1a` -> `_a`); "" becomes `_`.
    """
    chars = [
        ch if ch in "_$" or (ch.isascii() and (ch.isalpha() or (i > 0 and ch.isdigit()))) else "_"
        for i, ch in enumerate(name)
    ]
    return "".join(chars) or "_"


def script_namespace(namespace: str | None) -> str | None:
    """The namespace that shows in script names: None for none or a default one."""
    return None if namespace is None or namespace in _DEFAULT_NAMESPACES else namespace


def code_mode_name(tool_name: str, namespace: str | None) -> str:
    """The raw script name of a tool: `namespace__name`, or plain concatenation when the
    namespace already ends in `_` (or the name starts with one), or the bare name."""
    namespace = script_namespace(namespace)
    if namespace is None:
        return tool_name
    if namespace.endswith("_") or tool_name.startswith("_"):
        return f"{namespace}{tool_name}"
    return f"{namespace}__{tool_name}"


def nested_tool_table(tools: Sequence[Tool]) -> list[NestedTool]:
    """The tools the script can call, in `ALL_TOOLS` order, with their augmented descriptions.

    Tools are given in registration order; a tool whose identifier is already taken is left
    out, as are tools named `exec` or `wait`.
    """
    table: dict[str, NestedTool] = {}
    for tool in tools:
        raw = code_mode_name(tool.name, tool.namespace)
        if raw in (EXEC_TOOL_NAME, WAIT_TOOL_NAME):
            continue
        global_name = normalize_identifier(raw)
        if global_name in table:
            continue
        table[global_name] = NestedTool(
            tool=tool,
            global_name=global_name,
            code_mode_name=raw,
            description=augmented_description(tool, global_name),
        )
    return sorted(table.values(), key=lambda nested: nested.code_mode_name)


def shadowed_tools(tools: Sequence[Tool], table: Sequence[NestedTool]) -> list[tuple[str, NestedTool | None]]:
    """The tools `nested_tool_table` left out, each with its raw name and the entry that holds its
    script name (None: the name is `exec` or `wait`)."""
    kept = {id(entry.tool) for entry in table}
    by_name = {entry.global_name: entry for entry in table}
    shadowed: list[tuple[str, NestedTool | None]] = []
    for tool in tools:
        if id(tool) not in kept:
            raw = code_mode_name(tool.name, tool.namespace)
            shadowed.append((raw, by_name.get(normalize_identifier(raw))))
    return shadowed
