"""Typed views of parsed JSON: schemas arrive as plain `object`s and are inspected through these.

Invariant: views never copy or validate deeper than one level.
"""

from __future__ import annotations

from typing import cast

__all__ = ["as_array", "as_object"]


def as_object(value: object) -> dict[str, object] | None:
    """`value` as a JSON object, or None when it is not one."""
    return cast("dict[str, object]", value) if isinstance(value, dict) else None


def as_array(value: object) -> list[object] | None:
    """`value` as a JSON array, or None when it is not one."""
    return cast("list[object]", value) if isinstance(value, list) else None
