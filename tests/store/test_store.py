"""The durable stores against real databases: a SQLite file and a PostgreSQL server.

Every behaviour runs on both. "Replicas" are separate store objects (separate connections) on
the same database; races run each replica on its own thread and event loop, started together.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pytest
from tests.postgres_support import fresh_postgres_schema

from codemode.errors import UsageError
from codemode.store import PostgresStore, SessionRecord, SQLiteStore, Store, open_store
from codemode.store._postgres import MIGRATIONS as POSTGRES_MIGRATIONS
from codemode.store._sqlite import MIGRATIONS as SQLITE_MIGRATIONS

T = TypeVar("T")

LONG_LEASE_S = 600.0


class Stores:
    """Store objects on one database, each like another replica's; closed after the test."""

    def __init__(self, kind: str, url: str) -> None:
        self.kind = kind
        self.url = url
        self._opened: list[Store] = []

    def new(self) -> Store:
        """Another replica's store (not closed for you: for use on another thread's loop)."""
        return open_store(self.url)

    def open(self) -> Store:
        """Another replica's store, closed at teardown."""
        store = self.new()
        self._opened.append(store)
        return store

    async def close_all(self) -> None:
        for store in self._opened:
            await store.aclose()


@contextmanager
def _database(kind: str, tmp_path: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite://{tmp_path / 'store.db'}"
    else:
        with fresh_postgres_schema() as url:
            yield url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
async def stores(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Stores]:
    with _database(request.param, tmp_path) as url:
        made = Stores(request.param, url)
        yield made
        await made.close_all()


@pytest.fixture
def store(stores: Stores) -> Store:
    return stores.open()


def race(count: int, stores: Stores, work: Callable[[Store], Awaitable[T]]) -> list[T]:
    """`work` on `count` replicas at once, each on its own thread and loop (connected first)."""
    barrier = threading.Barrier(count)

    def replica() -> T:
        async def run() -> T:
            store = stores.new()
            try:
                await store.session_exists("connect-and-migrate")
                barrier.wait(timeout=60)
                return await work(store)
            finally:
                await store.aclose()

        return asyncio.run(run())

    with ThreadPoolExecutor(count) as pool:
        return [future.result(timeout=120) for future in [pool.submit(replica) for _ in range(count)]]


async def test_a_session_is_created_when_opened(store: Store) -> None:
    assert not await store.session_exists("s1")
    assert await store.open_session("s1") == SessionRecord(values={}, cells=())
    assert await store.session_exists("s1")
    assert not await store.session_exists("s2")


async def test_values_are_upserted_deleted_and_seen_by_another_replica(stores: Stores) -> None:
    first, second = stores.open(), stores.open()
    await first.open_session("s")
    await first.put_values("s", {"a": '{"n": 1}', "b": '"two"', "c": "[3]"})
    await first.put_values("s", {"a": '{"n": 10}', "b": None, "missing": None})
    await first.put_values("other", {"a": "0"})
    assert (await second.open_session("s")).values == {"a": '{"n": 10}', "c": "[3]"}
    await first.put_values("s", {})
    assert (await second.open_session("other")).values == {"a": "0"}


async def test_cell_ids_count_per_session(store: Store) -> None:
    assert [await store.next_cell_id("s") for _ in range(3)] == [1, 2, 3]
    assert await store.next_cell_id("t") == 1
    assert await store.next_cell_id("s") == 4
    assert await store.next_cell_id("s", 16) == 5  # 5..20 reserved at once
    assert await store.next_cell_id("s") == 21


async def test_cell_ids_are_unique_across_concurrent_replicas(stores: Stores) -> None:
    async def take(store: Store) -> list[int]:
        return [await store.next_cell_id("shared") for _ in range(40)]

    taken = [cell_id for ids in race(4, stores, take) for cell_id in ids]
    assert sorted(taken) == list(range(1, 161))


async def test_records_come_back_in_append_order(stores: Stores) -> None:
    writer, reader = stores.open(), stores.open()
    await writer.open_session("s")
    before = time.time()
    await writer.create_cell("s", "1", '{"program": "x"}', "replica-a", 30.0)
    await writer.append("s", "1", ['["b", [1]]'])
    await writer.append("s", "1", ['["t", 7]', '["d", 1.5]', '{"text": "ünïcode \\u0000"}'])
    await writer.append("s", "1", [])
    await writer.append("s", "1", [f"[{n}]" for n in range(100)])
    cell = await reader.read_cell("s", "1")
    assert cell is not None
    assert cell.header == '{"program": "x"}'
    first = ('["b", [1]]', '["t", 7]', '["d", 1.5]', '{"text": "ünïcode \\u0000"}')
    assert cell.records == (*first, *(f"[{n}]" for n in range(100)))
    assert cell.lease_owner == "replica-a"
    assert cell.lease_expires is not None and before + 29 < cell.lease_expires < time.time() + 31


async def test_interleaved_cells_keep_their_own_records(store: Store) -> None:
    for cell_id in ("1", "2"):
        await store.create_cell("s", cell_id, cell_id, "me", 30.0)
    for n in range(5):
        await store.append("s", "1", [f"one-{n}"])
        await store.append("s", "2", [f"two-{n}"])
    one, two = await store.read_cell("s", "1"), await store.read_cell("s", "2")
    assert one is not None and one.records == tuple(f"one-{n}" for n in range(5))
    assert two is not None and two.records == tuple(f"two-{n}" for n in range(5))


async def test_an_unknown_cell_reads_as_none_and_its_records_are_discarded(store: Store) -> None:
    assert await store.read_cell("s", "404") is None
    await store.append("s", "404", ["lost"])
    await store.append("s", "404", ["lost", "too"])
    assert await store.read_cell("s", "404") is None


async def test_a_cell_is_created_once(store: Store) -> None:
    await store.create_cell("s", "1", "first", "me", 30.0)
    with pytest.raises(UsageError, match="already has a journal"):
        await store.create_cell("s", "1", "second", "me", 30.0)
    cell = await store.read_cell("s", "1")
    assert cell is not None and cell.header == "first"


async def test_the_session_lists_its_cells_oldest_first_without_dropped_ones(store: Store) -> None:
    await store.open_session("s")
    for cell_id in ("3", "1", "10", "2"):
        await store.create_cell("s", cell_id, "{}", "me", 30.0)
    await store.create_cell("other", "9", "{}", "me", 30.0)
    await store.drop_cell("s", "1")
    await store.drop_cell("s", "never-was")
    await store.create_cell("s", "11", "{}", "me", 30.0)
    assert (await store.open_session("s")).cells == ("3", "10", "2", "11")


async def test_a_dropped_cell_keeps_no_records(store: Store) -> None:
    await store.create_cell("s", "1", "{}", "me", 30.0)
    await store.append("s", "1", ["a", "b"])
    await store.drop_cell("s", "1")
    assert await store.read_cell("s", "1") is None
    await store.append("s", "1", ["late"])  # a journal write racing the drop
    await store.create_cell("s", "1", "again", "me", 30.0)
    again = await store.read_cell("s", "1")
    assert again is not None and (again.header, again.records) == ("again", ())


async def _lease_expires(store: Store, session_id: str, cell_id: str) -> float | None:
    cell = await store.read_cell(session_id, cell_id)
    assert cell is not None
    return cell.lease_expires


async def test_dropping_a_session_forgets_everything_of_it(store: Store) -> None:
    for session_id in ("gone", "kept"):
        await store.open_session(session_id)
        await store.put_values(session_id, {"k": "1"})
        await store.next_cell_id(session_id)
        await store.create_cell(session_id, "1", "{}", "me", 30.0)
        await store.append(session_id, "1", ["r"])
    await store.drop_session("gone")
    assert not await store.session_exists("gone")
    assert await store.read_cell("gone", "1") is None
    assert await store.open_session("gone") == SessionRecord(values={}, cells=())
    assert await store.open_session("kept") == SessionRecord(values={"k": "1"}, cells=("1",))
    kept = await store.read_cell("kept", "1")
    assert kept is not None and kept.records == ("r",)


async def test_a_held_lease_is_refused_renewed_by_its_owner_and_released(stores: Stores) -> None:
    a, b = stores.open(), stores.open()
    await a.create_cell("s", "1", "{}", "A", LONG_LEASE_S)
    assert not await b.acquire_lease("s", "1", "B", LONG_LEASE_S)
    first_expiry = await _lease_expires(b, "s", "1")
    assert await a.acquire_lease("s", "1", "A", 2 * LONG_LEASE_S)
    renewed = await _lease_expires(b, "s", "1")
    assert first_expiry is not None and renewed is not None and renewed > first_expiry + LONG_LEASE_S / 2
    await b.release_lease("s", "1", "B")  # not B's: nothing happens
    assert not await b.acquire_lease("s", "1", "B", LONG_LEASE_S)
    await a.release_lease("s", "1", "A")
    released = await b.read_cell("s", "1")
    assert released is not None and (released.lease_owner, released.lease_expires) == (None, None)
    assert await b.acquire_lease("s", "1", "B", LONG_LEASE_S)
    assert not await a.acquire_lease("s", "1", "A", LONG_LEASE_S)
    assert not await a.acquire_lease("s", "404", "A", LONG_LEASE_S)


async def test_an_expired_lease_is_taken_over(stores: Stores) -> None:
    a, b = stores.open(), stores.open()
    await a.create_cell("s", "1", "{}", "A", 0.3)
    deadline = time.monotonic() + 30
    while not await b.acquire_lease("s", "1", "B", LONG_LEASE_S):
        assert time.monotonic() < deadline, "a 0.3 s lease was never free to take over"
        await asyncio.sleep(0.05)
    cell = await a.read_cell("s", "1")
    assert cell is not None and cell.lease_owner == "B"
    assert not await a.acquire_lease("s", "1", "A", LONG_LEASE_S)


async def test_one_replica_wins_a_race_for_a_free_lease(stores: Stores) -> None:
    setup = stores.open()
    await setup.create_cell("s", "1", "{}", "setup", LONG_LEASE_S)
    await setup.release_lease("s", "1", "setup")
    names = iter(range(6))
    lock = threading.Lock()

    async def take(store: Store) -> tuple[str, bool]:
        with lock:
            owner = f"replica-{next(names)}"
        return owner, await store.acquire_lease("s", "1", owner, LONG_LEASE_S)

    outcomes = race(6, stores, take)
    winners = [owner for owner, won in outcomes if won]
    assert len(winners) == 1, outcomes
    cell = await setup.read_cell("s", "1")
    assert cell is not None and cell.lease_owner == winners[0]


async def test_the_server_key_is_made_once_and_shared(stores: Stores) -> None:
    keys = race(4, stores, lambda store: store.server_key())
    assert len(keys[0]) == 32 and keys.count(keys[0]) == 4
    later = stores.open()
    assert await later.server_key() == keys[0]


async def test_migrations_are_applied_once(stores: Stores) -> None:
    race(3, stores, lambda store: store.open_session("s"))
    await stores.open().open_session("s")
    versions = list(range(1, len(SQLITE_MIGRATIONS if stores.kind == "sqlite" else POSTGRES_MIGRATIONS) + 1))
    assert _query(stores, "SELECT version FROM codemode_schema_version ORDER BY version") == [(v,) for v in versions]


async def test_a_store_newer_than_this_codemode_is_refused(stores: Stores) -> None:
    await stores.open().open_session("s")
    _query(stores, "INSERT INTO codemode_schema_version (version, applied) VALUES (999, {now})")
    with pytest.raises(UsageError, match="schema version 999, newer than this codemode"):
        await stores.open().open_session("s")


def _query(stores: Stores, statement: str) -> list[tuple[Any, ...]]:
    """Run one statement on the test database directly (not through a store)."""
    if stores.kind == "sqlite":
        with closing(sqlite3.connect(stores.url.removeprefix("sqlite://"), isolation_level=None)) as db:
            return db.execute(statement.format(now="0")).fetchall()
    with psycopg.connect(stores.url, autocommit=True) as db:
        cursor = db.execute(statement.format(now="now()").encode())
        return cursor.fetchall() if cursor.description else []


async def test_a_closed_store_refuses_calls(stores: Stores) -> None:
    store = stores.new()
    await store.open_session("s")
    await store.aclose()
    await store.aclose()
    with pytest.raises(UsageError, match="closed"):
        await store.open_session("s")


@pytest.mark.integration
async def test_postgres_replaces_a_broken_connection() -> None:
    with fresh_postgres_schema() as url:
        store = PostgresStore(url)
        try:
            await store.open_session("s")
            with psycopg.connect(url, autocommit=True) as admin:
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend' "
                    "AND query NOT ILIKE '%pg_terminate_backend%'"
                )
            with pytest.raises(psycopg.OperationalError):
                await store.put_values("s", {"k": "1"})
            await store.put_values("s", {"k": "1"})
            assert (await store.open_session("s")).values == {"k": "1"}
        finally:
            await store.aclose()


