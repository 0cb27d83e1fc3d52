"""Checking a framework's raw `exec`/`wait` arguments against their JSON Schema.

Frameworks that pass tool arguments through unchecked (the Agents SDK's JSON text, pydantic-ai's
dict for a schema-only tool) get the same check; a violation is a `ToolError` whose message the
adapter hands to the model as a tool error.
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema

from codemode.errors import ToolError

__all__ = ["checked_arguments"]


def checked_arguments(
    tool_name: str, arguments: str | dict[str, Any], schema: dict[str, Any]
) -> dict[str, Any]:
    """`arguments` (JSON text or a dict) as a dict that satisfies `schema`.

    Raises:
        ToolError: the text is not a JSON object, or the object breaks the schema.
    """
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments or "{}")
        except json.JSONDecodeError as exc:
            raise ToolError(f"`{tool_name}` arguments are not valid JSON: {exc}") from None
    if not isinstance(arguments, dict):
        raise ToolError(f"`{tool_name}` takes a JSON object of arguments")
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(arguments))
    if error is not None:
        where = "/".join(str(part) for part in error.absolute_path)
        raise ToolError(
            f"`{tool_name}` got invalid arguments{f' at `{where}`' if where else ''}: {error.message}"
        )
    return arguments
