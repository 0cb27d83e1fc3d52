"""The per-tool `exec tool declaration`: a one-line TypeScript signature appended to a tool's
description, so the model knows how to call it from the script (spec 1.5).

Invariant: pure functions of the tool's fields.
"""

from __future__ import annotations

import functools
import json
from typing import TYPE_CHECKING, Any

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
        input_type = UNKNOWN if tool.input_schema is None else _input_type(tool.input_schema)
    output_type = UNKNOWN if tool.output_schema is None else _output_type(tool.output_schema)
    return f"{global_name}({parameter}: {input_type}): Promise<{output_type}>;"


def _input_type(schema: Any) -> str:
    text = _json_text(schema)
    return render_schema(schema) if text is None else _rendered_input(text)


def _output_type(schema: Any) -> str:
    text = _json_text(schema)
    return _render_output(schema) if text is None else _rendered_output(text)


# Every session of a server renders the same schemas: rendering costs far more than the JSON
# text that keys the cache (parsed back, in the same key order, on a miss).
def _json_text(schema: Any) -> str | None:
    try:
        return json.dumps(schema, separators=(",", ":"))
    except (TypeError, ValueError):
        return None  # not JSON: rendered each time


@functools.lru_cache(maxsize=4096)
def _rendered_input(text: str) -> str:
    return render_schema(json.loads(text))


@functools.lru_cache(maxsize=4096)
def _rendered_output(text: str) -> str:
    return _render_output(json.loads(text))


def _render_output(schema: Any) -> str:
    return mcp_result_type(schema) or render_schema(schema)
