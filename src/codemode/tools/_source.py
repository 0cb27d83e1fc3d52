"""`ToolSource`: nested tools that exist only once started (MCP servers, HTTP clients, a
framework's toolset), so a session can start and close every source the same way.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Self

from codemode.tools._tool import Tool

__all__ = ["ToolSource"]


class ToolSource(ABC):
    """Tools that exist only once started; pass one in `CodeMode(tools=[...])`.

    A session calls `start()` once when it starts (sources in the order given) and `aclose()`
    once when it closes (or when its start fails), the last started first.
    """

    @abstractmethod
    async def start(self) -> Sequence[Tool]:
        """Start the source and return its tools."""

    @abstractmethod
    async def aclose(self) -> None:
        """Stop what `start` started; idempotent."""

    @property
    def notice(self) -> str | None:
        """A short text for the model about tools it may expect but will not find (shown at the
        end of the `exec` description), or None."""
        return None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
