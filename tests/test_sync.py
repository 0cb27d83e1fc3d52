"""`SyncCodeMode` mirrors `CodeMode`, and a construction that fails leaves no thread behind."""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from codemode import CodeMode, Limits, SyncCodeMode, Tool, UsageError
from codemode._protocol.lifecycle import State
from codemode.testing import FakeEngine
from codemode.tools import ToolSource

ASYNC_ONLY = {"aclose", "__aenter__", "__aexit__"}  # SyncCodeMode has close() and `with` instead


def public(cls: type) -> dict[str, Any]:
    names = {name for name in dir(cls) if not name.startswith("_")} | {"__aenter__", "__aexit__"}
    return {name: getattr(cls, name) for name in names if hasattr(cls, name)}


def test_sync_code_mode_has_every_public_method_and_property_of_code_mode() -> None:
    asynchronous, synchronous = public(CodeMode), public(SyncCodeMode)
    assert set(asynchronous) - ASYNC_ONLY <= set(synchronous)
    assert {"close", "__enter__", "__exit__"} <= set(dir(SyncCodeMode))
    for name in set(asynchronous) - ASYNC_ONLY:
        mine, theirs = synchronous[name], asynchronous[name]
        assert isinstance(mine, property) == isinstance(theirs, property), name
        if callable(theirs) and not isinstance(theirs, property):
            assert not inspect.iscoroutinefunction(mine), name
            assert _parameters(mine) == _parameters(theirs), name


def _parameters(function: Callable[..., Any]) -> list[tuple[str, Any, Any]]:
    return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]


class Broken(ToolSource):
    async def start(self) -> Sequence[Tool]:
        raise RuntimeError("database is down")

    async def aclose(self) -> None:
        return None


def test_failed_constructions_leave_no_thread_behind() -> None:
    before = set(threading.enumerate())
    with pytest.raises(UsageError, match="max_concurent_cells"):
        SyncCodeMode(max_concurent_cells=3)  # type: ignore[call-arg]
    with pytest.raises(UsageError, match="isolation"):
        SyncCodeMode(isolation="elsewhere")  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="database is down"):
        SyncCodeMode([Broken()], engine=FakeEngine())
    assert set(threading.enumerate()) - before == set()


def test_sync_code_mode_blocks_on_the_sessions_methods_and_stops_its_thread() -> None:
    before = set(threading.enumerate())
    limits = Limits(max_concurrent_cells=3)
    with SyncCodeMode([echo], engine=FakeEngine(), limits=limits) as session:
        assert session.state is State.OPEN
        assert [thread.name for thread in set(threading.enumerate()) - before] == ["codemode-loop"]
        assert session.limits is limits
        assert [tool.global_name for tool in session.tools] == ["echo"]
        assert session.tool_specs("chat")[0]["function"]["name"] == "exec"
        assert "echo" in session.exec_description()
        assert (session.running_cells, session.stored_values, session.notifications) == ([], {}, [])
        assert session.pending_approvals() == []
        assert session.delete_stored_value("missing") is False
        with pytest.raises(UsageError, match="exec cell 7 not found"):
            session.tool_calls("7")
        session.start(fill_pool=True)
    assert session.state is State.CLOSED
    assert set(threading.enumerate()) - before == set()
    with pytest.raises(UsageError, match="this SyncCodeMode was closed"):
        session.tool_specs()
    session.close()  # idempotent


def echo(text: str) -> str:
    """Echo the text."""
    return text
