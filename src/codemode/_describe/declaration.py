"""The per-tool `exec tool declaration`: a one-line TypeScript signature appended to a tool's
description, so the model knows how to call it from the script (spec 1.5).

Invariant: pure functions of the tool's fields.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from codemode._describe.mcp_types import mcp_result_type
from codemode._describe.typescript import UNKNOWN, render_schema

if TYPE_CHECKING:
    from codemode.tools._tool import Tool

__all__ = ["augmented_description", "tool_declaration"]


def augmented_description(tool: Tool, global_name: str) -> str:
    """The tool's description followed by its `exec tool declaration` block."""
    return (
        f"{tool.description}\n\nexec tool declaration:\n```ts\n"
        f"declare const tools: {{ {tool_declaration(tool, global_name)} }};\n```"
    )


def tool_declaration(tool: Tool, global_name: str) -> str:
    """`name(args: Input): Promise<Output>;`, or `name(input: string): ...` for freeform tools."""
    if tool.kind == "freeform":
        parameter, input_type = "input", "string"
    else:
        parameter = "args"
        input_type = UNKNOWN if tool.input_schema is None else render_schema(tool.input_schema)
    return f"{global_name}({parameter}: {input_type}): Promise<{_output_type(tool)}>;"


def _output_type(tool: Tool) -> str:
    if tool.output_schema is None:
        return UNKNOWN
    return mcp_result_type(tool.output_schema) or render_schema(tool.output_schema)