@pytest.mark.integration
async def test_postgres_stays_usable_after_a_call_is_cancelled_mid_statement() -> None:
    with fresh_postgres_schema() as url:
        store = PostgresStore(url)
        try:
            await store.create_cell("s", "1", "{}", "A", LONG_LEASE_S)
            with psycopg.connect(url) as blocker:  # holds the cell's row: the lease UPDATE waits
                blocker.execute("SELECT 1 FROM codemode_cells FOR UPDATE")
                waiting = asyncio.create_task(store.acquire_lease("s", "1", "A", LONG_LEASE_S))
                deadline = time.monotonic() + 30
                while not _lease_update_is_waiting(url):
                    assert time.monotonic() < deadline, "the lease UPDATE never reached the server"
                    await asyncio.sleep(0.02)
                waiting.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await waiting
            assert await store.acquire_lease("s", "1", "A", LONG_LEASE_S)
            assert (await store.open_session("s")).cells == ("1",)
        finally:
            await store.aclose()


def _lease_update_is_waiting(url: str) -> bool:
    with psycopg.connect(url, autocommit=True) as admin:
        found = admin.execute(
            "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'UPDATE codemode_cells%'"
        )
        return found.fetchone() is not None


def test_open_store_takes_the_documented_urls_and_store_objects(tmp_path: Path) -> None:
    sqlite_store = open_store(f"sqlite://{tmp_path / 'a b.db'}")
    assert isinstance(sqlite_store, SQLiteStore) and isinstance(sqlite_store, Store)
    assert repr(sqlite_store) == f"SQLiteStore({str(tmp_path / 'a b.db')!r})"
    assert isinstance(open_store(f"sqlite://{tmp_path}/a%20b.db"), SQLiteStore)
    assert isinstance(open_store("postgresql://user:secret@db.invalid/app"), PostgresStore)
    assert "secret" not in repr(open_store("postgresql://user:secret@db.invalid/app"))
    assert isinstance(open_store("postgres://db.invalid/app"), PostgresStore)
    assert open_store(sqlite_store) is sqlite_store


