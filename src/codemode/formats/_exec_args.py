"""The `exec` argument schema for formats without freeform tools: the script goes in `code`.

Invariant: every call returns a fresh dict, so callers may mutate what they get.
"""

from __future__ import annotations

from typing import Any

__all__ = ["exec_parameters"]

_CODE_DESCRIPTION = (
    "Raw JavaScript source to run, optionally starting with a `// @exec: {...}` pragma line."
)


def exec_parameters() -> dict[str, Any]:
    """`{code: string}`, required."""
    return {
        "type": "object",
        "properties": {"code": {"type": "string", "description": _CODE_DESCRIPTION}},
        "required": ["code"],
        "additionalProperties": False,
    }
