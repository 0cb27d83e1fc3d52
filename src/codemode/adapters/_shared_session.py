"""One `CodeMode` session for an adapter object that several runs (or `async with` blocks) may
enter at once: opened by the first to enter, closed by the last to leave."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from codemode._session.options import CodeModeOptions, check_options
from codemode._session.session import CodeMode

__all__ = ["SharedSession"]


class SharedSession:
    """A counted session: `enter()` opens it if nobody holds it, `leave()` closes it after the
    last holder; `current` is the open one (None between uses).

    Raises:
        UsageError: an option is no `CodeMode` keyword (checked now, not at the first run).
    """

    def __init__(self, tools: Sequence[Any], options: CodeModeOptions) -> None:
        check_options(options)
        self._tools = tools
        self._options = options
        self.current: CodeMode | None = None
        self._holders = 0
        self._lock = asyncio.Lock()

    async def enter(self) -> tuple[CodeMode, bool]:
        """The open session, and whether this call opened it."""
        async with self._lock:
            opened = self._holders == 0
            if opened:
                session = CodeMode(self._tools, **self._options)
                try:
                    await session.start()
                except BaseException:
                    await session.aclose()
                    raise
                self.current = session
            self._holders += 1
            assert self.current is not None
            return self.current, opened

    async def leave(self) -> None:
        async with self._lock:
            self._holders -= 1
            if self._holders == 0 and self.current is not None:
                session, self.current = self.current, None
                await session.aclose()
