"""Text for UTF-8 wires: JavaScript strings may hold lone surrogates, which UTF-8 cannot carry."""

from __future__ import annotations

import re

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")  # a valid pair was joined when it was decoded


def wire_text(text: str) -> str:
    """`text` with each lone surrogate replaced by U+FFFD, as the reference's Rust strings get
    them, so serializing it as UTF-8 (MCP, a terminal) cannot fail."""
    return _LONE_SURROGATE.sub("\ufffd", text) if _LONE_SURROGATE.search(text) else text