@pytest.mark.parametrize(
    ("given", "complaint"),
    [
        ("mysql://db/app", "store must be 'sqlite:///absolute/path/to/file.db', 'postgresql://"),
        ("/var/lib/app.db", "store must be"),
        ("sqlite:///:memory:", "must be a file"),
        ("sqlite://relative.db", "an absolute file path"),
        ("sqlite:relative.db", "an absolute file path"),
        ("sqlite:///tmp/x.db?mode=ro", "with no options"),
        (42, "store must be .* not int"),
    ],
)
def test_open_store_names_the_accepted_forms(given: Any, complaint: str) -> None:
    with pytest.raises(UsageError, match=complaint):
        open_store(given)


async def test_a_sqlite_store_in_a_missing_directory_says_so(tmp_path: Path) -> None:
    store = open_store(f"sqlite://{tmp_path / 'nowhere' / 'x.db'}")
    with pytest.raises(UsageError, match="its directory does not exist"):
        await store.open_session("s")


_APPENDER = textwrap.dedent(
    """
    import asyncio, sys
    from codemode.store import open_store

    async def main():
        store = open_store(sys.argv[1])
        await store.create_cell("s", "1", "header", "child", 60.0)
        print("ready", flush=True)
        n = 0
        while True:
            await store.append("s", "1", [f"record-{n}"])
            print(n, flush=True)  # after the append returned
            n += 1

    asyncio.run(main())
    """
)


