"""Text any UTF-8 wire can carry.

A Python `str` may hold lone surrogates (U+D800-U+DFFF): JavaScript strings can (`"\\ud800"`),
JSON's `\\ud800` escapes decode to them, and so does `surrogatepass` decoding. UTF-8 cannot encode
them, so every JSON, HTTP or terminal writer downstream raises `UnicodeEncodeError`: an MCP
server's stdout writer dies with the connection, an SSE answer is never sent. Every boundary where
text crosses to a wire (or arrives from the model) passes it through `safe_text`.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any, cast

from codemode._protocol.types import ImageItem, OutputItem, TextItem

__all__ = ["safe_data", "safe_item", "safe_text"]

_SURROGATE = re.compile("[\ud800-\udfff]")  # a valid pair was joined into one code point when decoded


def safe_text(text: str) -> str:
    """`text` with each lone surrogate replaced by U+FFFD (as the reference's Rust strings get
    them); `text` itself when it has none.

    Cheap when there are none: ASCII text is known as such without a scan, and other text is
    checked by CPython's UTF-8 encoder (about 30 times faster than a regex scan of it).
    """
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", text)
    return text


def safe_data(value: Any) -> Any:
    """JSON-like `value` (dicts, lists, tuples, strings, scalars) with `safe_text` applied to every
    string in it, keys included; containers are copied only where something changed."""
    if isinstance(value, str):
        return safe_text(value)
    if isinstance(value, dict):
        mapping = cast(dict[Any, Any], value)
        items = [(safe_data(key), safe_data(item)) for key, item in mapping.items()]
        if all(
            new_key is key and new_item is item
            for (new_key, new_item), (key, item) in zip(items, mapping.items(), strict=True)
        ):
            return mapping
        return dict(items)
    if isinstance(value, list | tuple):
        sequence = cast(list[Any] | tuple[Any, ...], value)
        values = [safe_data(item) for item in sequence]
        if all(new is old for new, old in zip(values, sequence, strict=True)):
            return sequence
        return tuple(values) if isinstance(sequence, tuple) else values
    return value


def safe_item(item: OutputItem) -> OutputItem:
    """An output item with `safe_text` applied to its text or data URL; `item` itself when it
    has no lone surrogate."""
    if isinstance(item, TextItem):  # isinstance, not `match`: this runs for every output item
        safe = safe_text(item.text)
        return item if safe is item.text else replace(item, text=safe)
    if isinstance(item, ImageItem):
        safe = safe_text(item.image_url)
        return item if safe is item.image_url else replace(item, image_url=safe)
    safe = safe_text(item.audio_url)
    return item if safe is item.audio_url else replace(item, audio_url=safe)
