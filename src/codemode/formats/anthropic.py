"""The Anthropic Messages API format.

`exec` and `wait` are client tools with an `input_schema` (`exec` takes `{code}`; the pragma
line may still start the code). The output is the `content` list of the `tool_result` block
answering the call: text blocks and base64 image blocks. Pass
`is_error=result.status in ("failed", "rejected")` on the block yourself.

Left out, each replaced by a text note: audio (tool results cannot carry it) and images whose
MIME type is not one the API takes (JPEG, PNG, GIF, WebP). Empty text items are dropped,
because the API rejects empty text blocks.

Invariant: pure functions of their arguments.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from codemode._describe.descriptions import wait_description, wait_parameters
from codemode._describe.names import EXEC_TOOL_NAME, WAIT_TOOL_NAME
from codemode._output import model_items
from codemode._protocol.types import AudioItem, ImageItem, OutputItem, TextItem
from codemode.formats._data_url import parse_data_url
from codemode.formats._exec_args import exec_parameters
from codemode.formats._notes import omitted_note

if TYPE_CHECKING:
    from codemode._protocol.config import Defaults
    from codemode._protocol.types import ExecResult

__all__ = ["output", "tool_specs"]

_IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})


def tool_specs(description: str, defaults: Defaults) -> list[dict[str, Any]]:
    """`exec` and `wait` as Messages API `tools` entries.

    `description` is the exec tool's text, built once by `codemode.formats.tool_specs`.
    """
    return [
        {"name": EXEC_TOOL_NAME, "description": description, "input_schema": exec_parameters()},
        {"name": WAIT_TOOL_NAME, "description": wait_description(defaults), "input_schema": wait_parameters(defaults)},
    ]


def output(result: ExecResult) -> list[dict[str, Any]]:
    """The `content` of the `tool_result` block."""
    return [
        _block(item)
        for item in model_items(result)
        if not (isinstance(item, TextItem) and not item.text)
    ]


def _block(item: OutputItem) -> dict[str, Any]:
    match item:
        case TextItem(text):
            return {"type": "text", "text": text}
        case ImageItem(image_url):
            parsed = parse_data_url(image_url)
            if parsed is None or parsed.mime_type not in _IMAGE_TYPES:
                mime = parsed.mime_type if parsed else "an unreadable data URL"
                note = omitted_note("image", f"the Messages API takes JPEG, PNG, GIF or WebP, not {mime}")
                return {"type": "text", "text": note}
            source = {"type": "base64", "media_type": parsed.mime_type, "data": parsed.data}
            return {"type": "image", "source": source}
        case AudioItem():
            return {"type": "text", "text": omitted_note("audio", "Messages API tool results carry no audio")}
