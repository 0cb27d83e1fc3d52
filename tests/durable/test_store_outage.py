"""A store that fails under a session (here: PostgreSQL dropping its connection): the model gets a
clear error, no call runs unrecorded, no output is lost, and the session works again once the
store answers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from tests.postgres_support import fresh_postgres_schema, postgres_url

from codemode import CodeMode, Tool
from codemode._protocol.types import TextItem
from codemode._session import session as session_module
from codemode.store import PostgresStore

pytestmark = pytest.mark.integration


@pytest.fixture
def store_url() -> Iterator[str]:
    with fresh_postgres_schema() as url:
        yield url


def drop_other_connections() -> int:
    """Ends every other client connection to the test database, as a server restart would."""
    with psycopg.connect(postgres_url(), autocommit=True) as db:
        ended = db.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
        ).fetchone()
    return int(ended[0]) if ended else 0


def texts(result: Any) -> list[str]:
    return [item.text for item in result.items if isinstance(item, TextItem)]


async def test_a_store_that_drops_its_connection_fails_nothing_silently(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each exec takes its cell id from the store (not from a block of them), so the exec right
    # after the drop is the first to meet it.
    monkeypatch.setattr(session_module, "CELL_IDS_AT_ONCE", 1)
    runs: list[str] = []

    async def effect(args: dict[str, Any]) -> str:
        runs.append(args["n"])
        return "done " + args["n"]

    store = PostgresStore(store_url)
    try:
        async with CodeMode(tools=[Tool("effect", "Has an effect.", effect)], store=store) as cm:
            first = await cm.exec('text(await tools.effect({n: "1"}))')
            assert texts(first) == ["done 1"]
            assert drop_other_connections() >= 1
            refused = await cm.exec('text(await tools.effect({n: "2"}))')
            assert refused.status == "rejected" and refused.cell_id is None
            assert refused.error is not None and "store did not answer" in refused.error
            # The store's connection is made again: the session goes on.
            again = await cm.exec('store("k", 7); text(await tools.effect({n: "3"}))')
            assert (again.status, texts(again)) == ("completed", ["done 3"])
            # A connection dropped while a cell runs: the call is not run unrecorded.
            running = await cm.exec('text("before"); await new Promise(r => setTimeout(r, 300));'
                                    'try { text(await tools.effect({n: "4"})) } catch (e) { text("rejected: " + e) }',
                                    yield_time_ms=50)
            assert texts(running) == ["before"] and running.cell_id is not None
            drop_other_connections()
            done = await cm.wait(running.cell_id, yield_time_ms=30_000)
            assert done.status == "completed", done.error
            (line,) = texts(done)
            assert line.startswith("rejected: tools.effect did not run: this session's store could not record"), line
            assert runs == ["1", "3"]
            assert cm.stored_values == {"k": 7}
    finally:
        await store.aclose()
