"""JSON Schema -> TypeScript type text, as the model reads it in `exec tool declaration` blocks.

The schema is first parsed into a small tree of `TypeExpr` nodes (local `$ref`s are expanded
while parsing), then the tree is rendered (spec 1.6.1, 1.6.2, LATEST). One addition to the
reference: a property's validation keywords (`minimum`, `maxLength`, `pattern`, ...) join its
description in the `//` doc comment, so a tool's documented bounds reach the model.

Invariants:
* Every failure degrades to `unknown`; rendering parsed JSON never raises.
* Output is finite: a `$ref` pointer is expanded at most twice along one path and at most 32
  times per rendering; rendering charges the UTF-8 size of each intermediate string against a
  64000-byte work budget (exhausting it turns the result into `unknown`); a final text over
  16000 bytes is replaced by `unknown`.
* Every position where a schema is rendered on its own ("schema positions": the root,
  `anyOf`/`oneOf`/`allOf` variants, `items`, `prefixItems` entries, property values, an
  `additionalProperties` schema, a `$ref` target) is charged once for its text. The members of
  a `type` array and the siblings of a `$ref` share their schema's charge. The reference
  renderer charges the same places, so budgets run out at the same byte.
* Pure: no I/O, no state outside one call.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal as TypingLiteral, TypeAlias
from urllib.parse import unquote_to_bytes

from codemode._describe._json import as_array, as_object

__all__ = [
    "AllOf",
    "AnyOf",
    "ArrayOf",
    "Const",
    "Enum",
    "Keyword",
    "Never",
    "Object",
    "Property",
    "Ref",
    "Tuple",
    "TypeExpr",
    "TypeUnion",
    "Unknown",
    "UnknownArray",
    "parse_schema",
    "render_schema",
]

MAX_REF_EXPANSIONS_PER_PATH = 2
MAX_REF_EXPANSIONS = 32
MAX_RENDERED_BYTES = 16_000
MAX_RENDER_WORK_BYTES = MAX_RENDERED_BYTES * 4

UNKNOWN = "unknown"

# Keywords that make the siblings of a `$ref` worth rendering.
_RENDERABLE_KEYWORDS = (
    "const",
    "enum",
    "anyOf",
    "oneOf",
    "allOf",
    "type",
    "properties",
    "additionalProperties",
    "required",
    "items",
    "prefixItems",
)
# Validation keywords shown in a property's doc comment, in this order.
_CONSTRAINT_KEYWORDS = (
    "minimum",
    "exclusiveMinimum",
    "maximum",
    "exclusiveMaximum",
    "multipleOf",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
)
# Property names that normalization leaves unchanged are printed bare (spec 1.7).
_IDENTIFIER = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")
# Unicode White_Space, which the reference trims description lines by (str.strip() would also
# drop U+001C..U+001F).
_WHITESPACE = "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"


@dataclass(frozen=True, slots=True)
class Unknown:
    """`unknown`: `true`, a non-object schema, or anything not understood."""


@dataclass(frozen=True, slots=True)
class Never:
    """`never`: the `false` schema."""


@dataclass(frozen=True, slots=True)
class Keyword:
    """A primitive type keyword."""

    name: TypingLiteral["string", "number", "boolean", "null"]


@dataclass(frozen=True, slots=True)
class Const:
    """`const`: one JSON literal."""

    value: object


@dataclass(frozen=True, slots=True)
class Enum:
    """`enum`: literals joined by ` | ` (each literal is charged on its own)."""

    values: tuple[object, ...]


@dataclass(frozen=True, slots=True)
class AnyOf:
    """`anyOf` / `oneOf`: variants joined by ` | `."""

    variants: tuple[TypeExpr, ...]


@dataclass(frozen=True, slots=True)
class AllOf:
    """`allOf`: variants joined by ` & `, unions parenthesized."""

    variants: tuple[TypeExpr, ...]


@dataclass(frozen=True, slots=True)
class TypeUnion:
    """A `type` array: one member per type name, joined by ` | `."""

    members: tuple[TypeExpr, ...]


@dataclass(frozen=True, slots=True)
class ArrayOf:
    """`items`: `Array<T>`."""

    item: TypeExpr


@dataclass(frozen=True, slots=True)
class Tuple:
    """`prefixItems`: `[A, B]`."""

    items: tuple[TypeExpr, ...]


@dataclass(frozen=True, slots=True)
class UnknownArray:
    """An array schema with neither `items` nor `prefixItems`: `unknown[]`."""


@dataclass(frozen=True, slots=True)
class Property:
    """One object member."""

    name: str
    type: TypeExpr
    required: bool
    description: str | None


@dataclass(frozen=True, slots=True)
class Object:
    """An object type.

    `index` is the `[key: string]: T;` member: False for none, True for an open
    `unknown` index (`additionalProperties: true`, or no properties at all), or the rendered
    `additionalProperties` schema.
    """

    properties: tuple[Property, ...]
    index: TypeExpr | bool


@dataclass(frozen=True, slots=True)
class Ref:
    """A `$ref` with its siblings: `(<target>) & (<siblings>)`, or whichever side is known.

    `target` is None when the ref was not expanded (not local, dangling, under a nested `$id`,
    or over a recursion/expansion bound); `siblings` is None when none are renderable.
    """

    target: TypeExpr | None
    siblings: TypeExpr | None


TypeExpr: TypeAlias = (
    Unknown
    | Never
    | Keyword
    | Const
    | Enum
    | AnyOf
    | AllOf
    | TypeUnion
    | ArrayOf
    | Tuple
    | UnknownArray
    | Object
    | Ref
)


def render_schema(schema: object) -> str:
    """The TypeScript type for a JSON Schema (a dict, or a boolean schema)."""
    rendered = _Renderer().render(parse_schema(schema))
    return UNKNOWN if len(_utf8(rendered)) > MAX_RENDERED_BYTES else rendered


def parse_schema(schema: object) -> TypeExpr:
    """Parse `schema` into a tree, expanding its document-local `$ref`s against itself."""
    return _Parser(schema).schema(schema)


class _Parser:
    def __init__(self, root: object) -> None:
        self._root = root
        self._nested_resources = 0
        self._active_refs: dict[str, int] = {}
        self._remaining_refs = MAX_REF_EXPANSIONS

    def schema(self, schema: object) -> TypeExpr:
        # A nested `$id` starts a new schema resource: fragment refs under it point into that
        # resource, which we do not resolve.
        mapping = as_object(schema)
        nested = mapping is not None and schema is not self._root and "$id" in mapping
        self._nested_resources += nested
        try:
            if isinstance(schema, bool):
                return Unknown() if schema else Never()
            return Unknown() if mapping is None else self._map(mapping)
        finally:
            self._nested_resources -= nested

    def _map(self, schema: dict[str, object]) -> TypeExpr:
        if "$ref" in schema:
            return self._ref(schema)
        if "const" in schema:
            return Const(schema["const"])
        values = as_array(schema.get("enum"))
        if values:
            return Enum(tuple(values))
        for key in ("anyOf", "oneOf"):
            variants = as_array(schema.get(key))
            if variants:
                return AnyOf(tuple(self.schema(v) for v in variants))
        variants = as_array(schema.get("allOf"))
        if variants:
            return AllOf(tuple(self.schema(v) for v in variants))
        type_ = schema.get("type")
        if isinstance(type_, str):
            return self._keyword(schema, type_)
        type_names = as_array(type_)
        if type_names:
            names = [name for name in type_names if isinstance(name, str)]
            if names:
                return TypeUnion(tuple(self._keyword(schema, name) for name in names))
        if any(key in schema for key in ("properties", "additionalProperties", "required")):
            return self._object(schema)
        if "items" in schema or "prefixItems" in schema:
            return self._array(schema)
        return Unknown()

    def _keyword(self, schema: dict[str, object], name: str) -> TypeExpr:
        match name:
            case "string" | "boolean" | "null":
                return Keyword(name)
            case "number" | "integer":
                return Keyword("number")
            case "array":
                return self._array(schema)
            case "object":
                return self._object(schema)
            case _:
                return Unknown()

    def _array(self, schema: dict[str, object]) -> TypeExpr:
        if "items" in schema:
            return ArrayOf(self.schema(schema["items"]))
        prefix = as_array(schema.get("prefixItems"))
        if prefix:
            return Tuple(tuple(self.schema(item) for item in prefix))
        return UnknownArray()

    def _object(self, schema: dict[str, object]) -> TypeExpr:
        required = {name for name in as_array(schema.get("required")) or () if isinstance(name, str)}
        properties_map = as_object(schema.get("properties")) or {}
        properties = tuple(
            Property(
                name=name,
                type=self.schema(value),
                required=name in required,
                description=_documentation(value),
            )
            for name, value in sorted(properties_map.items())
        )
        index: TypeExpr | bool
        if "additionalProperties" in schema:
            additional = schema["additionalProperties"]
            index = additional if isinstance(additional, bool) else self.schema(additional)
        else:
            index = not properties
        return Object(properties, index)

    def _ref(self, schema: dict[str, object]) -> TypeExpr:
        siblings = {k: v for k, v in schema.items() if k not in ("$ref", "$defs", "definitions")}
        target = self._expand(schema["$ref"])
        renderable = any(key in siblings for key in _RENDERABLE_KEYWORDS)
        return Ref(target, self._map(siblings) if renderable else None)

    def _expand(self, reference: object) -> TypeExpr | None:
        if self._nested_resources or not isinstance(reference, str):
            return None
        pointer = _local_pointer(reference)
        if pointer is None:
            return None
        active = self._active_refs.get(pointer, 0)
        if active >= MAX_REF_EXPANSIONS_PER_PATH or self._remaining_refs == 0:
            return None
        found, target = _resolve_pointer(self._root, pointer)
        if not found:
            return None  # dangling refs do not use up the expansion budget
        self._remaining_refs -= 1
        self._active_refs[pointer] = active + 1
        try:
            return self.schema(target)
        finally:
            if active:
                self._active_refs[pointer] = active
            else:
                del self._active_refs[pointer]


class _Renderer:
    def __init__(self) -> None:
        self._remaining = MAX_RENDER_WORK_BYTES
        self._exhausted = False

    def render(self, node: TypeExpr) -> str:
        """Render a schema position and charge its text."""
        if self._exhausted:
            return UNKNOWN
        text = self._node(node)
        return text if self._consume(len(_utf8(text))) else UNKNOWN

    def _node(self, node: TypeExpr) -> str:
        match node:
            case Unknown():
                return UNKNOWN
            case Never():
                return "never"
            case Keyword(name):
                return name
            case Const(value):
                return self._literal(value)
            case Enum(values):
                literals: list[str] = []
                for value in values:
                    literal = self._literal(value)
                    if self._exhausted or not self._consume(len(_utf8(literal))):
                        return UNKNOWN
                    literals.append(literal)
                return " | ".join(literals)
            case AnyOf(variants):
                return _or_unknown(self._join(variants, " | ", charged=True))
            case AllOf(variants):
                return _or_unknown(self._join(variants, " & ", charged=True, parenthesize=True))
            case TypeUnion(members):
                return _or_unknown(self._join(members, " | ", charged=False))
            case ArrayOf(item):
                item_text = self.render(item)
                return UNKNOWN if self._exhausted else f"Array<{item_text}>"
            case Tuple(items):
                joined = self._join(items, ", ", charged=True)
                return UNKNOWN if joined is None else f"[{joined}]"
            case UnknownArray():
                return "unknown[]"
            case Object():
                return self._object(node)
            case Ref(target, siblings):
                referenced = UNKNOWN if target is None else self.render(target)
                if self._exhausted:
                    return UNKNOWN
                if siblings is None:
                    return referenced
                sibling = self._node(siblings)
                if referenced == UNKNOWN:
                    return sibling
                if sibling == UNKNOWN:
                    return referenced
                return f"({referenced}) & ({sibling})"

    def _join(
        self,
        nodes: tuple[TypeExpr, ...],
        separator: str,
        *,
        charged: bool,
        parenthesize: bool = False,
    ) -> str | None:
        """The rendered nodes joined, or None when the budget ran out before one of them."""
        parts: list[str] = []
        for node in nodes:
            if self._exhausted:
                return None
            text = self.render(node) if charged else self._node(node)
            parts.append(f"({text})" if parenthesize and " | " in text else text)
        return separator.join(parts)

    def _object(self, node: Object) -> str:
        multiline = any(prop.description for prop in node.properties)
        indent = "  " if multiline else ""
        lines: list[str] = []
        if multiline and not self._push(lines, "{"):
            return UNKNOWN
        for prop in node.properties:
            if multiline:
                for line in _description_lines(prop.description or ""):
                    # Checked before building the line, so a huge description costs nothing.
                    if len(_utf8(line)) + 5 > self._remaining or not self._push(lines, f"  // {line}"):
                        return UNKNOWN
            member = self._property(prop)
            if self._exhausted or not self._push(lines, f"{indent}{member}"):
                return UNKNOWN
        if node.index is not False:
            index = UNKNOWN if node.index is True else self.render(node.index)
            if not self._push(lines, f"{indent}[key: string]: {index};"):
                return UNKNOWN
        if multiline:
            return "\n".join(lines) if self._push(lines, "}") else UNKNOWN
        return "{ " + " ".join(lines) + " }" if lines else "{}"

    def _property(self, prop: Property) -> str:
        if len(_utf8(prop.name)) > self._remaining:
            self._exhausted = True
            return UNKNOWN
        name = prop.name if _IDENTIFIER.fullmatch(prop.name) else _json(prop.name)
        type_text = self.render(prop.type)
        if self._exhausted:
            return UNKNOWN
        return f"{name}{'' if prop.required else '?'}: {type_text};"

    def _literal(self, value: object) -> str:
        # Bound the size before serializing, so a huge literal is never built.
        if _literal_size_bound(value) > self._remaining:
            self._exhausted = True
            return UNKNOWN
        return _json(value)

    def _consume(self, size: int) -> bool:
        if size > self._remaining:
            self._exhausted = True
            return False
        self._remaining -= size
        return True

    def _push(self, lines: list[str], line: str) -> bool:
        if not self._consume(len(_utf8(line))):
            return False
        lines.append(line)
        return True


def _or_unknown(text: str | None) -> str:
    return UNKNOWN if text is None else text


def _description(schema: object) -> str | None:
    description = (as_object(schema) or {}).get("description")
    return description if isinstance(description, str) else None


def _documentation(schema: object) -> str | None:
    """A property's doc comment: its description, then a line of the constraints its type does
    not show (`minimum: 1; maximum: 100`), as pydantic's `Field(ge=..., pattern=...)` writes them."""
    values = as_object(schema) or {}
    constraints = [
        f"{keyword}: {value if keyword == 'pattern' else _json(value)}"
        for keyword in _CONSTRAINT_KEYWORDS
        if isinstance(value := values.get(keyword), str if keyword == "pattern" else (int, float))
        and not isinstance(value, bool)
    ]
    lines = [text for text in (_description(schema), "; ".join(constraints)) if text]
    return "\n".join(lines) if lines else None


