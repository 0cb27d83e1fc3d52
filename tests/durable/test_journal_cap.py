"""The journal cap on real isolates: a cell past `max_journal_bytes` says so, runs on to its end,
and the store forgets its journal (it could not be replayed whole)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from codemode import CodeMode, Limits, Tool
from codemode._protocol.types import TextItem
from codemode.store import SQLiteStore

pytestmark = pytest.mark.integration


async def big(args: dict[str, Any]) -> str:
    return "x" * 500


async def test_a_cell_past_its_journal_cap_says_so_and_completes(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "cap.db"))
    try:
        async with CodeMode(tools=[Tool("big", "Big.", big)], store=store,
                            limits=Limits(max_journal_bytes=4000)) as cm:
            result = await cm.exec(
                'let n = 0; for (let i = 0; i < 20; i++) n += (await tools.big({})).length; text(String(n))',
                yield_time_ms=60_000,
            )
            assert result.status == "completed", result.error
            items = [item.text for item in result.items if isinstance(item, TextItem)]
            assert items[-1] == "10000"
            (notice,) = items[:-1]
            assert f"exec cell {result.cell_id}" in notice and "can no longer be made durable" in notice
            assert "journal passed 4,000 bytes" in notice
            assert await store.read_cell(cm.session_id, result.cell_id or "") is None
            small = await cm.exec('text(String((await tools.big({})).length))')
            assert [item.text for item in small.items if isinstance(item, TextItem)] == ["500"]  # no notice
    finally:
        await store.aclose()
