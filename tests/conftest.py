"""Shared fixtures: sessions on the real engine, closed after each test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from codemode import CodeMode

MakeCodeMode = Callable[..., Awaitable[CodeMode]]


@pytest.fixture
async def make_cm() -> AsyncIterator[MakeCodeMode]:
    """A factory of `CodeMode` sessions (same arguments), all closed at teardown.

    They are not started: the first exec starts them without waiting for a full isolate pool,
    which keeps a test that needs a fresh session cheap.
    """
    sessions: list[CodeMode] = []

    async def make(*args: Any, **kwargs: Any) -> CodeMode:
        session = CodeMode(*args, **kwargs)
        sessions.append(session)
        return session

    yield make
    for session in sessions:
        await session.close()


@pytest.fixture
async def cm(make_cm: MakeCodeMode) -> CodeMode:
    """A session without tools."""
    return await make_cm()