def _description_lines(description: str) -> list[str]:
    stripped = (line.strip(_WHITESPACE) for line in description.split("\n"))
    return [line for line in stripped if line]


def _local_pointer(reference: str) -> str | None:
    """The JSON pointer of a document-local `#...` ref (percent-decoded), else None."""
    if not reference.startswith("#"):
        return None
    fragment = reference[1:]
    # unquote_to_bytes leaves malformed escapes alone; the reference rejects them.
    if re.search(r"%(?![0-9A-Fa-f]{2})", fragment):
        return None
    try:
        pointer = unquote_to_bytes(fragment).decode("utf-8")
    except UnicodeDecodeError:
        return None
    return pointer if pointer == "" or pointer.startswith("/") else None


def _resolve_pointer(root: object, pointer: str) -> tuple[bool, object]:
    """Follow a JSON pointer (RFC 6901) from `root`: (found, value)."""
    node = root
    if pointer == "":
        return True, node
    for token in pointer[1:].split("/"):
        token = token.replace("~1", "/").replace("~0", "~")
        mapping, array = as_object(node), as_array(node)
        if mapping is not None and token in mapping:
            node = mapping[token]
        elif array is not None and _is_index(token) and int(token) < len(array):
            node = array[int(token)]
        else:
            return False, None
    return True, node


