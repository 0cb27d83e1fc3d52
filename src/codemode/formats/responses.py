"""The OpenAI Responses API format: what Codex itself sends (spec 1.1, 1.2, 2.2).

`exec` is a custom (freeform) tool whose input is constrained by a Lark grammar to raw source
with an optional pragma line; `wait` is a non-strict function tool. A cell's output is a plain
list of `input_text` / `input_image` / `input_audio` content items (the reference sends a lone
text item as a plain string; the API takes both, and one shape is simpler to handle); it goes in
a `custom_tool_call_output` for `exec` and a
`function_call_output` for `wait`.

Audio uses the SDK's `ResponseInputAudioParam` shape (`input_audio: {data, format}`), which only
knows `mp3` and `wav`; other audio becomes a text note.

Invariant: pure functions of their arguments.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from codemode._describe.descriptions import wait_description, wait_parameters
from codemode._describe.names import EXEC_TOOL_NAME, WAIT_TOOL_NAME
from codemode._output import model_items
from codemode._protocol.types import AudioItem, ImageItem, OutputItem, TextItem
from codemode.formats._data_url import parse_data_url
from codemode.formats._notes import omitted_note

if TYPE_CHECKING:
    from codemode._protocol.config import Defaults
    from codemode._protocol.types import ExecResult

__all__ = ["EXEC_GRAMMAR", "output", "tool_specs"]

# Either a pragma line, a newline and the source, or just the source.
EXEC_GRAMMAR = r"""
start: pragma_source | plain_source
pragma_source: PRAGMA_LINE NEWLINE SOURCE
plain_source: SOURCE

PRAGMA_LINE: /[ \t]*\/\/ @exec:[^\r\n]*/
NEWLINE: /\r?\n/
SOURCE: /[\s\S]+/
"""

_AUDIO_FORMATS = {
    "audio/wav": "wav",
    "audio/wave": "wav",
    "audio/x-wav": "wav",
    "audio/vnd.wave": "wav",
    "audio/mpeg": "mp3",
    "audio/mp3": "mp3",
    "audio/mpeg3": "mp3",
    "audio/x-mp3": "mp3",
}


def tool_specs(description: str, defaults: Defaults) -> list[dict[str, Any]]:
    """The `exec` custom tool and the `wait` function tool, as Responses API `tools` entries.

    `description` is the exec tool's text, built once by `codemode.formats.tool_specs`.
    """
    return [
        {
            "type": "custom",
            "name": EXEC_TOOL_NAME,
            "description": description,
            "format": {"type": "grammar", "syntax": "lark", "definition": EXEC_GRAMMAR},
        },
        {
            "type": "function",
            "name": WAIT_TOOL_NAME,
            "description": wait_description(defaults),
            "strict": False,
            "parameters": wait_parameters(defaults),
        },
    ]


def output(result: ExecResult) -> list[dict[str, Any]]:
    """The `output` of the tool call's output item: always a list of content items."""
    return [_content_item(item) for item in model_items(result)]


def _content_item(item: OutputItem) -> dict[str, Any]:
    match item:
        case TextItem(text):
            return {"type": "input_text", "text": text}
        case ImageItem(image_url, detail):
            return {"type": "input_image", "image_url": image_url, "detail": detail or "high"}
        case AudioItem(audio_url):
            parsed = parse_data_url(audio_url)
            audio_format = _AUDIO_FORMATS.get(parsed.mime_type) if parsed else None
            if parsed is None or audio_format is None:
                mime = parsed.mime_type if parsed else "an unreadable data URL"
                note = omitted_note("audio", f"the Responses API takes mp3 or wav audio, not {mime}")
                return {"type": "input_text", "text": note}
            return {"type": "input_audio", "input_audio": {"data": parsed.data, "format": audio_format}}
