"""An `ExecResult` as one string, for framework tool channels that carry text only.

The header item already ends in a newline; later items are joined by newlines, as the reference
joins text output. Media become a note saying they were left out and why, so the model knows
output was dropped rather than never produced.
"""

from __future__ import annotations

from codemode._result import ExecResult
from codemode._types import AudioItem, ImageItem, TextItem
from codemode.formats._notes import omitted_note

__all__ = ["text_output"]


def text_output(result: ExecResult, media_reason: str) -> str:
    """What the model reads for `result` when only text can reach it (`media_reason` says why)."""
    texts = []
    for item in result.model_items():
        match item:
            case TextItem(text):
                texts.append(text)
            case ImageItem():
                texts.append(omitted_note("image", media_reason))
            case AudioItem():
                texts.append(omitted_note("audio", media_reason))
    if result.cell_id is None:
        return "\n".join(texts)  # a rejected input: its message, no header
    header, *rest = texts
    return header + "\n".join(rest)