def _is_index(token: str) -> bool:
    """An array index token: decimal digits without a leading zero."""
    return token.isascii() and token.isdigit() and (token == "0" or not token.startswith("0"))


def _json(value: object) -> str:
    """Compact JSON text, numbers formatted as the reference (serde_json) prints them."""
    if isinstance(value, float):
        return _float_text(value)
    if (array := as_array(value)) is not None:
        return "[" + ",".join(_json(v) for v in array) + "]"
    if (mapping := as_object(value)) is not None:
        return "{" + ",".join(f"{_json(k)}:{_json(v)}" for k, v in mapping.items()) + "}"
    return json.dumps(value, ensure_ascii=False)


def _float_text(value: float) -> str:
    """A float as serde_json prints it (Rust's shortest round-trip `ryu` layout)."""
    if not math.isfinite(value):
        return "null"
    if value == 0:
        return "-0.0" if math.copysign(1.0, value) < 0 else "0.0"
    # repr() gives the same shortest round-trip digits as ryu; only the layout differs.
    _, digit_tuple, exponent = Decimal(repr(abs(value))).normalize().as_tuple()
    assert isinstance(exponent, int)
    digits = "".join(map(str, digit_tuple))
    point = len(digits) + exponent  # where the decimal point goes, counted from the first digit
    sign = "-" if value < 0 else ""
    if exponent >= 0 and point <= 16:
        return f"{sign}{digits}{'0' * exponent}.0"
    if 0 < point <= 16:
        return f"{sign}{digits[:point]}.{digits[point:]}"
    if -5 < point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    tail = f".{digits[1:]}" if len(digits) > 1 else ""
    return f"{sign}{digits[0]}{tail}e{point - 1}"


def _literal_size_bound(value: object) -> int:
    """An upper bound of `_json(value)`'s size in bytes, computed without serializing."""
    if value is None or value is True:
        return 4
    if value is False:
        return 5
    if isinstance(value, int | float):
        return len(_json(value))
    if isinstance(value, str):
        return len(_utf8(value)) * 6 + 2
    if (array := as_array(value)) is not None:
        return sum(1 + _literal_size_bound(v) for v in array) + 2
    if (mapping := as_object(value)) is not None:
        return sum(4 + len(_utf8(k)) * 6 + _literal_size_bound(v) for k, v in mapping.items()) + 2
    return len(UNKNOWN)


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")
