"""JSON Schema -> TypeScript rendering (spec 1.6.1, 1.6.2, case 18)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from codemode._describe.typescript import (
    AnyOf,
    Keyword,
    Object,
    Property,
    Ref,
    parse_schema,
    render_schema,
)


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        (True, "unknown"),
        (False, "never"),
        (5, "unknown"),
        ("string", "unknown"),
        (None, "unknown"),
        ({}, "unknown"),
        ({"description": "nothing to type"}, "unknown"),
    ],
)
def test_boolean_and_non_object_schemas(schema: object, expected: str) -> None:
    assert render_schema(schema) == expected


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ({"const": "A"}, '"A"'),
        ({"const": 3}, "3"),
        ({"const": None}, "null"),
        ({"const": True}, "true"),
        ({"const": 1.5}, "1.5"),
        ({"const": 1e20}, "1e20"),
        ({"const": 1e-6}, "1e-6"),
        ({"const": 100.0}, "100.0"),
        ({"const": {"b": [1, "x"], "a": None}}, '{"b":[1,"x"],"a":null}'),
        ({"const": 'say "hi"\n'}, '"say \\"hi\\"\\n"'),
        ({"const": "é"}, '"é"'),
        ({"const": "A", "type": "number"}, '"A"'),
    ],
)
def test_const_renders_its_json_literal(schema: dict[str, Any], expected: str) -> None:
    assert render_schema(schema) == expected


def test_enum_joins_literals() -> None:
    assert render_schema({"type": "string", "enum": ["a", 1, None]}) == '"a" | 1 | null'


def test_empty_enum_falls_through_to_type() -> None:
    assert render_schema({"type": "string", "enum": []}) == "string"


def test_any_of_then_one_of() -> None:
    assert render_schema({"anyOf": [{"type": "string"}, {"type": "null"}]}) == "string | null"
    assert render_schema({"oneOf": [{"const": 1}, {"const": 2}]}) == "1 | 2"
    assert render_schema({"anyOf": [], "oneOf": [{"type": "boolean"}]}) == "boolean"
    # anyOf wins over oneOf
    assert render_schema({"anyOf": [{"type": "string"}], "oneOf": [{"type": "number"}]}) == "string"


def test_all_of_parenthesizes_unions() -> None:
    schema = {
        "allOf": [
            {"anyOf": [{"type": "string"}, {"type": "number"}]},
            {"type": "object", "properties": {"a": {"type": "string"}}},
        ]
    }
    assert render_schema(schema) == "(string | number) & { a?: string; }"


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ({"type": "string"}, "string"),
        ({"type": "integer"}, "number"),
        ({"type": "number"}, "number"),
        ({"type": "boolean"}, "boolean"),
        ({"type": "null"}, "null"),
        ({"type": "whatever"}, "unknown"),
        ({"type": ["string", "null"]}, "string | null"),
        ({"type": ["integer", 7, "boolean"]}, "number | boolean"),
        ({"type": [], "properties": {"a": {"type": "string"}}}, "{ a?: string; }"),
        (
            {"type": ["object", "null"], "properties": {"a": {"type": "string"}}},
            "{ a?: string; } | null",
        ),
        ({"type": ["array", "null"], "items": {"type": "string"}}, "Array<string> | null"),
    ],
)
def test_type_keywords(schema: dict[str, Any], expected: str) -> None:
    assert render_schema(schema) == expected


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ({"type": "array", "items": {"type": "string"}}, "Array<string>"),
        ({"type": "array", "items": [{"type": "string"}]}, "Array<unknown>"),
        (
            {"type": "array", "prefixItems": [{"type": "string"}, {"type": "number"}]},
            "[string, number]",
        ),
        ({"type": "array", "prefixItems": []}, "unknown[]"),
        ({"type": "array"}, "unknown[]"),
        ({"items": {"type": "boolean"}}, "Array<boolean>"),
        ({"prefixItems": [{"const": 1}]}, "[1]"),
    ],
)
def test_arrays(schema: dict[str, Any], expected: str) -> None:
    assert render_schema(schema) == expected


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        (
            {
                "type": "object",
                "properties": {"b": {"type": "number"}, "a": {"type": "string"}},
                "required": ["a"],
            },
            "{ a: string; b?: number; }",
        ),
        ({"type": "object"}, "{ [key: string]: unknown; }"),
        ({"type": "object", "additionalProperties": False}, "{}"),
        ({"type": "object", "properties": {}, "additionalProperties": False}, "{}"),
        (
            {"type": "object", "additionalProperties": {"type": "number"}},
            "{ [key: string]: number; }",
        ),
        (
            {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": True},
            "{ a?: string; [key: string]: unknown; }",
        ),
        ({"properties": {"a": {"type": "string"}}}, "{ a?: string; }"),
        ({"required": ["a"]}, "{ [key: string]: unknown; }"),
        ({"additionalProperties": False}, "{}"),
        (
            {
                "type": "object",
                "properties": {"foo-bar": {}, "$ok": {}, "_x1": {}, "1st": {}, "": {}},
                "required": ["foo-bar"],
            },
            '{ ""?: unknown; $ok?: unknown; "1st"?: unknown; _x1?: unknown; "foo-bar": unknown; }',
        ),
    ],
)
def test_objects(schema: dict[str, Any], expected: str) -> None:
    assert render_schema(schema) == expected


def test_properties_sort_by_code_point() -> None:
    schema: dict[str, Any] = {"type": "object", "properties": {"b": {}, "B": {}, "é": {}, "a": {}}}
    assert render_schema(schema) == '{ B?: unknown; a?: unknown; b?: unknown; "é"?: unknown; }'


def test_property_descriptions_switch_to_multi_line_form() -> None:
    schema = {
        "type": "object",
        "properties": {
            "b": {"type": "string", "description": "  first line  \n\n\t second line\r\n"},
            "a": {"type": "object", "properties": {"x": {"type": "number", "description": "inner"}}},
            "c": {"type": "boolean", "description": ""},
        },
        "required": ["b"],
        "additionalProperties": {"type": "string"},
    }
    # Nested objects render independently: their lines are not re-indented.
    assert render_schema(schema) == (
        "{\n"
        "  a?: {\n"
        "  // inner\n"
        "  x?: number;\n"
        "};\n"
        "  // first line\n"
        "  // second line\n"
        "  b: string;\n"
        "  c?: boolean;\n"
        "  [key: string]: string;\n"
        "}"
    )


def test_empty_descriptions_keep_the_compact_form() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string", "description": ""}}}
    assert render_schema(schema) == "{ a?: string; }"


def test_multi_line_form_with_open_index() -> None:
    schema = {"properties": {"a": {"description": "d"}}, "additionalProperties": True}
    assert render_schema(schema) == "{\n  // d\n  a?: unknown;\n  [key: string]: unknown;\n}"


# --- $ref (spec 1.6.2) -------------------------------------------------------------------------


def test_ref_sibling_constraints_are_intersected() -> None:
    schema = {"$ref": "#/$defs/Label", "enum": ["A"], "$defs": {"Label": {"type": "string"}}}
    assert render_schema(schema) == '(string) & ("A")'


def test_ref_fragment_is_percent_decoded() -> None:
    schema = {"$ref": "#/$defs/Foo%20Bar", "$defs": {"Foo Bar": {"type": "string"}}}
    assert render_schema(schema) == "string"


def test_all_of_with_ref_to_union() -> None:
    schema = {
        "allOf": [
            {"$ref": "#/$defs/Choice"},
            {"type": "object", "properties": {"value": {"type": "string"}}},
        ],
        "$defs": {"Choice": {"oneOf": [{"type": "string"}, {"type": "number"}]}},
    }
    assert render_schema(schema) == "(string | number) & { value?: string; }"


def test_refs_under_a_nested_id_stay_unresolved() -> None:
    schema = {
        "$defs": {"Choice": {"type": "string"}},
        "type": "object",
        "properties": {
            "nested": {
                "$id": "urn:nested",
                "$defs": {"Choice": {"type": "number"}},
                "type": "object",
                "properties": {"value": {"$ref": "#/$defs/Choice"}},
            }
        },
    }
    assert render_schema(schema) == "{ nested?: { value?: unknown; }; }"


def test_root_id_does_not_count_as_nested() -> None:
    schema = {
        "$id": "urn:root",
        "type": "object",
        "properties": {"a": {"$ref": "#/$defs/A"}},
        "$defs": {"A": {"type": "string"}},
    }
    assert render_schema(schema) == "{ a?: string; }"


def test_recursive_refs_expand_one_nested_level() -> None:
    clause_ref = {"$ref": "#/$defs/Boolean~1Clause~0v1"}
    schema = {
        "type": "object",
        "properties": {"clauses": {"type": "array", "items": clause_ref}},
        "required": ["clauses"],
        "additionalProperties": False,
        "$defs": {
            "Boolean/Clause~v1": {
                "type": "object",
                "properties": {
                    "occur": {"type": "string", "enum": ["must", "should"]},
                    "query": {
                        "$ref": "#/$defs/Query",
                        "description": "Use a nested group for parenthesized expressions.",
                    },
                },
                "required": ["occur", "query"],
                "additionalProperties": False,
            },
            "Query": {
                "oneOf": [
                    {"$ref": "#/$defs/Leaf"},
                    {
                        "type": "object",
                        "properties": {"clauses": {"type": "array", "items": clause_ref}},
                        "required": ["clauses"],
                        "additionalProperties": False,
                    },
                ]
            },
            "Leaf": {
                "type": "object",
                "properties": {
                    "field": {"type": "string", "enum": ["A", "B", "C"]},
                    "value": {"type": "string"},
                },
                "required": ["field", "value"],
                "additionalProperties": False,
            },
        },
    }
    assert render_schema(schema) == (
        "{ clauses: Array<{\n"
        '  occur: "must" | "should";\n'
        "  // Use a nested group for parenthesized expressions.\n"
        '  query: { field: "A" | "B" | "C"; value: string; } | { clauses: Array<{\n'
        '  occur: "must" | "should";\n'
        "  // Use a nested group for parenthesized expressions.\n"
        '  query: { field: "A" | "B" | "C"; value: string; } | { clauses: Array<unknown>; };\n'
        "}>; };\n"
        "}>; }"
    )


def test_recursive_ref_to_the_root() -> None:
    schema = {"type": "object", "properties": {"child": {"$ref": "#"}}}
    assert render_schema(schema) == "{ child?: { child?: { child?: unknown; }; }; }"


@pytest.mark.parametrize(
    "ref",
    [
        "https://example.com/schema.json#/$defs/A",
        "other.json",
        "#/$defs/Missing",
        "#$defs/A",
        "#/$defs/%zz",
        "#/$defs/%C3",
        "#/definitions/01",
        "#/definitions/+1",
        "#/definitions/9",
        5,
    ],
)
def test_unresolvable_refs_render_unknown(ref: object) -> None:
    schema = {"$ref": ref, "$defs": {"A": {"type": "string"}}, "definitions": [{}, {"type": "string"}]}
    assert render_schema(schema) == "unknown"


def test_ref_into_an_array_by_index() -> None:
    schema = {"$ref": "#/$defs/list/1", "$defs": {"list": [{"type": "string"}, {"type": "number"}]}}
    assert render_schema(schema) == "number"


def test_unknown_ref_keeps_known_siblings() -> None:
    schema: dict[str, Any] = {"$ref": "#/$defs/Missing", "type": "string", "$defs": {}}
    assert render_schema(schema) == "string"


def test_ref_siblings_without_renderable_keywords_are_ignored() -> None:
    schema = {"$ref": "#/$defs/A", "description": "x", "title": "T", "$defs": {"A": {"const": 1}}}
    assert render_schema(schema) == "1"


def test_expansions_are_capped_at_32_per_rendering() -> None:
    properties = {f"property_{i:02}": {"$ref": "#/$defs/Item"} for i in range(34)}
    rendered = render_schema(
        {"type": "object", "properties": properties, "$defs": {"Item": {"type": "string"}}}
    )
    assert rendered.count("string") == 32
    assert rendered.count("unknown") == 2
    assert rendered.endswith("property_31?: string; property_32?: unknown; property_33?: unknown; }")


def test_dangling_refs_do_not_use_up_the_expansion_budget() -> None:
    properties: dict[str, Any] = {
        f"a_missing_{i:02}": {"$ref": f"#/$defs/Missing{i}"} for i in range(32)
    }
    properties["z_valid"] = {"$ref": "#/$defs/Valid"}
    rendered = render_schema(
        {"type": "object", "properties": properties, "$defs": {"Valid": {"type": "string"}}}
    )
    assert "z_valid?: string;" in rendered


def test_repeated_large_expansions_exhaust_the_work_budget() -> None:
    properties = {f"property_{i}": {"$ref": "#/$defs/Item"} for i in range(32)}
    item = {"type": "object", "properties": {"value": {"type": "string", "description": "x" * 8000}}}
    schema = {"type": "object", "properties": properties, "$defs": {"Item": item}}
    assert render_schema(schema) == "unknown"


def test_oversized_literal_exhausts_the_work_budget() -> None:
    schema = {"$ref": "#/$defs/Value", "$defs": {"Value": {"const": "x" * 64_000}}}
    assert render_schema(schema) == "unknown"


def test_rendering_over_16000_bytes_becomes_unknown() -> None:
    schema = {"type": "object", "properties": {"value": {"type": "string", "description": "x" * 16_000}}}
    assert render_schema(schema) == "unknown"
    fits = {"type": "object", "properties": {"value": {"type": "string", "description": "x" * 15_000}}}
    assert render_schema(fits).startswith("{\n  // xxx")


def test_parse_builds_a_typed_tree() -> None:
    schema = {
        "type": "object",
        "properties": {"a": {"$ref": "#/$defs/A", "description": "an a"}},
        "required": ["a"],
        "additionalProperties": False,
        "$defs": {"A": {"anyOf": [{"type": "string"}, {"type": "integer"}]}},
    }
    assert parse_schema(schema) == Object(
        properties=(
            Property(
                name="a",
                type=Ref(AnyOf((Keyword("string"), Keyword("number"))), None),
                required=True,
                description="an a",
            ),
        ),
        index=False,
    )


_KEYWORDS = [
    "$ref", "$defs", "$id", "const", "enum", "anyOf", "oneOf", "allOf", "type", "properties",
    "additionalProperties", "required", "items", "prefixItems", "description", "a", "b",
]  # fmt: skip
_REFS = st.sampled_from(["#", "#/$defs/a", "#/$defs/b", "#/properties/a", "#/items", "#/x%20y", "x"])
_LEAVES = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
_JSON = st.recursive(
    _LEAVES | _REFS | st.sampled_from(["string", "object", "array", "integer", "null"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(_KEYWORDS), inner, max_size=5),
    max_leaves=40,
)


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(_JSON)
def test_rendering_never_fails_and_stays_bounded(schema: object) -> None:
    rendered = render_schema(schema)
    assert rendered
    assert len(rendered.encode()) <= 16_000
