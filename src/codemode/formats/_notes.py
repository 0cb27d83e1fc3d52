"""Text put in place of a media item that a provider format cannot carry.

Invariant: the note names the kind of item and why it is missing, so the model knows output
was dropped rather than never produced.
"""

from __future__ import annotations

__all__ = ["omitted_note"]


def omitted_note(kind: str, reason: str) -> str:
    """E.g. `[image omitted: Chat Completions tool messages carry text only]`."""
    return f"[{kind} omitted: {reason}]"
