"""The per-tool `exec tool declaration`: a one-line TypeScript signature appended to a tool's
description, so the model knows how to call it from the script (spec 1.5).

Invariant: pure functions of the tool's fields.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
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
        input_type = UNKNOWN if tool.input_schema is None else _cached(_rendered, tool.input_schema)
    output_type = UNKNOWN if tool.output_schema is None else _cached(_output_type, tool.output_schema)
    return f"{global_name}({parameter}: {input_type}): Promise<{output_type}>;"


class _Schema(str):
    """A schema's JSON text (the cache key) that still holds the schema it came from."""

    def __new__(cls, text: str = "", *, schema: Any = None) -> _Schema:
        key = super().__new__(cls, text)
        key.schema = schema
        return key


# Every session of a server renders the same schemas: rendering costs far more than the JSON
# text that keys it.
def _cached(render: Callable[[_Schema], str], schema: Any) -> str:
    try:
        text = json.dumps(schema, separators=(",", ":"))  # keeps the key order
    except (TypeError, ValueError):
        return render.__wrapped__(_Schema(schema=schema))  # type: ignore[attr-defined]
    return render(_Schema(text, schema=schema))


@functools.lru_cache(maxsize=4096)
def _rendered(key: _Schema) -> str:
    return render_schema(key.schema)


@functools.lru_cache(maxsize=4096)
def _output_type(key: _Schema) -> str:
    return mcp_result_type(key.schema) or render_schema(key.schema)
