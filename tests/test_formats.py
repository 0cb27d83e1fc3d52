"""Provider formats: tool specs and outputs, checked against each provider SDK's own types."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from typing import Any, cast

import mcp.types
import pytest
from anthropic.types import ToolParam as AnthropicToolParam, ToolResultBlockParam
from anthropic.types.tool_result_block_param import Content as AnthropicContent
from openai.types.chat import (
    ChatCompletionContentPartTextParam,
    ChatCompletionToolMessageParam,
    ChatCompletionToolUnionParam,
)
from openai.types.responses import (
    ResponseCustomToolCallOutputParam,
    ResponseInputAudioParam,
    ResponseInputImageParam,
    ResponseInputTextParam,
    ToolParam,
)
from openai.types.responses.response_custom_tool_call_output_param import OutputOutputContentList
from openai.types.responses.response_function_call_output_item_param import (
    ResponseFunctionCallOutputItemParam,
)
from openai.types.responses.response_input_param import FunctionCallOutput
from pydantic import TypeAdapter

from codemode._describe import exec_description, nested_tool_table, wait_description, wait_parameters
from codemode._protocol.config import Defaults
from codemode._protocol.types import AudioItem, ExecResult, ImageItem, OutputItem, TextItem
from codemode.errors import UsageError
from codemode.formats import Api, to_model, tool_specs
from codemode.formats._data_url import DataUrl, parse_data_url
from codemode.formats.responses import EXEC_GRAMMAR
from codemode.tools._tool import Tool

HEADER = "Script completed\nWall time 0.0 seconds\nOutput:\n"
PNG = "data:image/png;base64,iVBORw0KGgo="
WAV = "data:audio/wav;base64,YXVkaW8="
TOOLS = [Tool(name="foo", description="bar", handler=lambda arguments: arguments)]
APIS: list[Api] = ["responses", "chat", "anthropic", "mcp"]
DEFAULTS = Defaults(exec_yield_time_ms=30_000)


def check(type_: Any, value: Any) -> None:
    """`value` validates as `type_`, and validation dropped no key (TypedDicts ignore extras)."""
    assert _eager(TypeAdapter(type_).validate_python(value)) == value


def _eager(value: object) -> object:
    """Drain the lazy validators pydantic uses for `Iterable` fields, so they validate now."""
    if isinstance(value, dict):
        return {key: _eager(item) for key, item in cast(dict[str, object], value).items()}
    if isinstance(value, list | Iterator):
        return [_eager(item) for item in cast(Iterable[object], value)]
    return value


def completed(*items: OutputItem) -> ExecResult:
    return ExecResult(status="completed", cell_id="1", items=items)


def specs(api: Api, *, code_mode_only: bool = True) -> list[dict[str, Any]]:
    return tool_specs(TOOLS, api, code_mode_only=code_mode_only, defaults=DEFAULTS)


MIXED = completed(TextItem("a"), ImageItem(PNG), ImageItem(PNG, detail="original"), AudioItem(WAV))


# --- dispatch ----------------------------------------------------------------------------------


@pytest.mark.parametrize("api", APIS)
def test_specs_name_exec_then_wait(api: Api) -> None:
    names = [spec.get("name") or spec["function"]["name"] for spec in specs(api)]
    assert names == ["exec", "wait"]


def test_unknown_api_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="unknown api 'gemini'; use one of: responses, chat"):
        to_model(completed(), "gemini")  # type: ignore[arg-type]
    with pytest.raises(UsageError):
        tool_specs(TOOLS, "gemini", code_mode_only=True)  # type: ignore[arg-type]


def test_to_model_defaults_to_responses() -> None:
    assert to_model(completed(TextItem("a"))) == to_model(completed(TextItem("a")), "responses")


# --- Responses API -----------------------------------------------------------------------------


def test_responses_tool_specs() -> None:
    exec_spec, wait_spec = specs("responses")
    check(list[ToolParam], [exec_spec, wait_spec])
    assert exec_spec == {
        "type": "custom",
        "name": "exec",
        "description": exec_description(
            nested_tool_table(TOOLS), code_mode_only=True, defaults=DEFAULTS
        ),
        "format": {"type": "grammar", "syntax": "lark", "definition": EXEC_GRAMMAR},
    }
    assert "### `foo`\nbar" in exec_spec["description"]
    assert wait_spec == {
        "type": "function",
        "name": "wait",
        "description": wait_description(DEFAULTS),
        "strict": False,
        "parameters": wait_parameters(DEFAULTS),
    }


def test_exec_grammar_terminals() -> None:
    assert EXEC_GRAMMAR.strip().splitlines() == [
        "start: pragma_source | plain_source",
        "pragma_source: PRAGMA_LINE NEWLINE SOURCE",
        "plain_source: SOURCE",
        "",
        r"PRAGMA_LINE: /[ \t]*\/\/ @exec:[^\r\n]*/",
        r"NEWLINE: /\r?\n/",
        r"SOURCE: /[\s\S]+/",
    ]
    pragma = re.compile(r"[ \t]*// @exec:[^\r\n]*")
    assert pragma.fullmatch('  // @exec: {"yield_time_ms": 10}')
    assert not pragma.fullmatch("text(1)")


def test_responses_single_text_is_a_list_too() -> None:
    assert to_model(completed(), "responses") == [{"type": "input_text", "text": HEADER}]
    check(
        ResponseCustomToolCallOutputParam,
        {"type": "custom_tool_call_output", "call_id": "c1", "output": to_model(completed(), "responses")},
    )


def test_responses_rejected_input_is_its_message() -> None:
    rejected = ExecResult(status="rejected", cell_id=None, error="exec pragma must be followed by JavaScript")
    assert to_model(rejected, "responses") == [
        {"type": "input_text", "text": "exec pragma must be followed by JavaScript"}
    ]


def test_responses_content_items() -> None:
    output = to_model(MIXED, "responses")
    assert output == [
        {"type": "input_text", "text": HEADER},
        {"type": "input_text", "text": "a"},
        {"type": "input_image", "image_url": PNG, "detail": "high"},
        {"type": "input_image", "image_url": PNG, "detail": "original"},
        {"type": "input_audio", "input_audio": {"data": "YXVkaW8=", "format": "wav"}},
    ]
    # exec answers with a custom tool call output, wait with a function call output; the SDK
    # knows no audio in either list, so audio is checked as the SDK's own audio input item.
    *visual, audio = output
    check(list[OutputOutputContentList], visual)
    check(list[ResponseFunctionCallOutputItemParam], visual)
    check(ResponseInputAudioParam, audio)
    check(FunctionCallOutput, {"type": "function_call_output", "call_id": "c1", "output": "x"})


def test_responses_failed_result_ends_with_the_error() -> None:
    failed = ExecResult(status="failed", cell_id="2", items=(TextItem("before"),), error="Error: boom")
    assert to_model(failed, "responses") == [
        {"type": "input_text", "text": "Script failed\nWall time 0.0 seconds\nOutput:\n"},
        {"type": "input_text", "text": "before"},
        {"type": "input_text", "text": "Script error:\nError: boom"},
    ]


def test_responses_image_without_detail_gets_high() -> None:
    [_, image] = to_model(completed(ImageItem(PNG, detail=None)), "responses")
    assert image == {"type": "input_image", "image_url": PNG, "detail": "high"}
    check(ResponseInputImageParam, image)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("data:audio/mpeg;base64,AAAA", {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "mp3"}}),
        (
            "data:audio/ogg;base64,AAAA",
            {"type": "input_text", "text": "[audio omitted: the Responses API takes mp3 or wav audio, not audio/ogg]"},
        ),
    ],
)
def test_responses_audio_formats(url: str, expected: dict[str, Any]) -> None:
    [_, item] = to_model(completed(AudioItem(url)), "responses")
    assert item == expected
    check(ResponseInputAudioParam | ResponseInputTextParam, item)


# --- Chat Completions --------------------------------------------------------------------------


def test_chat_tool_specs() -> None:
    exec_spec, wait_spec = specs("chat")
    check(list[ChatCompletionToolUnionParam], [exec_spec, wait_spec])
    assert exec_spec["function"]["parameters"] == {
        "type": "object",
        "properties": {
            "code": {
                "type": "string",
                "description": "Raw JavaScript source to run, optionally starting with a "
                "`// @exec: {...}` pragma line.",
            }
        },
        "required": ["code"],
        "additionalProperties": False,
    }
    assert exec_spec["function"]["description"] == exec_description(
        nested_tool_table(TOOLS), code_mode_only=True, defaults=DEFAULTS, input_format="json"
    )
    assert wait_spec == {
        "type": "function",
        "function": {
            "name": "wait",
            "description": wait_description(DEFAULTS),
            "parameters": wait_parameters(DEFAULTS),
            "strict": False,
        },
    }


def test_chat_output() -> None:
    assert to_model(completed(), "chat") == [{"type": "text", "text": HEADER}]
    output = to_model(MIXED, "chat")
    assert output == [
        {"type": "text", "text": HEADER},
        {"type": "text", "text": "a"},
        {"type": "text", "text": "[image omitted: Chat Completions tool messages carry text only]"},
        {"type": "text", "text": "[image omitted: Chat Completions tool messages carry text only]"},
        {"type": "text", "text": "[audio omitted: Chat Completions tool messages carry text only]"},
    ]
    check(list[ChatCompletionContentPartTextParam], output)
    for content in (output, to_model(completed(), "chat")):
        check(ChatCompletionToolMessageParam, {"role": "tool", "tool_call_id": "c1", "content": content})


# --- Anthropic Messages ------------------------------------------------------------------------


def test_anthropic_tool_specs() -> None:
    exec_spec, wait_spec = specs("anthropic")
    check(list[AnthropicToolParam], [exec_spec, wait_spec])
    assert exec_spec["input_schema"]["required"] == ["code"]
    assert wait_spec == {"name": "wait", "description": wait_description(DEFAULTS), "input_schema": wait_parameters(DEFAULTS)}


def test_anthropic_output() -> None:
    output = to_model(MIXED, "anthropic")
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}
    assert output == [
        {"type": "text", "text": HEADER},
        {"type": "text", "text": "a"},
        image,
        image,
        {"type": "text", "text": "[audio omitted: Messages API tool results carry no audio]"},
    ]
    check(list[AnthropicContent], output)
    check(ToolResultBlockParam, {"type": "tool_result", "tool_use_id": "t1", "is_error": False, "content": "x"})


def test_anthropic_output_is_a_list_even_for_one_text() -> None:
    assert to_model(completed(), "anthropic") == [{"type": "text", "text": HEADER}]


def test_anthropic_drops_empty_text_and_unsupported_images() -> None:
    output = to_model(completed(TextItem(""), ImageItem("data:image/bmp;base64,Qk0=")), "anthropic")
    assert output == [
        {"type": "text", "text": HEADER},
        {
            "type": "text",
            "text": "[image omitted: the Messages API takes JPEG, PNG, GIF or WebP, not image/bmp]",
        },
    ]
    check(list[AnthropicContent], output)


# --- MCP ---------------------------------------------------------------------------------------


def test_mcp_tool_specs() -> None:
    exec_spec, wait_spec = specs("mcp")
    for spec in (exec_spec, wait_spec):
        tool = mcp.types.Tool.model_validate(spec)
        assert tool.model_dump(by_alias=True, exclude_none=True) == spec
    assert exec_spec["inputSchema"] == {
        "type": "object",
        "properties": {
            "code": {
                "type": "string",
                "description": "Raw JavaScript source to run, optionally starting with a "
                "`// @exec: {...}` pragma line.",
            },
            "max_output_tokens": {
                "type": "integer",
                "minimum": 0,
                "description": "Output token budget for this exec call. Defaults to 10000 tokens.",
            },
            "yield_time_ms": {
                "type": "integer",
                "minimum": 0,
                "description": "Yield if the script is still running after this many milliseconds. "
                "Defaults to 30000 ms.",
            },
        },
        "required": ["code"],
        "additionalProperties": False,
    }
    assert wait_spec == {"name": "wait", "description": wait_description(DEFAULTS), "inputSchema": wait_parameters(DEFAULTS)}


def test_mcp_output() -> None:
    output = to_model(MIXED, "mcp")
    assert output == {
        "content": [
            {"type": "text", "text": HEADER},
            {"type": "text", "text": "a"},
            {"type": "image", "data": "iVBORw0KGgo=", "mimeType": "image/png"},
            {
                "type": "image",
                "data": "iVBORw0KGgo=",
                "mimeType": "image/png",
                "_meta": {"codex/imageDetail": "original"},
            },
            {"type": "audio", "data": "YXVkaW8=", "mimeType": "audio/wav"},
        ],
        "isError": False,
    }
    result = mcp.types.CallToolResult.model_validate(output)
    assert result.is_error is False
    assert [block.type for block in result.content] == ["text", "text", "image", "image", "audio"]
    dumped = result.model_dump(by_alias=True, exclude_none=True, exclude={"result_type"})
    assert dumped == output


def test_mcp_output_marks_failures() -> None:
    failed = ExecResult(status="failed", cell_id="3", error="exec cell 3 not found")
    result = mcp.types.CallToolResult.model_validate(to_model(failed, "mcp"))
    assert result.is_error is True
    assert [block.text for block in result.content if isinstance(block, mcp.types.TextContent)] == [
        "Script failed\nWall time 0.0 seconds\nOutput:\n",
        "Script error:\nexec cell 3 not found",
    ]
    for status in ("running", "terminated"):
        ok = ExecResult(status=status, cell_id="3")
        assert to_model(ok, "mcp")["isError"] is False


def test_mcp_unreadable_data_url_becomes_a_note() -> None:
    output = to_model(completed(ImageItem("data:image/png;base64")), "mcp")
    assert output["content"][1] == {"type": "text", "text": "[image omitted: not a readable data URL]"}


def test_mcp_output_marks_rejected_input() -> None:
    rejected = ExecResult(status="rejected", cell_id=None, error="exec source is too large")
    assert to_model(rejected, "mcp") == {
        "content": [{"type": "text", "text": "exec source is too large"}],
        "isError": True,
    }


# --- the defaults every spec quotes ---------------------------------------------------------------


@pytest.mark.parametrize("api", APIS)
def test_specs_quote_the_given_defaults(api: Api) -> None:
    defaults = Defaults(exec_yield_time_ms=3000, wait_yield_time_ms=2000, max_output_tokens=500)
    text = json.dumps(tool_specs(TOOLS, api, code_mode_only=True, defaults=defaults))
    assert "Defaults to 3000 ms" in text
    assert "Defaults to 2000 ms" in text
    assert "Defaults to 500 tokens" in text
    assert "10000" not in text.replace('\\"yield_time_ms\\": 10000', "")  # only the pragma example


# --- data URLs ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (PNG, DataUrl("image/png", "iVBORw0KGgo=")),
        ("DATA:Image/PNG;BASE64,AAA", DataUrl("image/png", "AAA")),
        ("data:audio/wav;rate=8000;base64,AAA", DataUrl("audio/wav", "AAA")),
        ("data:text/plain,hi%20there", DataUrl("text/plain", "aGkgdGhlcmU=")),
        ("data:;base64,AAA", DataUrl("application/octet-stream", "AAA")),
        ("data:image/png;base64", None),
        ("https://example.com/a.png", None),
        ("no scheme", None),
    ],
)
def test_parse_data_url(url: str, expected: DataUrl | None) -> None:
    assert parse_data_url(url) == expected
