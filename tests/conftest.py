"""Shared fixtures: sessions on the real engine, closed after each test.

The suite runs once per isolation mode: `CODEMODE_TEST_ISOLATION=in-process` makes every session
that does not choose its own mode run V8 in this process (`make test` runs both passes).
"""

from __future__ import annotations

import asyncio
import inspect
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

import codemode._session.session as session_module
from codemode import CodeMode, engines
from waiting import SpiedEngine

MakeCodeMode = Callable[..., Awaitable[CodeMode]]
ISOLATION = os.environ.get("CODEMODE_TEST_ISOLATION", "process")
assert ISOLATION in ("process", "in-process"), ISOLATION
session_module.DEFAULT_ISOLATION = ISOLATION  # type: ignore[assignment]

process_only = pytest.mark.skipif(ISOLATION != "process", reason="about engine worker processes")
in_process_only = pytest.mark.skipif(ISOLATION != "in-process", reason="about V8 inside the test process")


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
        await session.aclose()


@pytest.fixture
async def cm(make_cm: MakeCodeMode) -> CodeMode:
    """A session without tools."""
    return await make_cm()


@pytest.fixture
def spied_engine() -> SpiedEngine:
    """The engine the suite runs on (`ISOLATION`), showing when the session stops each cell."""
    return SpiedEngine(engines.shared(ISOLATION))


@pytest.fixture
async def loop_errors() -> AsyncIterator[list[dict[str, Any]]]:
    """Errors the running loop reports during the test (a failed callback, a failed task nobody
    awaited...); the test fails unless it stays empty. Every async test gets it (below)."""
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    yield errors
    loop.set_exception_handler(previous)
    assert not [f"{c.get('message')}: {c.get('exception')!r}" for c in errors]


@pytest.fixture(autouse=True)
def _fail_on_loop_errors(request: pytest.FixtureRequest) -> None:
    """Every async test fails on an error its event loop reports (see `loop_errors`)."""
    if inspect.iscoroutinefunction(request.function):
        request.getfixturevalue("loop_errors")
