"""The session's one-way lifecycle on the fake engine: a start that fails is FAILED and says why
afterwards, a closed session never reopens, concurrent starts share one attempt, and tool
sources are started and closed the same way whatever they are."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from codemode import CodeMode, Tool, UsageError
from codemode._engine.base import SessionSetup
from codemode._protocol.lifecycle import State, start_refusal, use_refusal
from codemode.testing import FakeEngine, FakeSession
from codemode.tools import ToolSource


def ping(arguments: object) -> str:
    return "pong"


class Source(ToolSource):
    """A tool source that records its calls; its start fails with `error`, or waits for `gate`."""

    def __init__(
        self,
        name: str,
        *,
        error: Exception | None = None,
        gate: asyncio.Event | None = None,
        notice: str | None = None,
    ) -> None:
        self.name = name
        self.error = error
        self.gate = gate
        self._notice = notice
        self.calls: list[str] = []

    async def start(self) -> Sequence[Tool]:
        self.calls.append("start")
        if self.gate is not None:
            await self.gate.wait()
        if self.error is not None:
            raise self.error
        return [Tool(name=self.name, description=f"The {self.name} tool.", handler=ping)]

    async def aclose(self) -> None:
        self.calls.append("aclose")

    @property
    def notice(self) -> str | None:
        return self._notice


class BrokenEngine(FakeEngine):
    """An engine that cannot start (a worker that will not come up)."""

    async def open_session(self, setup: SessionSetup) -> FakeSession:
        raise RuntimeError("no V8 today")


async def test_a_failed_source_fails_the_start_and_every_later_use_names_it() -> None:
    first, broken, never = Source("first"), Source("broken", error=RuntimeError("database is down")), Source("never")
    cm = CodeMode([first, broken, never], engine=FakeEngine())
    with pytest.raises(RuntimeError, match="database is down"):
        await cm.start()
    assert cm.state is State.FAILED
    assert first.calls == ["start", "aclose"]  # the start released what it had opened
    assert never.calls == []
    failed = "this CodeMode failed to start: RuntimeError: database is down; create a new one"
    for use in (lambda: cm.exec("text(1)"), lambda: cm.wait("1"), cm.start):
        with pytest.raises(UsageError, match=failed) as raised:
            await use()
        assert raised.value.__cause__ is broken.error
    with pytest.raises(UsageError, match=failed):
        cm.tool_specs("chat")
    await cm.aclose()
    assert cm.state is State.CLOSED
    assert first.calls == ["start", "aclose"]  # closed once


async def test_async_with_a_failing_start_raises_and_closes_what_it_opened() -> None:
    opened = Source("opened")
    with pytest.raises(RuntimeError, match="no V8 today"):
        async with CodeMode([opened], engine=BrokenEngine()):
            raise AssertionError("the body must not run")
    assert opened.calls == ["start", "aclose"]


async def test_an_exec_that_starts_the_session_raises_a_usage_error_chaining_the_failure() -> None:
    cm = CodeMode([Source("broken", error=ValueError("bad key"))], engine=FakeEngine())
    with pytest.raises(UsageError, match="failed to start: ValueError: bad key") as raised:
        await cm.exec("text(1)")
    assert isinstance(raised.value.__cause__, ValueError)
    assert cm.state is State.FAILED


async def test_an_engine_that_cannot_start_fails_the_start() -> None:
    source = Source("tool")
    cm = CodeMode([source], engine=BrokenEngine())
    with pytest.raises(RuntimeError, match="no V8 today"):
        await cm.start()
    assert cm.state is State.FAILED
    assert source.calls == ["start", "aclose"]


class NoWorkerSession(FakeSession):
    async def ready(self, isolates: int | None = None) -> None:
        raise RuntimeError("the worker exited at start")


class NoWorkerEngine(FakeEngine):
    """An engine whose sessions open but whose worker never comes up."""

    async def open_session(self, setup: SessionSetup) -> FakeSession:
        session = NoWorkerSession(self, setup)
        self.sessions.append(session)
        return session


async def test_an_engine_that_never_gets_ready_fails_start() -> None:
    source, engine = Source("tool"), NoWorkerEngine()
    cm = CodeMode([source], engine=engine)
    with pytest.raises(RuntimeError, match="the worker exited at start"):
        await cm.start()
    assert cm.state is State.FAILED
    assert source.calls == ["start", "aclose"]
    assert engine.sessions[0].closed
    with pytest.raises(UsageError, match="failed to start: RuntimeError: the worker exited at start"):
        await cm.exec("text(1)")


async def test_a_cancelled_start_is_undone_and_the_next_call_starts_afresh() -> None:
    gate = asyncio.Event()
    source = Source("slow", gate=gate)
    cm = CodeMode([source], engine=FakeEngine())
    start = asyncio.ensure_future(cm.start())
    await asyncio.sleep(0)
    start.cancel()
    with pytest.raises(asyncio.CancelledError):
        await start
    assert cm.state is State.NEW
    gate.set()
    await cm.start()
    assert cm.state is State.OPEN
    assert source.calls == ["start", "start"]  # the cancelled start never got to list its tools
    await cm.aclose()
    assert source.calls == ["start", "start", "aclose"]


async def test_start_after_aclose_raises_and_exec_says_shutting_down() -> None:
    engine = FakeEngine()
    cm = CodeMode([ping], engine=engine)
    await cm.start()
    await cm.aclose()
    await cm.aclose()  # idempotent
    assert cm.state is State.CLOSED
    assert engine.sessions[0].closed
    with pytest.raises(UsageError, match="Cannot start this CodeMode: it was closed; create a new one"):
        await cm.start()
    result = await cm.exec("text(1)")
    assert (result.status, result.cell_id, result.error) == ("rejected", None, "code mode session is shutting down")
    assert engine.sessions == [engine.sessions[0]]  # nothing reopened


async def test_a_session_closed_before_it_started_never_starts() -> None:
    source = Source("tool")
    cm = CodeMode([source], engine=FakeEngine())
    await cm.aclose()
    with pytest.raises(UsageError, match="it was closed"):
        await cm.start()
    assert source.calls == []


async def test_concurrent_starts_share_the_first_attempt() -> None:
    gate = asyncio.Event()
    source = Source("slow", gate=gate)
    cm = CodeMode([source], engine=FakeEngine())
    starts = [asyncio.ensure_future(cm.start()) for _ in range(3)]
    await asyncio.sleep(0)
    assert cm.state is State.STARTING
    assert not any(start.done() for start in starts)
    gate.set()
    await asyncio.gather(*starts)
    assert cm.state is State.OPEN
    assert source.calls == ["start"]
    assert [tool.global_name for tool in cm.tools] == ["slow"]
    await cm.aclose()


async def test_concurrent_starts_of_a_failing_start_all_raise() -> None:
    gate = asyncio.Event()
    cm = CodeMode([Source("slow", gate=gate, error=RuntimeError("late failure"))], engine=FakeEngine())
    first = asyncio.ensure_future(cm.start())
    second = asyncio.ensure_future(cm.start())
    await asyncio.sleep(0)
    gate.set()
    with pytest.raises(RuntimeError, match="late failure"):
        await first
    with pytest.raises(UsageError, match="failed to start: RuntimeError: late failure"):
        await second


async def test_aclose_during_start_waits_for_it_then_closes_what_it_opened() -> None:
    gate = asyncio.Event()
    source = Source("slow", gate=gate)
    cm = CodeMode([source], engine=FakeEngine())
    start = asyncio.ensure_future(cm.start())
    await asyncio.sleep(0)
    close = asyncio.ensure_future(cm.aclose())
    await asyncio.sleep(0)
    assert not close.done()
    gate.set()
    await asyncio.gather(start, close)
    assert cm.state is State.CLOSED
    assert source.calls == ["start", "aclose"]


async def test_a_sources_notice_reaches_the_exec_description() -> None:
    sources = [Source("a", notice="Server `x` failed to start."), Source("b")]
    async with CodeMode(sources, engine=FakeEngine()) as cm:
        assert cm.exec_description().endswith("Server `x` failed to start.")


def test_every_refused_transition_has_its_own_message() -> None:
    cause = RuntimeError("boom")
    assert start_refusal(State.NEW, "this X") is None
    assert start_refusal(State.STARTING, "this X") == start_refusal(State.OPEN, "this X") == (
        "this X can be started only once"
    )
    assert start_refusal(State.FAILED, "this X", cause) == "this X failed to start: RuntimeError: boom; create a new one"
    assert start_refusal(State.CLOSED, "this X") == "Cannot start this X: it was closed; create a new one"
    assert use_refusal(State.OPEN, "this X") is None
    assert use_refusal(State.NEW, "this X") == "this X is not started: call `start()` first (or use `async with`)"
    assert use_refusal(State.CLOSING, "this X") == use_refusal(State.CLOSED, "this X") == (
        "this X was closed; create a new one"
    )
