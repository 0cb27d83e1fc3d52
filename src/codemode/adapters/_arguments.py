"""Checking a framework's raw `exec`/`wait` arguments against their JSON Schema.

Frameworks that pass tool arguments through unchecked (the Agents SDK's JSON text, pydantic-ai's
dict for a schema-only tool) get the same check; a violation is a `ToolError` whose message the
adapter hands to the model as a tool error. This is where the model's input enters from a
framework, so lone surrogates (JSON's `\\ud800` escapes decode to them) become U+FFFD here.
An integer `cell_id` becomes its string, as the MCP front end takes it (models sometimes send
the id as a number), so every front end accepts the same `wait` arguments.
"""

from __future__ import annotations

import json
from typing import Any, cast

from jsonschema import Draft202012Validator, exceptions as schema_errors

from codemode._protocol.text import safe_data, safe_text
from codemode.errors import ToolError

__all__ = ["checked_arguments"]


def checked_arguments(
    tool_name: str, arguments: str | dict[str, Any], schema: dict[str, Any]
) -> dict[str, Any]:
    """`arguments` (JSON text or a dict) as a dict that satisfies `schema`, its strings UTF-8 safe.

    Raises:
        ToolError: the text is not a JSON object, or the object breaks the schema.
    """
    value: object = arguments
    if isinstance(value, str):
        try:
            value = json.loads(value or "{}")
        except json.JSONDecodeError as exc:
            raise ToolError(f"`{tool_name}` arguments are not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ToolError(f"`{tool_name}` takes a JSON object of arguments")
    arguments = cast(dict[str, Any], safe_data(value))
    cell_id = arguments.get("cell_id")
    if isinstance(cell_id, int) and not isinstance(cell_id, bool):
        arguments["cell_id"] = str(cell_id)
    errors = cast(Any, Draft202012Validator(schema)).iter_errors(arguments)
    error = cast(schema_errors.ValidationError | None, cast(Any, schema_errors).best_match(errors))
    if error is not None:
        where = "/".join(str(part) for part in error.absolute_path)
        raise ToolError(
            safe_text(f"`{tool_name}` got invalid arguments{f' at `{where}`' if where else ''}: {error.message}")
        )
    return arguments
