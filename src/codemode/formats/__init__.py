"""Provider formats: `exec`/`wait` tool specs and cell outputs for each supported API.

One pure module per API: `responses` (OpenAI Responses, what Codex sends), `chat` (OpenAI Chat
Completions), `anthropic` (Anthropic Messages) and `mcp` (Model Context Protocol). Each has
`tool_specs(description, defaults)` and `output(result)`; this module picks one by `Api` name.
Rendering a result is a job of this layer, so `ExecResult` stays plain data:
`to_model(result, api)` (also `codemode.to_model`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, get_args, overload

from codemode._describe.descriptions import ExecInput, exec_description
from codemode._describe.names import nested_tool_table
from codemode._protocol.config import DEFAULT_DEFAULTS, Defaults
from codemode._protocol.text import safe_text
from codemode.errors import UsageError
from codemode.formats import anthropic, chat, mcp, responses

if TYPE_CHECKING:
    from codemode._protocol.types import ExecResult
    from codemode.tools._tool import Tool

__all__ = ["Api", "described_tool_specs", "exec_input", "to_model", "tool_specs"]

Api: TypeAlias = Literal["responses", "chat", "anthropic", "mcp"]


def tool_specs(
    tools: Sequence[Tool],
    api: Api = "responses",
    *,
    code_mode_only: bool,
    defaults: Defaults = DEFAULT_DEFAULTS,
    notes: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """The `exec` and `wait` tool definitions for `api`, describing `tools` to the model.

    Args:
        tools: the session's nested tools, in registration order (deferred ones included).
        api: the provider format.
        code_mode_only: True when the tools are reachable only through `exec` (the exec
            description then lists them); False when the host also offers them directly.
        defaults: the session's defaults (yield times, output budget), quoted to the model.
        notes: extra paragraphs for the end of the exec description (e.g. servers that failed).

    Raises:
        UsageError: `api` is not a supported format.
    """
    description = exec_description(
        nested_tool_table(tools),
        code_mode_only=code_mode_only,
        defaults=defaults,
        notes=notes,
        input_format=exec_input(api),
    )
    return described_tool_specs(description, api, defaults)


def exec_input(api: Api) -> ExecInput:
    """How `api` hands `exec` the script: raw text (Responses' custom tool) or a `code` argument."""
    return "freeform" if api == "responses" else "json"


def described_tool_specs(description: str, api: Api, defaults: Defaults) -> list[dict[str, Any]]:
    """The `exec` and `wait` definitions for `api` around an exec description built already
    (a session builds it once per tool set), quoting `defaults` in the wait (and MCP exec) text.
    A tool description with a lone surrogate (an MCP server's JSON may decode to one) gets U+FFFD.

    Raises:
        UsageError: `api` is not a supported format.
    """
    description = safe_text(description)
    match _check(api):
        case "responses":
            return responses.tool_specs(description, defaults)
        case "chat":
            return chat.tool_specs(description, defaults)
        case "anthropic":
            return anthropic.tool_specs(description, defaults)
        case "mcp":
            return mcp.tool_specs(description, defaults)


@overload
def to_model(result: ExecResult, api: Literal["responses", "chat", "anthropic"] = "responses") -> list[dict[str, Any]]: ...
@overload
def to_model(result: ExecResult, api: Literal["mcp"]) -> dict[str, Any]: ...
def to_model(result: ExecResult, api: Api = "responses") -> list[dict[str, Any]] | dict[str, Any]:
    """`result` as the tool-call output for `api`; one shape per API, whatever the result:

    * responses: the `output` of the `custom_tool_call_output` (exec) or `function_call_output`
      (wait): a list of `input_text` / `input_image` / `input_audio` items;
    * chat: the `content` of the `role: "tool"` message: a list of `text` parts;
    * anthropic: the `content` of the `tool_result` block: a list of `text` / `image` blocks;
    * mcp: a `CallToolResult` as a dict with wire keys (`content`, `isError`).

    The texts are the reference's (header, output, error, truncation); only the container
    differs from it (it sends a lone text item as a plain string). Lone surrogates are U+FFFD,
    so the output encodes as UTF-8 (`codemode._output.model_items`).

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
