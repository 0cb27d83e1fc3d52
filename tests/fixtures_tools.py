"""Python tools for tests that start codemode in a subprocess (`--tools fixtures_tools:TOOLS`)."""

from __future__ import annotations


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


async def shout(text: str) -> str:
    """Upper-case a text."""
    return text.upper()


TOOLS = [add, shout]
