"""Arming (issue 22 point 7): after a call's result, the script's next call is put on record as
possibly started ahead of it, so the store's write leaves the call's path. The guarantee must not
move: every tool runs only once its call is on record (its own record, or an arming that covers
it), and a replay treats an armed call without a record as one that may have run."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from codemode import CodeMode, Tool
from codemode._engine.base import CellProgram, ResolvedCalls
from codemode._session import session as session_module
from codemode._session.durable import RESTARTED_DURING_CALL
from codemode._session.journal import CellJournal, JournalPlace
from codemode.store import SQLiteStore
from codemode.testing import FakeEngine

SESSION = "armed-session"


def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{(tmp_path / 'store.db').as_posix().lstrip('/')}"


async def old_host_journal(tmp_path: Path, *, disarmed: bool) -> str:
    """What a host that stopped right after call 1's result left: call 1 and its result, call 2
    armed (withdrawn again if `disarmed`). Returns the cell id."""
    store = SQLiteStore(tmp_path / "store.db")
    await store.open_session(SESSION)
    journal = CellJournal(CellProgram("/* the script */", ""), random_seed=7, max_bytes=1 << 20)
    journal.place = JournalPlace(store, SESSION, "1", owner="old host", lease_s=0.05)
    journal.call_started(1, "one", "{}")
    journal.call_ended(1, True, '"one done"')
    journal.applied([ResolvedCalls((1,))])
    assert journal.arm()
    await journal.flush()
    assert journal.armed_on_store == 2
    if disarmed:
        assert journal.disarm()
        await journal.flush()
    await store.aclose()
    await asyncio.sleep(0.1)  # the old host's lease runs out
    return "1"


@pytest.mark.parametrize("retry_on_restart", [False, True], ids=["at-most-once", "retried"])
async def test_an_armed_call_without_a_record_counts_as_interrupted(tmp_path: Path, retry_on_restart: bool) -> None:
    cell_id = await old_host_journal(tmp_path, disarmed=False)
    runs: list[str] = []

    async def one(_args: dict[str, Any]) -> str:
        runs.append("one")
        return "one again"

    async def two(_args: dict[str, Any]) -> str:
        runs.append("two")
        return "two done"

    engine = FakeEngine()
    tools = [Tool("one", "One.", one), Tool("two", "Two.", two, retry_on_restart=retry_on_restart)]
    async with CodeMode(tools=tools, engine=engine, store=store_url(tmp_path), session_id=SESSION) as cm:
        waiting = asyncio.ensure_future(cm.wait(cell_id, yield_time_ms=30_000))
        cell = await asyncio.wait_for(engine.next_cell(), 30)
        first = cell.call_tool("one", "{}")
        assert await asyncio.wait_for(cell.resolution(first), 30) == (True, '"one done"')  # replayed
        second = cell.call_tool("two", "{}")
        ok, payload = await asyncio.wait_for(cell.resolution(second), 30)
        cell.finish()
        result = await asyncio.wait_for(waiting, 30)
    assert result.status == "completed", result.error
    if retry_on_restart:
        assert (ok, payload, runs) == (True, '"two done"', ["two"])
    else:
        assert (ok, payload, runs) == (False, RESTARTED_DURING_CALL.format(tool="two"), [])


async def test_a_withdrawn_arming_leaves_the_next_call_live(tmp_path: Path) -> None:
    cell_id = await old_host_journal(tmp_path, disarmed=True)
    runs: list[str] = []

    async def two(_args: dict[str, Any]) -> str:
        runs.append("two")
        return "two done"

    engine = FakeEngine()
    tools = [Tool("one", "One.", lambda _args: "unused"), Tool("two", "Two.", two)]
    async with CodeMode(tools=tools, engine=engine, store=store_url(tmp_path), session_id=SESSION) as cm:
        waiting = asyncio.ensure_future(cm.wait(cell_id, yield_time_ms=30_000))
        cell = await asyncio.wait_for(engine.next_cell(), 30)
        await asyncio.wait_for(cell.resolution(cell.call_tool("one", "{}")), 30)
        assert await asyncio.wait_for(cell.resolution(cell.call_tool("two", "{}")), 30) == (True, '"two done"')
        cell.finish()
        assert (await asyncio.wait_for(waiting, 30)).status == "completed"
    assert runs == ["two"]


def covered(records: tuple[str, ...], call_id: int) -> bool:
    """Whether the stored journal has call `call_id` on record: its own record, or an arming."""
    armed, called = 0, set()
    for row in records:
        for record in json.loads(row):
            if "armed" in record:
                armed = record["armed"]
            elif "call" in record:
                called.add(record["call"])
    return call_id in called or call_id <= armed


@pytest.mark.parametrize("isolation", ["process", "in-process"])
async def test_every_tool_runs_only_once_its_call_is_on_record(tmp_path: Path, isolation: str) -> None:
    """Real isolates: sequential calls (armed ahead), calls after a pause (the arming withdrawn
    meanwhile) and concurrent ones (`Promise.all`); each tool looks in the store when it runs."""
    reader = SQLiteStore(tmp_path / "store.db")
    seen: list[tuple[int, bool]] = []

    async def check(args: dict[str, Any]) -> int:
        record = await reader.read_cell(SESSION, "1")
        assert record is not None
        seen.append((args["n"], covered(record.records, args["n"])))
        return args["n"]

    script = """
        let sum = 0;
        for (let n = 1; n <= 20; n++) sum += await tools.check({n});
        await new Promise((resolve) => setTimeout(resolve, 200));
        sum += await tools.check({n: 21});
        const more = await Promise.all([22, 23, 24, 25].map((n) => tools.check({n})));
        text(String(sum + more.reduce((a, b) => a + b, 0)));
    """
    assert session_module.DISARM_AFTER_S < 0.2  # the pause outlasts an arming
    tools = [Tool("check", "Checks the store.", check)]
    try:
        async with CodeMode(tools=tools, isolation=isolation, store=store_url(tmp_path), session_id=SESSION) as cm:
            result = await cm.exec(script, yield_time_ms=30_000)
    finally:
        await reader.aclose()
    assert result.status == "completed", result.error
    assert [item.text for item in result.items] == [str(sum(range(1, 26)))]  # type: ignore[union-attr]
    assert sorted(n for n, _ in seen) == list(range(1, 26))
    assert all(on_record for _, on_record in seen), seen
