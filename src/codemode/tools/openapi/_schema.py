"""OpenAPI schema objects -> self-contained JSON Schema, the form `Tool` schemas take.

Invariants:
* Every local `$ref` (`#/components/...`) is replaced by its target, converted once and shared
  (the result is a DAG of dicts that nobody mutates); a `$ref` back into a schema that is still
  being converted (a recursive type) becomes `{}`, any value, so the result is finite.
* OpenAPI 3.0 dialect is turned into JSON Schema: `nullable` becomes a `null` type, boolean
  `exclusiveMinimum`/`exclusiveMaximum` become numbers, and annotation-only keywords
  (`example`, `xml`, `discriminator`, `x-*`) are dropped. 3.1 schemas already are JSON Schema.
* `$ref`s that point outside the document are left out (`{}`): the host never fetches anything.
"""

from __future__ import annotations

from typing import Any, cast
from urllib.parse import unquote

__all__ = ["SchemaResolver"]

_DROPPED = frozenset({"example", "examples", "xml", "discriminator", "externalDocs", "$schema", "$id"})
_SUBSCHEMA_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems")
_SUBSCHEMA_VALUES = ("items", "not", "additionalProperties", "contains", "if", "then", "else")
_SUBSCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions")


class SchemaResolver:
    """Resolves `$ref`s of one OpenAPI document, remembering every schema it converted."""

    def __init__(self, document: dict[str, Any]) -> None:
        self._document = document
        self._openapi_30 = str(document.get("openapi", "3.0")).startswith("3.0")
        self._converted: dict[str, Any] = {}
        self._in_progress: set[str] = set()

    def resolve(self, value: Any) -> Any:
        """A non-schema object (parameter, request body, response) with its own `$ref` followed."""
        seen: set[str] = set()
        while (reference := _reference(value)) is not None:
            if reference in seen:
                return {}
            seen.add(reference)
            value = self._target(reference)
        return value

    def schema(self, schema: Any) -> Any:
        """`schema` as self-contained JSON Schema."""
        if isinstance(schema, bool):
            return schema
        if not isinstance(schema, dict):
            return {}
        schema = cast(dict[str, Any], schema)
        reference = schema.get("$ref")
        if isinstance(reference, str):
            return self._referenced(reference)
        return self._convert(schema)

    def _referenced(self, reference: str) -> Any:
        if reference in self._converted:
            return self._converted[reference]
        if reference in self._in_progress:
            return {}
        self._in_progress.add(reference)
        try:
            converted = self.schema(self._target(reference))
        finally:
            self._in_progress.discard(reference)
        self._converted[reference] = converted
        return converted

    def _target(self, reference: str) -> Any:
        if not reference.startswith("#/"):
            return {}
        node: Any = self._document
        for token in reference[2:].split("/"):
            token = unquote(token).replace("~1", "/").replace("~0", "~")
            if isinstance(node, dict) and token in node:
                node = cast(dict[str, Any], node)[token]
            elif isinstance(node, list) and token.isdigit() and int(token) < len(cast(list[Any], node)):
                node = cast(list[Any], node)[int(token)]
            else:
                return {}
        return node

    def _convert(self, schema: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in schema.items():
            if key in _DROPPED or key.startswith("x-") or (key == "nullable" and self._openapi_30):
                continue
            if key in _SUBSCHEMA_LISTS and isinstance(value, list):
                out[key] = [self.schema(item) for item in cast(list[Any], value)]
            elif key in _SUBSCHEMA_VALUES and isinstance(value, dict):
                out[key] = self.schema(value)
            elif key in _SUBSCHEMA_MAPS and isinstance(value, dict):
                out[key] = {name: self.schema(item) for name, item in cast(dict[str, Any], value).items()}
            else:
                out[key] = value
        if self._openapi_30:
            _exclusive_bounds(out)
            if schema.get("nullable") is True:
                return _nullable(out)
        return out


def _reference(value: object) -> str | None:
    """The `$ref` of `value` if it is an object that has one."""
    if isinstance(value, dict):
        reference = cast(dict[str, Any], value).get("$ref")
        if isinstance(reference, str):
            return reference
    return None


def _exclusive_bounds(schema: dict[str, Any]) -> None:
    """3.0's `exclusiveMinimum: true` next to `minimum` is 2020-12's `exclusiveMinimum: <n>`."""
    for exclusive, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        flag = schema.get(exclusive)
        if isinstance(flag, bool):
            del schema[exclusive]
            if flag and bound in schema:
                schema[exclusive] = schema.pop(bound)


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    type_ = schema.get("type")
    if isinstance(type_, str):
        nullable = {**schema, "type": [type_, "null"]}
        if isinstance(schema.get("enum"), list) and None not in schema["enum"]:
            nullable["enum"] = [*schema["enum"], None]
        return nullable
    return {"anyOf": [schema, {"type": "null"}]}
