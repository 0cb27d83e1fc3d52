"""The OpenAI Chat Completions format.

Chat Completions has no freeform tools, so `exec` is a function tool taking `{code}` (the
pragma line may still start the code); `wait` is the same function tool as in the Responses
API. The output is the `content` of the `role: "tool"` message answering the call: always a
list of text parts (the API also takes a plain string; one shape is simpler to handle).

Tool messages carry text parts only (the SDK's `ChatCompletionToolMessageParam`), so images
and audio are replaced by text notes saying they were left out.

Invariant: pure functions of their arguments.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from codemode._describe.descriptions import wait_description, wait_parameters
from codemode._describe.names import EXEC_TOOL_NAME, WAIT_TOOL_NAME
from codemode._output import model_items
from codemode.formats._exec_args import exec_parameters
from codemode.formats._notes import item_text

if TYPE_CHECKING:
    from codemode._protocol.config import Defaults
    from codemode._protocol.types import ExecResult

__all__ = ["output", "tool_specs"]

_TEXT_ONLY = "Chat Completions tool messages carry text only"


def tool_specs(description: str, defaults: Defaults) -> list[dict[str, Any]]:
    """`exec` and `wait` as Chat Completions function tools.

    `description` is the exec tool's text, built once by `codemode.formats.tool_specs`.
    """
    return [
        _function_tool(EXEC_TOOL_NAME, description, exec_parameters()),
        _function_tool(WAIT_TOOL_NAME, wait_description(defaults), wait_parameters(defaults)),
    ]


def output(result: ExecResult) -> list[dict[str, Any]]:
    """The `content` of the tool message: always a list of text parts."""
    return [{"type": "text", "text": item_text(item, _TEXT_ONLY)} for item in model_items(result)]


def _function_tool(name: str, description: str, parameters: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": parameters,
            "strict": False,
        },
    }

