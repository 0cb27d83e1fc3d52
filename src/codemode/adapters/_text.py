"""An `ExecResult` as one string, for framework tool channels that carry text only.

The header item already ends in a newline; later items are joined by newlines, as the reference
joins text output. Media become a note saying they were left out and why, so the model knows
output was dropped rather than never produced.
"""

from __future__ import annotations

from codemode._output import model_items
from codemode._protocol.types import ExecResult
from codemode.formats._notes import item_text

__all__ = ["text_output"]


def text_output(result: ExecResult, media_reason: str) -> str:
    """What the model reads for `result` when only text can reach it (`media_reason` says why)."""
    texts = [item_text(item, media_reason) for item in model_items(result)]
    if result.cell_id is None:
        return "\n".join(texts)  # a rejected input: its message, no header
    header, *rest = texts
    return header + "\n".join(rest)
