"""The shared store: PostgreSQL through psycopg 3 (the `postgres` extra), for several replicas.

One connection per store object, used by one call at a time (a lock): every call is one short
statement or transaction, and a replica's calls are few next to its execs. A connection that
breaks (a restarted server, a cancelled call mid-statement) is replaced on the next call.

Times (leases) come from the database's clock, so replicas whose clocks disagree still agree on
who holds a lease. The tables live in the connection's current schema (`search_path`, settable
in the URL: `?options=-csearch_path%3Dname`); their names start with `codemode_`.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncGenerator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Final, LiteralString

from codemode.errors import UsageError
from codemode.store._base import CellRecord, SessionRecord

if TYPE_CHECKING:
    from psycopg import AsyncConnection

__all__ = ["PostgresStore"]

_NOW: Final = "extract(epoch from clock_timestamp())::double precision"

# Each migration's statements, applied once in order; `codemode_schema_version` records them.
MIGRATIONS: tuple[tuple[LiteralString, ...], ...] = (
    (
        """CREATE TABLE codemode_sessions (
            session_id text PRIMARY KEY,
            last_cell_id bigint NOT NULL DEFAULT 0
        )""",
        """CREATE TABLE codemode_values (
            session_id text NOT NULL,
            key text NOT NULL,
            value text NOT NULL,
            PRIMARY KEY (session_id, key)
        )""",
        """CREATE TABLE codemode_cells (
            ordinal bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            session_id text NOT NULL,
            cell_id text NOT NULL,
            header text NOT NULL,
            lease_owner text,
            lease_expires double precision,
            UNIQUE (session_id, cell_id)
        )""",
        # A record's cell row is locked (key share) until the record commits: a drop racing an
        # append waits for it, then takes its records along (the cascade); none is left behind.
        """CREATE TABLE codemode_cell_records (
            seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            cell bigint NOT NULL REFERENCES codemode_cells (ordinal) ON DELETE CASCADE,
            body text NOT NULL
        )""",
        "CREATE INDEX codemode_cell_records_by_cell ON codemode_cell_records (cell, seq)",
        "CREATE TABLE codemode_server_key (id integer PRIMARY KEY CHECK (id = 1), key bytea NOT NULL)",
    ),
)


class PostgresStore:
    """A `Store` in a PostgreSQL database, shared by every replica given the same URL."""

    def __init__(self, url: str) -> None:
        """`url`: a libpq connection URL (postgresql://user@host/db?...); connects on first use."""
        self._url = url
        self._connection: AsyncConnection[tuple[Any, ...]] | None = None
        self._lock = asyncio.Lock()
        self._migrated = False
        self._closed = False
        self._server_key: bytes | None = None

    def __repr__(self) -> str:
        return "PostgresStore(...)"  # the URL may hold a password

    @asynccontextmanager
    async def _db(self) -> AsyncGenerator[AsyncConnection[tuple[Any, ...]]]:
        """The connection, for this call alone; dropped if the call leaves it mid-statement."""
        async with self._lock:
            if self._closed:
                raise UsageError(f"{self!r} is closed")
            connection = self._connection
            if connection is None or connection.closed:
                connection = self._connection = await self._connect()
            try:
                yield connection
            except BaseException:
                if connection.closed or connection.info.transaction_status.name != "IDLE":
                    self._connection = None
                    await connection.close()
                raise

    async def _connect(self) -> AsyncConnection[tuple[Any, ...]]:
        try:
            import psycopg
        except ImportError:
            raise UsageError("PostgresStore needs psycopg 3: pip install 'codemode[postgres]'") from None
        connection = await psycopg.AsyncConnection.connect(self._url, autocommit=True)
        try:
            if not self._migrated:
                await _migrate(connection)
                self._migrated = True
        except BaseException:
            await connection.close()
            raise
        return connection

    async def open_session(self, session_id: str) -> SessionRecord:
        async with self._db() as db, db.transaction():
            await db.execute(
                "INSERT INTO codemode_sessions (session_id) VALUES (%s) ON CONFLICT DO NOTHING", (session_id,)
            )
            values = await db.execute("SELECT key, value FROM codemode_values WHERE session_id = %s", (session_id,))
            value_rows = await values.fetchall()
            cells = await db.execute(
                "SELECT cell_id FROM codemode_cells WHERE session_id = %s ORDER BY ordinal", (session_id,)
            )
            cell_rows = await cells.fetchall()
        return SessionRecord(
            values={str(key): str(value) for key, value in value_rows},
            cells=tuple(str(row[0]) for row in cell_rows),
        )

    async def session_exists(self, session_id: str) -> bool:
        async with self._db() as db:
            found = await db.execute("SELECT 1 FROM codemode_sessions WHERE session_id = %s", (session_id,))
            return await found.fetchone() is not None

    async def next_cell_id(self, session_id: str, count: int = 1) -> int:
        async with self._db() as db:
            taken = await db.execute(
                """INSERT INTO codemode_sessions AS s (session_id, last_cell_id) VALUES (%(id)s, %(count)s)
                ON CONFLICT (session_id) DO UPDATE SET last_cell_id = s.last_cell_id + %(count)s
                RETURNING last_cell_id""",
                {"id": session_id, "count": count},
            )
            row = await taken.fetchone()
        assert row is not None
        return int(row[0]) - count + 1

    async def put_values(self, session_id: str, writes: Mapping[str, str | None]) -> None:
        upserts = [(session_id, key, value) for key, value in writes.items() if value is not None]
        deletes = [key for key, value in writes.items() if value is None]
        async with self._db() as db, db.transaction():
            if upserts:
                async with db.cursor() as cursor:
                    await cursor.executemany(
                        """INSERT INTO codemode_values (session_id, key, value) VALUES (%s, %s, %s)
                        ON CONFLICT (session_id, key) DO UPDATE SET value = excluded.value""",
                        upserts,
                    )
            if deletes:
                await db.execute(
                    "DELETE FROM codemode_values WHERE session_id = %s AND key = ANY(%s)", (session_id, deletes)
                )

    async def create_cell(
        self, session_id: str, cell_id: str, header: str, owner: str, lease_s: float, records: Sequence[str] = ()
    ) -> None:
        async with self._db() as db:
            # One statement: the cell and its first records, atomically, in one round trip.
            created = await db.execute(
                f"""WITH cell AS (
                    INSERT INTO codemode_cells (session_id, cell_id, header, lease_owner, lease_expires)
                    VALUES (%(session)s, %(cell)s, %(header)s, %(owner)s, {_NOW} + %(lease)s)
                    ON CONFLICT DO NOTHING RETURNING ordinal
                ), first_records AS (
                    INSERT INTO codemode_cell_records (cell, body)
                    SELECT cell.ordinal, r.body
                    FROM cell, unnest(%(bodies)s::text[]) WITH ORDINALITY AS r(body, n)
                    ORDER BY r.n
                )
                SELECT count(*) FROM cell""",
                {"session": session_id, "cell": cell_id, "header": header, "owner": owner, "lease": lease_s,
                 "bodies": list(records)},
            )
            row = await created.fetchone()
            if row is None or row[0] != 1:
                raise UsageError(f"cell {cell_id!r} of session {session_id!r} already has a journal")

    async def append(self, session_id: str, cell_id: str, records: Sequence[str]) -> None:
        async with self._db() as db:
            # One statement: atomic, one round trip; seq follows the array's order.
            await db.execute(
                """INSERT INTO codemode_cell_records (cell, body)
                SELECT c.ordinal, r.body
                FROM codemode_cells AS c, unnest(%(bodies)s::text[]) WITH ORDINALITY AS r(body, n)
                WHERE c.session_id = %(session)s AND c.cell_id = %(cell)s
                ORDER BY r.n""",
                {"session": session_id, "cell": cell_id, "bodies": list(records)},
            )

    async def read_cell(self, session_id: str, cell_id: str) -> CellRecord | None:
        async with self._db() as db:
            # One statement: the header, lease and records of one snapshot.
            found = await db.execute(
                """SELECT header, lease_owner, lease_expires,
                    ARRAY(SELECT body FROM codemode_cell_records WHERE cell = c.ordinal ORDER BY seq)
                FROM codemode_cells AS c WHERE session_id = %s AND cell_id = %s""",
                (session_id, cell_id),
            )
            row = await found.fetchone()
        if row is None:
            return None
        header, lease_owner, lease_expires, bodies = row
        return CellRecord(
            header=str(header),
            records=tuple(str(body) for body in bodies),
            lease_owner=None if lease_owner is None else str(lease_owner),
            lease_expires=None if lease_expires is None else float(lease_expires),
        )

    async def drop_cell(self, session_id: str, cell_id: str) -> None:
        async with self._db() as db:
            await db.execute("DELETE FROM codemode_cells WHERE session_id = %s AND cell_id = %s", (session_id, cell_id))

    async def acquire_lease(self, session_id: str, cell_id: str, owner: str, lease_s: float) -> bool:
        async with self._db() as db:
            # Two replicas racing: the second UPDATE waits for the first, then re-checks its WHERE.
            taken = await db.execute(
                f"""UPDATE codemode_cells SET lease_owner = %(owner)s, lease_expires = {_NOW} + %(lease)s
                WHERE session_id = %(session)s AND cell_id = %(cell)s
                AND (lease_owner IS NULL OR lease_owner = %(owner)s OR lease_expires < {_NOW})""",
                {"owner": owner, "lease": lease_s, "session": session_id, "cell": cell_id},
            )
            return taken.rowcount == 1

    async def release_lease(self, session_id: str, cell_id: str, owner: str) -> None:
        async with self._db() as db:
            await db.execute(
                """UPDATE codemode_cells SET lease_owner = NULL, lease_expires = NULL
                WHERE session_id = %s AND cell_id = %s AND lease_owner = %s""",
                (session_id, cell_id, owner),
            )

    async def drop_session(self, session_id: str) -> None:
        async with self._db() as db, db.transaction():
            for table in ("codemode_sessions", "codemode_cells", "codemode_values"):
                await db.execute(f"DELETE FROM {table} WHERE session_id = %s", (session_id,))

    async def server_key(self) -> bytes:
        if self._server_key is None:
            async with self._db() as db:
                await db.execute(
                    "INSERT INTO codemode_server_key (id, key) VALUES (1, %s) ON CONFLICT DO NOTHING",
                    (secrets.token_bytes(32),),
                )
                found = await db.execute("SELECT key FROM codemode_server_key WHERE id = 1")
                row = await found.fetchone()
            assert row is not None
            self._server_key = bytes(row[0])
        return self._server_key

    async def aclose(self) -> None:
        async with self._lock:
            self._closed = True
            if self._connection is not None:
                await self._connection.close()
                self._connection = None


async def _migrate(db: AsyncConnection[tuple[Any, ...]]) -> None:
    """Apply the migrations this schema lacks, once, even with other replicas starting too."""
    async with db.transaction():
        await db.execute("SELECT pg_advisory_xact_lock(hashtext('codemode.store.migrate:' || current_schema()))")
        await db.execute(
            "CREATE TABLE IF NOT EXISTS codemode_schema_version (version integer PRIMARY KEY, applied timestamptz NOT NULL)"
        )
        found = await db.execute("SELECT coalesce(max(version), 0) FROM codemode_schema_version")
        row = await found.fetchone()
        current = int(row[0]) if row is not None else 0
        if current > len(MIGRATIONS):
            raise UsageError(
                f"the PostgreSQL store is at schema version {current}, newer than this codemode knows "
                f"({len(MIGRATIONS)}): upgrade codemode"
            )
        for version, statements in enumerate(MIGRATIONS[current:], start=current + 1):
            for statement in statements:
                await db.execute(statement)
            await db.execute("INSERT INTO codemode_schema_version (version, applied) VALUES (%s, now())", (version,))
