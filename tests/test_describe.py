"""Tool names, declarations, the exec/wait descriptions and ALL_TOOLS (spec 1.2-1.8, cases 10-20)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from codemode._describe import (
    MCP_TYPES_PREAMBLE,
    NestedTool,
    all_tools_entries,
    code_mode_name,
    exec_description,
    mcp_output_schema,
    mcp_result_type,
    nested_tool_table,
    normalize_identifier,
    wait_description,
    wait_parameters,
)
from codemode._protocol.config import Defaults
from codemode.tools._tool import Tool, ToolKind

EMPTY_OBJECT: dict[str, Any] = {"type": "object", "properties": {}, "additionalProperties": False}


def make_tool(
    name: str,
    description: str = "",
    *,
    input_schema: dict[str, Any] | None = None,
    output_schema: dict[str, Any] | None = None,
    kind: ToolKind = "function",
    namespace: str | None = None,
    namespace_description: str | None = None,
    deferred: bool = False,
) -> Tool:
    return Tool(
        name=name,
        description=description,
        handler=lambda arguments: arguments,
        input_schema=input_schema,
        output_schema=output_schema,
        kind=kind,
        namespace=namespace,
        namespace_description=namespace_description,
        deferred=deferred,
    )


def only(tool: Tool) -> NestedTool:
    [nested] = nested_tool_table([tool])
    return nested


LONG_YIELD = Defaults(30_000)


def describe(tools: list[Tool], *, code_mode_only: bool = True, defaults: Defaults = LONG_YIELD) -> str:
    return exec_description(nested_tool_table(tools), code_mode_only=code_mode_only, defaults=defaults)


def mcp_tool(name: str, description: str, structured: dict[str, Any] | None, **kwargs: Any) -> Tool:
    return make_tool(
        name,
        description,
        input_schema=EMPTY_OBJECT,
        output_schema=mcp_output_schema(structured),
        namespace="mcp__sample__",
        **kwargs,
    )


# --- names (1.7, cases 19-20) ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("mcp__ologs__get_profile", "mcp__ologs__get_profile"),
        ("hidden-dynamic-tool", "hidden_dynamic_tool"),
        ("mcp__rmcp__echo-tool", "mcp__rmcp__echo_tool"),
        ("", "_"),
        ("1a", "_a"),
        ("a1", "a1"),
        ("$x", "$x"),
        ("naïve", "na_ve"),
        ("日本", "__"),
        ("a.b c", "a_b_c"),
    ],
)
def test_normalize_identifier(name: str, expected: str) -> None:
    assert normalize_identifier(name) == expected


@pytest.mark.parametrize(
    ("name", "namespace", "expected"),
    [
        ("apply_patch", "functions", "apply_patch"),
        ("apply_patch", None, "apply_patch"),
        ("apply_patch", "", "apply_patch"),
        ("apply_patch", "editor", "editor__apply_patch"),
        ("hidden_dynamic_tool", "codex_app", "codex_app__hidden_dynamic_tool"),
        ("echo", "mcp__rmcp__", "mcp__rmcp__echo"),
        ("_private", "ns", "ns_private"),
    ],
)
def test_code_mode_name(name: str, namespace: str | None, expected: str) -> None:
    assert code_mode_name(name, namespace) == expected


def test_table_drops_exec_and_wait_but_keeps_namespaced_ones() -> None:
    table = nested_tool_table(
        [make_tool("exec"), make_tool("wait"), make_tool("exec", namespace="shell"), make_tool("b")]
    )
    assert [(n.global_name, n.code_mode_name) for n in table] == [
        ("b", "b"),
        ("shell__exec", "shell__exec"),
    ]


def test_first_registered_tool_wins_a_normalized_name() -> None:
    first = make_tool("foo-bar", "dashes")
    table = nested_tool_table([first, make_tool("foo_bar", "underscores")])
    assert len(table) == 1
    assert table[0].tool is first
    assert table[0].global_name == "foo_bar"
    assert table[0].code_mode_name == "foo-bar"
    assert all_tools_entries(table)[0]["name"] == "foo_bar"
    assert all_tools_entries(table)[0]["description"].startswith("dashes\n\n")


def test_table_is_ordered_by_code_mode_name() -> None:
    tools = [make_tool("zeta"), make_tool("alpha", namespace="ns"), make_tool("beta"), make_tool("Zed")]
    assert [n.code_mode_name for n in nested_tool_table(tools)] == ["Zed", "beta", "ns__alpha", "zeta"]


# --- declarations (1.5, cases 10-13) -----------------------------------------------------------


def test_function_tool_declaration() -> None:
    nested = only(
        make_tool(
            "hidden_dynamic_tool",
            "Test tool",
            input_schema={
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
                "additionalProperties": False,
            },
            output_schema={
                "type": "object",
                "properties": {"ok": {"type": "boolean"}},
                "required": ["ok"],
            },
        )
    )
    assert nested.description == (
        "Test tool\n\nexec tool declaration:\n```ts\n"
        "declare const tools: { hidden_dynamic_tool(args: { city: string; }): "
        "Promise<{ ok: boolean; }>; };\n```"
    )


def test_freeform_tool_declaration() -> None:
    nested = only(make_tool("apply_patch", "Apply a patch", kind="freeform"))
    assert nested.description == (
        "Apply a patch\n\nexec tool declaration:\n```ts\n"
        "declare const tools: { apply_patch(input: string): Promise<unknown>; };\n```"
    )


def test_namespaced_freeform_tool_declaration() -> None:
    nested = only(make_tool("apply_patch", "Apply a patch", kind="freeform", namespace="editor"))
    assert nested.global_name == "editor__apply_patch"
    assert "declare const tools: { editor__apply_patch(input: string): Promise<unknown>; };" in (
        nested.description
    )


def test_tool_without_schemas_is_unknown_to_unknown() -> None:
    assert "foo(args: unknown): Promise<unknown>;" in only(make_tool("foo", "bar")).description


def test_normalized_name_is_used_in_the_declaration() -> None:
    nested = only(make_tool("hidden-dynamic-tool", "x", input_schema=EMPTY_OBJECT))
    assert "{ hidden_dynamic_tool(args: {}): Promise<unknown>; }" in nested.description


def test_property_descriptions_render_as_comments() -> None:
    nested = only(
        make_tool(
            "weather_tool",
            "Weather tool",
            input_schema={
                "type": "object",
                "properties": {
                    "weather": {
                        "type": "array",
                        "description": "look up weather for a given list of locations",
                        "items": {
                            "type": "object",
                            "properties": {"location": {"type": "string"}},
                            "required": ["location"],
                        },
                    }
                },
                "required": ["weather"],
            },
            output_schema={
                "type": "object",
                "properties": {
                    "forecast": {"type": "string", "description": "human readable weather forecast"}
                },
                "required": ["forecast"],
            },
        )
    )
    assert (
        "weather_tool(args: {\n"
        "  // look up weather for a given list of locations\n"
        "  weather: Array<{ location: string; }>;\n"
        "}): Promise<{\n"
        "  // human readable weather forecast\n"
        "  forecast: string;\n"
        "}>;"
    ) in nested.description


class Point(BaseModel):
    x: int
    y: int


def plot(points: list[Point], label: str | None = None) -> Point:
    """Plot points."""
    return points[0]


def test_function_tool_schema_with_defs_renders_its_refs() -> None:
    nested = only(Tool.from_function(plot))
    assert nested.description == (
        "Plot points.\n\nexec tool declaration:\n```ts\n"
        "declare const tools: { plot(args: { label?: string | null; "
        "points: Array<{ x: number; y: number; }>; }): Promise<{ x: number; y: number; }>; };\n```"
    )


# --- MCP results (1.6.3) -----------------------------------------------------------------------


def test_mcp_output_schema_wraps_the_structured_schema() -> None:
    structured = {"type": "object", "properties": {"echo": {"type": "string"}}}
    assert mcp_output_schema(structured) == {
        "type": "object",
        "properties": {
            "content": {"type": "array", "items": {"type": "object"}},
            "structuredContent": structured,
            "isError": {"type": "boolean"},
            "_meta": {"type": "object"},
        },
        "required": ["content"],
        "additionalProperties": False,
    }
    assert mcp_output_schema(None)["properties"]["structuredContent"] == {}


@pytest.mark.parametrize(
    ("structured", "expected"),
    [
        (None, "CallToolResult"),
        (EMPTY_OBJECT, "CallToolResult<{}>"),
        (
            {
                "type": "object",
                "properties": {"echo": {"type": "string"}, "env": {"type": ["string", "null"]}},
                "required": ["echo", "env"],
                "additionalProperties": False,
            },
            "CallToolResult<{ echo: string; env: string | null; }>",
        ),
        (
            {
                "type": "object",
                "properties": {
                    "results": {"type": "array", "items": {"$ref": "#/definitions/Result~1item~0v1"}}
                },
                "required": ["results"],
                "additionalProperties": False,
                "definitions": {
                    "Result/item~v1": {
                        "type": "object",
                        "properties": {"id": {"type": "string"}, "score": {"type": "number"}},
                        "required": ["id", "score"],
                        "additionalProperties": False,
                    }
                },
            },
            "CallToolResult<{ results: Array<{ id: string; score: number; }>; }>",
        ),
    ],
)
def test_mcp_result_type(structured: dict[str, Any] | None, expected: str) -> None:
    assert mcp_result_type(mcp_output_schema(structured)) == expected


def test_mcp_shaped_schema_without_structured_content_is_plain_result() -> None:
    schema = mcp_output_schema(None)
    del schema["properties"]["structuredContent"]
    assert mcp_result_type(schema) == "CallToolResult"


@pytest.mark.parametrize(
    "schema",
    [
        None,
        {"type": "object"},
        {"properties": {"content": {"type": "array"}, "isError": {"type": "boolean"}, "_meta": {"type": "object"}}},
        {
            "properties": {
                "content": {"type": "array", "items": {"type": "object"}},
                "isError": {"type": "boolean"},
            }
        },
    ],
)
def test_schemas_that_are_not_mcp_shaped(schema: dict[str, Any] | None) -> None:
    assert mcp_result_type(schema) is None


def test_mcp_tool_declaration_uses_call_tool_result() -> None:
    nested = only(mcp_tool("alpha", "First tool", EMPTY_OBJECT))
    assert nested.global_name == "mcp__sample__alpha"
    assert "declare const tools: { mcp__sample__alpha(args: {}): Promise<CallToolResult<{}>>; };" in (
        nested.description
    )


# --- exec description (1.3, 1.5, cases 14-17) --------------------------------------------------


def test_code_mode_only_lists_tools_without_a_preface() -> None:
    description = describe([make_tool("foo", "bar")])
    assert "### `foo`\nbar" in description
    assert "do not attempt to use any other tools directly" not in description


def test_heading_shows_the_raw_name_only_when_normalization_changed_it() -> None:
    description = describe([make_tool("hidden-dynamic-tool", "x"), make_tool("plain", "y")])
    assert "### `hidden_dynamic_tool` (`hidden-dynamic-tool`)\nx" in description
    assert "### `plain`\ny" in description


def test_shared_mcp_types_appear_once() -> None:
    structured_echo = {
        "type": "object",
        "properties": {"echo": {"type": "string"}},
        "required": ["echo"],
        "additionalProperties": False,
    }
    description = describe(
        [mcp_tool("alpha", "First tool", structured_echo), mcp_tool("beta", "Second tool", EMPTY_OBJECT)]
    )
    assert description.count("Shared MCP Types:") == 1
    assert description.count("type CallToolResult<TStructured = { [key: string]: unknown }>") == 1
    assert f"Shared MCP Types:\n```ts\n{MCP_TYPES_PREAMBLE}\n```" in description
    assert "mcp__sample__alpha(args: {}): Promise<CallToolResult<{ echo: string; }>>;" in description
    assert "mcp__sample__beta(args: {}): Promise<CallToolResult<{}>>;" in description


def test_namespace_header_is_emitted_once() -> None:
    guidance = "Shared namespace guidance."
    description = describe(
        [
            mcp_tool("alpha", "First tool", EMPTY_OBJECT, namespace_description=guidance),
            mcp_tool("beta", "Second tool", EMPTY_OBJECT, namespace_description=guidance),
        ]
    )
    assert description.count("## mcp__sample") == 1
    assert "## mcp__sample\nShared namespace guidance.\n\n### `mcp__sample__alpha`\nFirst tool" in description
    assert "declare const tools: { mcp__sample__alpha(args: {}): Promise<CallToolResult<{}>>; };" in description
    assert "declare const tools: { mcp__sample__beta(args: {}): Promise<CallToolResult<{}>>; };" in description


def test_empty_namespace_description_has_no_header() -> None:
    description = describe([mcp_tool("alpha", "First tool", EMPTY_OBJECT, namespace_description="  ")])
    assert "## mcp__sample" not in description
    assert "### `mcp__sample__alpha`" in description


def test_tool_reference_groups_by_namespace() -> None:
    description = describe(
        [
            make_tool("zed", "z", namespace="b_ns", namespace_description="B tools."),
            make_tool("solo", "s"),
            make_tool("apply", "a", namespace="a_ns", namespace_description="A tools."),
            make_tool("alpha", "b", namespace="b_ns"),
        ]
    )
    reference = description[description.index("### `solo`") :]
    assert reference == (
        "### `solo`\ns\n\nexec tool declaration:\n```ts\n"
        "declare const tools: { solo(args: unknown): Promise<unknown>; };\n```\n\n"
        "## a_ns\nA tools.\n\n"
        "### `a_ns__apply`\na\n\nexec tool declaration:\n```ts\n"
        "declare const tools: { a_ns__apply(args: unknown): Promise<unknown>; };\n```\n\n"
        "## b_ns\nB tools.\n\n"
        "### `b_ns__alpha`\nb\n\nexec tool declaration:\n```ts\n"
        "declare const tools: { b_ns__alpha(args: unknown): Promise<unknown>; };\n```\n\n"
        "### `b_ns__zed`\nz\n\nexec tool declaration:\n```ts\n"
        "declare const tools: { b_ns__zed(args: unknown): Promise<unknown>; };\n```"
    )


def test_only_deferred_tools() -> None:
    description = describe([mcp_tool("alpha", "Deferred tool", EMPTY_OBJECT, deferred=True)])
    assert "Some deferred nested tools may be omitted" in description
    assert "filter `ALL_TOOLS` by `name` and `description`" in description
    assert "Shared MCP Types:" in description
    assert "### `mcp__sample__alpha`" not in description


def test_deferred_guidance_in_mixed_mode() -> None:
    description = describe([make_tool("deferred_tool", "Deferred tool", deferred=True)], code_mode_only=False)
    assert "Some deferred nested tools may be omitted" in description
    assert "filter `ALL_TOOLS` by `name` and `description`" in description
    assert "do not print the full `ALL_TOOLS` array" not in description


def test_mixed_mode_does_not_list_tools() -> None:
    description = describe([mcp_tool("alpha", "First tool", EMPTY_OBJECT)], code_mode_only=False)
    assert "###" not in description
    assert "Shared MCP Types:" not in description
    assert "Some deferred nested tools" not in description
    assert description == describe([], code_mode_only=True)


def test_default_yield_time_is_configurable() -> None:
    assert "yield early if the script is still running. Defaults to 30000 ms." in describe([])
    assert "Defaults to 10000 ms." in describe([], defaults=Defaults(exec_yield_time_ms=10_000))
    assert "Defaults to 10000 tokens." in describe([])


def test_default_output_budget_is_configurable() -> None:
    assert "returns directly. Defaults to 500 tokens." in describe([], defaults=Defaults(max_output_tokens=500))


def test_helper_signatures() -> None:
    description = describe([])
    detail = '"auto" | "low" | "high" | "original" | null'
    for signature in [
        "`exit()`",
        "`text(value: string | number | boolean | undefined | null)`",
        f"`image(imageUrlOrItem: string | {{ image_url: string; detail?: {detail} }} | ImageContent, "
        f"detail?: {detail})`",
        "`audio(audioUrlOrItem: string | { audio_url: string } | AudioContent)`",
        "`generatedImage(result: { image_url: string; output_hint?: string })`",
        "`forward_output(...outputs)`",
        "`store(key: string, value: any)`",
        "`load(key: string)`",
        "`notify(value: string | number | boolean | undefined | null)`",
        "`setTimeout(callback: () => void, delayMs?: number)`",
        "`clearTimeout(timeoutId?: number)`",
        "`ALL_TOOLS`",
        "`yield_control()`",
    ]:
        assert f"\n- {signature}: " in description
    assert '`// @exec: {"yield_time_ms": 10000, "max_output_tokens": 1000}`' in description


def test_json_input_variant_talks_about_code() -> None:
    description = exec_description(
        [], code_mode_only=False, defaults=Defaults(30_000), input_format="json"
    )
    assert "- `code` holds raw JavaScript source text: not JSON" in description
    assert "Send raw JavaScript source text" not in description


def test_exec_description_starts_with_the_title() -> None:
    assert describe([]).startswith("Run JavaScript code to orchestrate and compose tool calls.\n- ")


# --- wait (1.2, 1.4) ---------------------------------------------------------------------------


def test_wait_description() -> None:
    description = wait_description(Defaults())
    assert description.startswith(
        "Waits on a yielded `exec` cell and returns new output or completion.\n- Use `wait` only after "
        "`exec` returned `Script running with cell ID ...`."
    )
    assert "Defaults to 10000 ms." in description
    assert "Defaults to 10000 tokens." in description
    assert "`terminate: true` stops the running cell; false or omitted waits for output." in description


def test_wait_texts_quote_the_given_defaults() -> None:
    defaults = Defaults(wait_yield_time_ms=2000, max_output_tokens=500)
    description = wait_description(defaults)
    assert "again. Defaults to 2000 ms." in description
    assert "returns. Defaults to 500 tokens." in description
    properties = wait_parameters(defaults)["properties"]
    assert properties["yield_time_ms"]["description"].endswith("Defaults to 2000 ms.")
    assert properties["max_tokens"]["description"].endswith("Defaults to 500 tokens.")


def test_wait_parameters() -> None:
    assert wait_parameters(Defaults()) == {
        "type": "object",
        "properties": {
            "cell_id": {"type": "string", "description": "Identifier of the running exec cell."},
            "max_tokens": {
                "type": "number",
                "description": "Output token budget for this wait call. Defaults to 10000 tokens.",
            },
            "terminate": {
                "type": "boolean",
                "description": "True stops the running exec cell; false or omitted waits for output.",
            },
            "yield_time_ms": {
                "type": "number",
                "description": "Wait before yielding more output. Defaults to 10000 ms.",
            },
        },
        "required": ["cell_id"],
        "additionalProperties": False,
    }
    wait_parameters(Defaults())["properties"].clear()
    assert "cell_id" in wait_parameters(Defaults())["properties"]


# --- ALL_TOOLS (1.8) ---------------------------------------------------------------------------


def test_all_tools_view_image_entry() -> None:
    view_image = make_tool(
        "view_image",
        "View a local image from the filesystem.",
        input_schema={
            "type": "object",
            "properties": {
                "path": {"type": "string", "description": "Local filesystem path to an image file."}
            },
            "required": ["path"],
            "additionalProperties": False,
        },
        output_schema={
            "type": "object",
            "properties": {
                "image_url": {"type": "string", "description": "Data URL for the loaded image."},
                "detail": {
                    "type": "string",
                    "enum": ["high", "original"],
                    "description": "Image detail hint returned by view_image. Returns `high` for default "
                    "resized behavior or `original` when original resolution is preserved.",
                },
            },
            "required": ["image_url", "detail"],
            "additionalProperties": False,
        },
    )
    [entry] = [e for e in all_tools_entries(nested_tool_table([view_image])) if e["name"] == "view_image"]
    assert entry["description"].endswith(
        "view_image(args: {\n"
        "  // Local filesystem path to an image file.\n"
        "  path: string;\n"
        "}): Promise<{\n"
        "  // Image detail hint returned by view_image. Returns `high` for default resized behavior "
        "or `original` when original resolution is preserved.\n"
        '  detail: "high" | "original";\n'
        "  // Data URL for the loaded image.\n"
        "  image_url: string;\n"
        "}>; };\n```"
    )


def test_all_tools_prepends_the_namespace_description_and_keeps_deferred_tools() -> None:
    hidden = make_tool(
        "hidden_dynamic_tool",
        "A hidden dynamic tool.",
        input_schema={
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
        namespace="codex_app",
        namespace_description="Codex app tools.",
        deferred=True,
    )
    entries = all_tools_entries(nested_tool_table([hidden, make_tool("plain", "Plain.")]))
    assert [e["name"] for e in entries] == ["codex_app__hidden_dynamic_tool", "plain"]
    assert entries[0]["description"] == (
        "Codex app tools.\n\nA hidden dynamic tool.\n\nexec tool declaration:\n```ts\n"
        "declare const tools: { codex_app__hidden_dynamic_tool(args: { city: string; }): "
        "Promise<unknown>; };\n```"
    )
    assert entries[1]["description"].startswith("Plain.\n\nexec tool declaration:")
