"""Text put in place of a media item that a provider format cannot carry.

Invariant: the note names the kind of item and why it is missing, so the model knows output
was dropped rather than never produced.
"""

from __future__ import annotations

from codemode._protocol.types import AudioItem, ImageItem, OutputItem, TextItem

__all__ = ["item_text", "omitted_note"]


def omitted_note(kind: str, reason: str) -> str:
    """E.g. `[image omitted: Chat Completions tool messages carry text only]`."""
    return f"[{kind} omitted: {reason}]"


def item_text(item: OutputItem, media_reason: str) -> str:
    """An output item as text: its text, or for media a note saying it was left out and why."""
    match item:
        case TextItem(text):
            return text
        case ImageItem():
            return omitted_note("image", media_reason)
        case AudioItem():
            return omitted_note("audio", media_reason)
