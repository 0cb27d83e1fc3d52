"""Provider formats: `exec`/`wait` tool specs and cell outputs for each supported API.

One pure module per API: `responses` (OpenAI Responses, what Codex sends), `chat` (OpenAI Chat
Completions), `anthropic` (Anthropic Messages) and `mcp` (Model Context Protocol). Each has
`tool_specs(description)` and `output(result)`; this module picks one by `Api` name.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, get_args

from codemode._describe.descriptions import ExecInput, exec_description
from codemode._describe.names import nested_tool_table
from codemode.errors import UsageError
from codemode.formats import anthropic, chat, mcp, responses

if TYPE_CHECKING:
    from codemode._result import ExecResult
    from codemode.tools._tool import Tool

__all__ = ["Api", "described_tool_specs", "exec_input", "to_model", "tool_specs"]

Api: TypeAlias = Literal["responses", "chat", "anthropic", "mcp"]


def tool_specs(
    tools: Sequence[Tool],
    api: Api = "responses",
    *,
    code_mode_only: bool,
    default_yield_time_ms: int,
    notes: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """The `exec` and `wait` tool definitions for `api`, describing `tools` to the model.

    Args:
        tools: the session's nested tools, in registration order (deferred ones included).
        api: the provider format.
        code_mode_only: True when the tools are reachable only through `exec` (the exec
            description then lists them); False when the host also offers them directly.
        default_yield_time_ms: the session's default `yield_time_ms`, quoted to the model.
        notes: extra paragraphs for the end of the exec description (e.g. servers that failed).

    Raises:
        UsageError: `api` is not a supported format.
    """
    description = exec_description(
        nested_tool_table(tools),
        code_mode_only=code_mode_only,
        default_yield_time_ms=default_yield_time_ms,
        notes=notes,
        input_format=exec_input(api),
    )
    return described_tool_specs(description, api, default_yield_time_ms=default_yield_time_ms)


def exec_input(api: Api) -> ExecInput:
    """How `api` hands `exec` the script: raw text (Responses' custom tool) or a `code` argument."""
    return "freeform" if api == "responses" else "json"


def described_tool_specs(description: str, api: Api, *, default_yield_time_ms: int) -> list[dict[str, Any]]:
    """The `exec` and `wait` definitions for `api` around an exec description built already
    (a session builds it once per tool set).

    Raises:
        UsageError: `api` is not a supported format.
    """
    match _check(api):
        case "responses":
            return responses.tool_specs(description)
        case "chat":
            return chat.tool_specs(description)
        case "anthropic":
            return anthropic.tool_specs(description)
        case "mcp":
            return mcp.tool_specs(description, default_yield_time_ms)


def to_model(result: ExecResult, api: Api = "responses") -> Any:
    """`result` as the tool-call output for `api`.

    responses: a string, or a list of `input_text`/`input_image`/`input_audio` items;
    chat: the tool message `content` (string or text parts); anthropic: the `tool_result`
    `content` blocks; mcp: a `CallToolResult` dict with wire keys.

    Raises:
        UsageError: `api` is not a supported format.
    """
    match _check(api):
        case "responses":
            return responses.output(result)
        case "chat":
            return chat.output(result)
        case "anthropic":
            return anthropic.output(result)
        case "mcp":
            return mcp.output(result)


def _check(api: str) -> Api:
    for known in get_args(Api):
        if api == known:
            return known
    raise UsageError(f"unknown api {api!r}; use one of: {', '.join(get_args(Api))}")
