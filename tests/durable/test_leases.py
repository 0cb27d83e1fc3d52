"""A live cell is owned by one host at a time (a lease in the store): another host of the same
session is refused while the owner renews it, takes it over once the owner is gone, and an owner
whose lease was taken stops running the cell (issue 22 point 5)."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

import codemode._session.session as session_module
from codemode import CodeMode, Tool
from codemode._protocol.types import TextItem

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def short_leases(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(session_module, "LEASE_S", 0.6)


async def test_one_host_runs_a_cell_and_another_takes_over_once_it_is_gone(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'leases.db'}"
    entered = asyncio.Event()

    async def hold(args: dict[str, Any]) -> str:
        entered.set()
        await asyncio.Event().wait()
        return "never"

    async def quick(args: dict[str, Any]) -> str:
        return "quick"

    first = CodeMode(tools=[Tool("hold", "Holds.", hold, retry_on_restart=True)], store=url)
    async with first:
        running = await first.exec('text("one"); text(await tools.hold({}))', yield_time_ms=50)
        await asyncio.wait_for(entered.wait(), 30)
        assert running.status == "running" and running.cell_id is not None
        async with CodeMode(tools=[Tool("hold", "Quick.", quick, retry_on_restart=True)], store=url,
                            session_id=first.session_id) as second:
            refused = await second.wait(running.cell_id, yield_time_ms=100)
            assert refused.status == "failed" and refused.error_kind == "busy"
            assert refused.error is not None and "running on another host" in refused.error
            await first.aclose()  # a graceful stop: the journal stays, the lease is released
            resumed = await second.wait(running.cell_id, yield_time_ms=30_000)
            assert resumed.status == "completed", resumed.error
            assert [i.text for i in resumed.items if isinstance(i, TextItem)] == ["quick"]


async def test_a_host_whose_lease_was_taken_stops_the_cell(tmp_path: Path) -> None:
    path = tmp_path / "taken.db"
    async with CodeMode(store=f"sqlite:///{path}") as first:
        running = await first.exec("await new Promise(r => setTimeout(r, 600000))", yield_time_ms=50)
        assert running.cell_id is not None
        # Another host holds the lease now (as after this one missed its renewals: a long pause).
        with sqlite3.connect(path) as db:
            db.execute("UPDATE codemode_cells SET lease_owner = 'another host', lease_expires = ?",
                       (time.time() + 3600,))
        for _ in range(300):
            if running.cell_id not in first.running_cells:
                break
            await asyncio.sleep(0.1)
        assert running.cell_id not in first.running_cells
        with sqlite3.connect(path) as db:  # its journal stays, for the host that owns it now
            assert db.execute("SELECT count(*) FROM codemode_cells").fetchone() == (1,)
