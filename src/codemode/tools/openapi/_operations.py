"""The operations of an OpenAPI document, each with one argument object and a typed result.

Invariants:
* One `Operation` per (path, method) pair, in document order; its `name` is a JavaScript-safe
  identifier made from the `operationId` (`repos/get` -> `repos_get`), or from the method and
  path when there is none, made unique within the document.
* The argument object holds every path, query, header and cookie parameter under its own name,
  and the request body: an object body's properties sit beside the parameters (`title`, `body`
  for `issues/create`) unless one of them would shadow a parameter, in which case, and for
  any other body, the whole body is the argument `body` (`request_body` if `body` is taken).
* `input_schema` is strict (`additionalProperties: false`) so a misspelt argument is reported
  before any request is sent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias, cast

from codemode.tools.openapi._schema import SchemaResolver

__all__ = ["BodyShape", "Location", "Operation", "Parameter", "operations"]

Location: TypeAlias = Literal["path", "query", "header", "cookie"]
BodyShape: TypeAlias = Literal["none", "flat", "whole"]
"""How the request body sits in the arguments: absent, its properties inline, or one argument."""

_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
_LOCATIONS: tuple[Location, ...] = ("path", "query", "header", "cookie")
_NOT_IDENTIFIER = re.compile(r"[^A-Za-z0-9]+")  # runs of them become one `_`: `__` only joins the namespace
_OUTPUT_DEPTH = 2  # object levels of a result type the model is shown; deeper ones are `object`


@dataclass(frozen=True)
class Parameter:
    """One non-body parameter: its argument name and where the request carries it."""

    name: str
    location: Location


@dataclass(frozen=True)
class Operation:
    """One HTTP operation as a nested tool.

    Attributes:
        name: the tool name (a JavaScript identifier).
        method: upper-case HTTP method.
        path: the path template, e.g. `/repos/{owner}/{repo}`.
        description: summary, description and the request line, for the model.
        parameters: the non-body parameters.
        body_shape: how the request body is given (see `BodyShape`).
        body_argument: the argument holding the whole body when `body_shape` is "whole".
        body_fields: the body's property names when `body_shape` is "flat".
        content_type: the media type the body is sent as.
        input_schema: JSON Schema of the argument object.
        output_schema: JSON Schema of the success response, or None when it has no JSON body.
    """

    name: str
    method: str
    path: str
    description: str
    parameters: tuple[Parameter, ...]
    body_shape: BodyShape
    body_argument: str
    body_fields: frozenset[str]
    content_type: str | None
    input_schema: dict[str, Any]
    output_schema: dict[str, Any] | None


def operations(document: dict[str, Any]) -> list[Operation]:
    """Every operation of `document` (an OpenAPI 3.x object with local `$ref`s)."""
    resolver = SchemaResolver(document)
    found: list[Operation] = []
    taken: set[str] = set()
    paths = cast(dict[str, Any], document.get("paths") or {})
    for path, item in paths.items():
        path_item = _json_object(resolver.resolve(item))
        if path_item is None:
            continue
        shared = cast(list[Any], path_item.get("parameters") or [])
        for method in _METHODS:
            operation = path_item.get(method)
            if isinstance(operation, dict):
                name = _unique(_operation_name(cast(dict[str, Any], operation), method, path), taken)
                found.append(_operation(resolver, name, method, path, shared, cast(dict[str, Any], operation)))
    return found


def _operation(
    resolver: SchemaResolver, name: str, method: str, path: str, shared: list[Any], operation: dict[str, Any]
) -> Operation:
    properties: dict[str, Any] = {}
    required: list[str] = []
    parameters: list[Parameter] = []
    for raw in _merged_parameters(resolver, shared, cast(list[Any], operation.get("parameters") or [])):
        location = raw.get("in")
        param_name = raw.get("name")
        if location not in _LOCATIONS or not isinstance(param_name, str) or param_name in properties:
            continue
        schema = _described(resolver.schema(raw.get("schema", {})), raw.get("description"))
        properties[param_name] = schema
        parameters.append(Parameter(param_name, location))
        if raw.get("required") or location == "path":
            required.append(param_name)
    body_shape, body_argument, body_fields, content_type = _body(resolver, operation, properties, required)
    description = _description(operation, method, path)
    input_schema: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        input_schema["required"] = required
    return Operation(
        name=name,
        method=method.upper(),
        path=path,
        description=description,
        parameters=tuple(parameters),
        body_shape=body_shape,
        body_argument=body_argument,
        body_fields=body_fields,
        content_type=content_type,
        input_schema=input_schema,
        output_schema=_output_schema(resolver, operation),
    )


def _merged_parameters(resolver: SchemaResolver, shared: list[Any], own: list[Any]) -> list[dict[str, Any]]:
    """Path-level parameters overridden by operation-level ones with the same name and place."""
    merged: dict[tuple[object, object], dict[str, Any]] = {}
    for raw in [*shared, *own]:
        parameter = resolver.resolve(raw)
        if isinstance(parameter, dict):
            parameter = cast(dict[str, Any], parameter)
            merged[(parameter.get("name"), parameter.get("in"))] = parameter
    return list(merged.values())


def _body(
    resolver: SchemaResolver, operation: dict[str, Any], properties: dict[str, Any], required: list[str]
) -> tuple[BodyShape, str, frozenset[str], str | None]:
    body = _json_object(resolver.resolve(operation.get("requestBody"))) or {}
    content = cast(dict[str, Any], body.get("content") or {})
    if not content:
        return "none", "", frozenset(), None
    content_type = next((t for t in content if is_json(t)), next(iter(content)))
    media = _json_object(content[content_type])
    schema: Any = resolver.schema(media.get("schema", {})) if media is not None else {}
    body_required = bool(body.get("required"))
    object_schema = _json_object(schema) or {}
    fields = cast(dict[str, Any], object_schema.get("properties") or {})
    flat = (
        is_json(content_type)
        and fields
        and object_schema.get("type", "object") == "object"
        and not any(key in object_schema for key in ("oneOf", "anyOf", "allOf"))
        and not set(fields) & set(properties)
    )
    if flat:
        properties.update(fields)
        if body_required:
            required.extend(name for name in cast(list[Any], object_schema.get("required", [])) if name in fields)
        return "flat", "", frozenset(fields), content_type
    argument = "body" if "body" not in properties else "request_body"
    properties[argument] = _described(schema, body.get("description"))
    if body_required:
        required.append(argument)
    return "whole", argument, frozenset(), content_type


def _output_schema(resolver: SchemaResolver, operation: dict[str, Any]) -> dict[str, Any] | None:
    responses = cast(dict[str, Any], operation.get("responses") or {})
    for status in sorted(responses, key=str):
        if not str(status).startswith("2"):
            continue
        response = _json_object(resolver.resolve(responses[status])) or {}
        content = cast(dict[str, Any], response.get("content") or {})
        for media_type, media in content.items():
            if is_json(media_type) and isinstance(media, dict) and "schema" in media:
                shallow: dict[str, Any] = _shallow(
                    resolver.schema(cast(dict[str, Any], media)["schema"]), _OUTPUT_DEPTH
                )
                return shallow
        return None
    return None


def _shallow(schema: Any, depth: int, described_levels: int = 2) -> Any:
    """`schema` cut off below `depth` object levels, with descriptions on the result and its
    fields only: result types of large APIs (a GitHub repository has hundreds of nested fields)
    would otherwise not fit a declaration."""
    if not isinstance(schema, dict):
        return schema
    schema = cast(dict[str, Any], schema)
    if depth == 0 and ("properties" in schema or schema.get("type") == "object"):
        return {"type": "object"}
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "properties" and isinstance(value, dict):
            out[key] = {
                name: _shallow(item, depth - 1, described_levels - 1)
                for name, item in cast(dict[str, Any], value).items()
            }
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            out[key] = _shallow(value, depth, described_levels)
        elif key in ("allOf", "anyOf", "oneOf") and isinstance(value, list):
            out[key] = [_shallow(item, depth, described_levels) for item in cast(list[Any], value)]
        elif key != "description" or described_levels > 0:
            out[key] = value
    return out


def _described(schema: Any, description: object) -> Any:
    fields = _json_object(schema)
    if isinstance(description, str) and description and fields is not None and "description" not in fields:
        return {**fields, "description": description}
    return schema


def _json_object(value: object) -> dict[str, Any] | None:
    """`value` if it is a JSON object (the document came from JSON or YAML: keys are strings)."""
    return cast(dict[str, Any], value) if isinstance(value, dict) else None


def _description(operation: dict[str, Any], method: str, path: str) -> str:
    summary = str(operation.get("summary") or "").strip()
    if summary and not summary.endswith((".", "!", "?")):
        summary += "."
    details = str(operation.get("description") or "").strip()
    parts = [part for part in (summary, details) if part]
    parts.append(f"HTTP: `{method.upper()} {path}`")
    return "\n\n".join(parts)


def _operation_name(operation: dict[str, Any], method: str, path: str) -> str:
    raw = operation.get("operationId")
    if not isinstance(raw, str) or not raw.strip():
        raw = f"{method}_{path}"
    name = _NOT_IDENTIFIER.sub("_", raw).strip("_")
    return f"_{name}" if not name or name[0].isdigit() else name


def _unique(name: str, taken: set[str]) -> str:
    candidate, suffix = name, 2
    while candidate in taken:
        candidate, suffix = f"{name}_{suffix}", suffix + 1
    taken.add(candidate)
    return candidate


def is_json(media_type: str) -> bool:
    base = media_type.split(";", 1)[0].strip().lower()
    return base == "application/json" or base.endswith("+json")