@pytest.mark.integration
def test_sqlite_keeps_every_append_of_a_killed_process(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path / 'store.db'}"
    with subprocess.Popen([sys.executable, "-c", _APPENDER, url], stdout=subprocess.PIPE, text=True) as child:
        assert child.stdout is not None
        try:
            assert child.stdout.readline().strip() == "ready"
            acknowledged = -1
            while acknowledged < 300:
                acknowledged = int(child.stdout.readline())
            os.kill(child.pid, signal.SIGKILL)
            acknowledged = max([acknowledged, *(int(line) for line in child.stdout.read().split())])
        finally:
            child.kill()
            child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    reader = subprocess.run(
        [
            sys.executable,
            "-c",
            "import asyncio, sys, json; from codemode.store import open_store;"
            "cell = asyncio.run(open_store(sys.argv[1]).read_cell('s', '1'));"
            "print(json.dumps(cell.records))",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    records = json.loads(reader.stdout)
    assert records[: acknowledged + 1] == [f"record-{n}" for n in range(acknowledged + 1)]
    assert len(records) <= acknowledged + 2  # at most the append that was under way


async def test_a_cell_can_start_with_its_first_records(stores: Stores) -> None:
    writer, reader = stores.open(), stores.open()
    await writer.open_session("s")
    await writer.create_cell("s", "1", "{}", "replica-a", 30.0, [f"[{n}]" for n in range(5)])
    await writer.append("s", "1", ["[5]"])
    cell = await reader.read_cell("s", "1")
    assert cell is not None and cell.records == tuple(f"[{n}]" for n in range(6))
    with pytest.raises(UsageError, match="already has a journal"):
        await writer.create_cell("s", "1", "{}", "replica-b", 30.0, ["[99]"])
    again = await reader.read_cell("s", "1")
    assert again is not None and again.records == cell.records and again.lease_owner == "replica-a"
