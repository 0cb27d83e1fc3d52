"""The MCP format: `exec` and `wait` as MCP tools, and a cell's output as a `CallToolResult`.

MCP tools take JSON arguments, so `exec` takes `{code, yield_time_ms?, max_output_tokens?}`.
Outputs use the wire (camelCase) keys: `content` holds text, image and audio blocks (media as
base64 `data` plus `mimeType`), and `isError` is true when the cell failed or the input was
rejected. An image detail
other than the default `high` travels in `_meta["codex/imageDetail"]`, the key `image(...)`
reads back from MCP image blocks.

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

__all__ = ["IMAGE_DETAIL_META_KEY", "output", "tool_specs"]

IMAGE_DETAIL_META_KEY = "codex/imageDetail"


def tool_specs(description: str, defaults: Defaults) -> list[dict[str, Any]]:
    """`exec` and `wait` as MCP `Tool` objects (wire keys).

    `description` is the exec tool's text, built once by `codemode.formats.tool_specs`.
    """
    parameters = exec_parameters()
    parameters["properties"] |= {
        "max_output_tokens": {
            "type": "integer",
            "minimum": 0,
            "description": "Output token budget for this exec call. Defaults to "
            f"{defaults.max_output_tokens} tokens.",
        },
        "yield_time_ms": {
            "type": "integer",
            "minimum": 0,
            "description": "Yield if the script is still running after this many milliseconds. "
            f"Defaults to {defaults.exec_yield_time_ms} ms.",
        },
    }
    return [
        {"name": EXEC_TOOL_NAME, "description": description, "inputSchema": parameters},
        {"name": WAIT_TOOL_NAME, "description": wait_description(defaults), "inputSchema": wait_parameters(defaults)},
    ]


def output(result: ExecResult) -> dict[str, Any]:
    """A `CallToolResult` as JSON."""
    return {
        "content": [_block(item) for item in model_items(result)],
        "isError": result.status in ("failed", "rejected"),
    }


def _block(item: OutputItem) -> dict[str, Any]:
    match item:
        case TextItem(text):
            return {"type": "text", "text": text}
        case ImageItem(image_url, detail):
            block = _media_block("image", image_url)
            if block["type"] == "image" and detail not in (None, "high"):
                block["_meta"] = {IMAGE_DETAIL_META_KEY: detail}
            return block
        case AudioItem(audio_url):
            return _media_block("audio", audio_url)


def _media_block(kind: str, url: str) -> dict[str, Any]:
    parsed = parse_data_url(url)
    if parsed is None:
        return {"type": "text", "text": omitted_note(kind, "not a readable data URL")}
    return {"type": kind, "data": parsed.data, "mimeType": parsed.mime_type}
