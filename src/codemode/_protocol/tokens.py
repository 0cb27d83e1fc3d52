"""How many model tokens a text is estimated to cost: the one rule the output truncation and the
description budget share (the reference's: ceil(UTF-8 bytes / 4))."""

from __future__ import annotations

__all__ = ["BYTES_PER_TOKEN", "approx_tokens", "tokens_for_bytes", "utf8_len"]

BYTES_PER_TOKEN = 4


def approx_tokens(text: str) -> int:
    """Estimated model tokens of `text`: ceil(UTF-8 bytes / 4)."""
    return tokens_for_bytes(utf8_len(text))


def tokens_for_bytes(n: int) -> int:
    """Estimated tokens of `n` UTF-8 bytes."""
    return -(-n // BYTES_PER_TOKEN)


def utf8_len(text: str) -> int:
    """UTF-8 length of `text`, without encoding it when it is ASCII (an O(1) check); a lone
    surrogate counts as the 3 bytes it would take."""
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
