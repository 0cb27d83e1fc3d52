"""Python tools for tests that start codemode in a subprocess (`--tools fixtures_tools:TOOLS`)."""

from __future__ import annotations

from codemode.tools import requires_approval


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


async def shout(text: str) -> str:
    """Upper-case a text."""
    return text.upper()


TOOLS = [add, shout]


@requires_approval
def echo_path(path: str) -> str:
    """Echo a path (needs approval, so the MCP client is asked)."""
    return f"ran {path}"


APPROVAL_TOOLS = [echo_path]
