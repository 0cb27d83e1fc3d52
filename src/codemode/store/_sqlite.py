"""The embedded store: one SQLite file through the standard library.

Durability: WAL with synchronous=NORMAL. A commit is in the file's write-ahead log (the OS page
cache) when the call returns, so it survives the process being killed (SIGKILL, OOM, a crash),
which is what cells need to survive; a power loss or OS crash may lose the last commits. That
keeps `append`, which is on the exec path, at tens of microseconds.

Calls run on the event loop's thread: each is one short transaction on a local file. Several
processes may share one file on one machine (not a network file system): writes take the lock up
front (BEGIN IMMEDIATE) so ids and leases are atomic, and a busy file is waited for up to
BUSY_TIMEOUT_S.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import time
from collections.abc import Generator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from codemode.errors import UsageError
from codemode.store._base import CellRecord, SessionRecord

__all__ = ["SQLiteStore"]

BUSY_TIMEOUT_S = 10.0
# A journal record is a few hundred bytes and every append commits the pages it touched (the
# records' table and their index) to the WAL: with 1 KiB pages a commit writes a quarter of what
# SQLite's default 4 KiB pages do, and takes about half as long. Large stored values span pages.
PAGE_SIZE = 1024

# Each migration's statements, applied once in order; `codemode_schema_version` records them.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE codemode_sessions (
            session_id TEXT PRIMARY KEY,
            last_cell_id INTEGER NOT NULL DEFAULT 0
        )""",
        """CREATE TABLE codemode_values (
            session_id TEXT NOT NULL,
            key TEXT NOT NULL,
            value TEXT NOT NULL,
            PRIMARY KEY (session_id, key)
        ) WITHOUT ROWID""",
        # ordinal: creation order, never reused, so no record can outlive its cell's journal.
        """CREATE TABLE codemode_cells (
            ordinal INTEGER PRIMARY KEY AUTOINCREMENT,
            session_id TEXT NOT NULL,
            cell_id TEXT NOT NULL,
            header TEXT NOT NULL,
            lease_owner TEXT,
            lease_expires REAL,
            UNIQUE (session_id, cell_id)
        )""",
        # seq: append order (a rowid: new ones are above every surviving one).
        """CREATE TABLE codemode_cell_records (
            seq INTEGER PRIMARY KEY,
            cell INTEGER NOT NULL,
            body TEXT NOT NULL
        )""",
        "CREATE INDEX codemode_cell_records_by_cell ON codemode_cell_records (cell, seq)",
        "CREATE TABLE codemode_server_key (id INTEGER PRIMARY KEY CHECK (id = 1), key BLOB NOT NULL)",
    ),
)

# One statement per record: the cell is looked up where the record is written (none: no record).
_APPEND = """INSERT INTO codemode_cell_records (cell, body)
    SELECT ordinal, ?3 FROM codemode_cells WHERE session_id = ?1 AND cell_id = ?2"""
_CELL_ORDINAL = "SELECT ordinal FROM codemode_cells WHERE session_id = ? AND cell_id = ?"


class SQLiteStore:
    """A `Store` in one SQLite file (created, with its tables, on first use)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._path = Path(path)
        self._connection: sqlite3.Connection | None = None
        self._closed = False
        self._server_key: bytes | None = None

    def __repr__(self) -> str:
        return f"SQLiteStore({str(self._path)!r})"

    def _db(self) -> sqlite3.Connection:
        """The open connection (opened and migrated on first use)."""
        if self._connection is not None:
            return self._connection
        if self._closed:
            raise UsageError(f"{self!r} is closed")
        if not self._path.parent.is_dir():
            raise UsageError(f"the SQLite store {str(self._path)!r} cannot be created: its directory does not exist")
        connection = sqlite3.connect(self._path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
        try:
            connection.execute(f"PRAGMA page_size={PAGE_SIZE}")  # a new file only; an existing one keeps its own
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            _migrate(connection)
        except BaseException:
            connection.close()
            raise
        self._connection = connection
        return connection

    @contextmanager
    def _write(self) -> Generator[sqlite3.Connection]:
        """One write transaction, holding the file's write lock from its start."""
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            if db.in_transaction:  # some errors end the transaction themselves
                db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    @contextmanager
    def _read(self) -> Generator[sqlite3.Connection]:
        """One read transaction: its statements see one snapshot."""
        db = self._db()
        db.execute("BEGIN")
        try:
            yield db
        finally:
            db.execute("COMMIT")

    async def open_session(self, session_id: str) -> SessionRecord:
        with self._write() as db:
            db.execute("INSERT OR IGNORE INTO codemode_sessions (session_id) VALUES (?)", (session_id,))
            values = db.execute("SELECT key, value FROM codemode_values WHERE session_id = ?", (session_id,))
            value_rows: list[tuple[str, str]] = values.fetchall()
            cells = db.execute(
                "SELECT cell_id FROM codemode_cells WHERE session_id = ? ORDER BY ordinal", (session_id,)
            )
            cell_rows: list[tuple[str]] = cells.fetchall()
        return SessionRecord(values=dict(value_rows), cells=tuple(row[0] for row in cell_rows))

    async def session_exists(self, session_id: str) -> bool:
        row = self._db().execute("SELECT 1 FROM codemode_sessions WHERE session_id = ?", (session_id,)).fetchone()
        return row is not None

    async def next_cell_id(self, session_id: str, count: int = 1) -> int:
        row: tuple[int] = (
            self._db()
            .execute(
                """INSERT INTO codemode_sessions (session_id, last_cell_id) VALUES (?1, ?2)
                ON CONFLICT (session_id) DO UPDATE SET last_cell_id = last_cell_id + ?2
                RETURNING last_cell_id""",
                (session_id, count),
            )
            .fetchone()
        )
        return row[0] - count + 1

    async def put_values(self, session_id: str, writes: Mapping[str, str | None]) -> None:
        upserts = [(session_id, key, value) for key, value in writes.items() if value is not None]
        deletes = [(session_id, key) for key, value in writes.items() if value is None]
        with self._write() as db:
            db.executemany(
                """INSERT INTO codemode_values (session_id, key, value) VALUES (?, ?, ?)
                ON CONFLICT (session_id, key) DO UPDATE SET value = excluded.value""",
                upserts,
            )
            db.executemany("DELETE FROM codemode_values WHERE session_id = ? AND key = ?", deletes)

    async def create_cell(
        self, session_id: str, cell_id: str, header: str, owner: str, lease_s: float, records: Sequence[str] = ()
    ) -> None:
        try:
            with self._write() as db:
                db.execute(
                    """INSERT INTO codemode_cells (session_id, cell_id, header, lease_owner, lease_expires)
                    VALUES (?, ?, ?, ?, ?)""",
                    (session_id, cell_id, header, owner, time.time() + lease_s),
                )
                if records:
                    db.executemany(_APPEND, [(session_id, cell_id, record) for record in records])
        except sqlite3.IntegrityError:
            raise UsageError(f"cell {cell_id!r} of session {session_id!r} already has a journal") from None

    async def append(self, session_id: str, cell_id: str, records: Sequence[str]) -> None:
        if len(records) == 1:  # the common case: one statement, its own transaction
            self._db().execute(_APPEND, (session_id, cell_id, records[0]))
            return
        with self._write() as db:
            db.executemany(_APPEND, [(session_id, cell_id, record) for record in records])

    async def read_cell(self, session_id: str, cell_id: str) -> CellRecord | None:
        with self._read() as db:
            cell: tuple[str, str | None, float | None] | None = db.execute(
                """SELECT header, lease_owner, lease_expires FROM codemode_cells
                WHERE session_id = ? AND cell_id = ?""",
                (session_id, cell_id),
            ).fetchone()
            if cell is None:
                return None
            bodies: list[tuple[str]] = db.execute(
                f"SELECT body FROM codemode_cell_records WHERE cell = ({_CELL_ORDINAL}) ORDER BY seq",
                (session_id, cell_id),
            ).fetchall()
        header, lease_owner, lease_expires = cell
        return CellRecord(
            header=header,
            records=tuple(row[0] for row in bodies),
            lease_owner=lease_owner,
            lease_expires=lease_expires,
        )

    async def drop_cell(self, session_id: str, cell_id: str) -> None:
        with self._write() as db:
            db.execute(f"DELETE FROM codemode_cell_records WHERE cell = ({_CELL_ORDINAL})", (session_id, cell_id))
            db.execute("DELETE FROM codemode_cells WHERE session_id = ? AND cell_id = ?", (session_id, cell_id))

    async def acquire_lease(self, session_id: str, cell_id: str, owner: str, lease_s: float) -> bool:
        now = time.time()
        taken = self._db().execute(
            """UPDATE codemode_cells SET lease_owner = ?, lease_expires = ?
            WHERE session_id = ? AND cell_id = ?
            AND (lease_owner IS NULL OR lease_owner = ? OR lease_expires < ?)""",
            (owner, now + lease_s, session_id, cell_id, owner, now),
        )
        return taken.rowcount == 1

    async def release_lease(self, session_id: str, cell_id: str, owner: str) -> None:
        self._db().execute(
            """UPDATE codemode_cells SET lease_owner = NULL, lease_expires = NULL
            WHERE session_id = ? AND cell_id = ? AND lease_owner = ?""",
            (session_id, cell_id, owner),
        )

    async def drop_session(self, session_id: str) -> None:
        with self._write() as db:
            db.execute(
                "DELETE FROM codemode_cell_records WHERE cell IN (SELECT ordinal FROM codemode_cells WHERE session_id = ?)",
                (session_id,),
            )
            for table in ("codemode_cells", "codemode_values", "codemode_sessions"):
                db.execute(f"DELETE FROM {table} WHERE session_id = ?", (session_id,))

    async def server_key(self) -> bytes:
        if self._server_key is None:
            with self._write() as db:
                db.execute(
                    "INSERT OR IGNORE INTO codemode_server_key (id, key) VALUES (1, ?)", (secrets.token_bytes(32),)
                )
                row: tuple[bytes] = db.execute("SELECT key FROM codemode_server_key WHERE id = 1").fetchone()
            self._server_key = row[0]
        return self._server_key

    async def aclose(self) -> None:
        self._closed = True
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def _migrate(db: sqlite3.Connection) -> None:
    """Apply the migrations this file lacks, once, even with other processes opening it too."""
    db.execute("BEGIN IMMEDIATE")
    try:
        db.execute(
            "CREATE TABLE IF NOT EXISTS codemode_schema_version (version INTEGER PRIMARY KEY, applied REAL NOT NULL)"
        )
        row: tuple[Any] = db.execute("SELECT coalesce(max(version), 0) FROM codemode_schema_version").fetchone()
        current = int(row[0])
        if current > len(MIGRATIONS):
            raise UsageError(
                f"the SQLite store is at schema version {current}, newer than this codemode knows "
                f"({len(MIGRATIONS)}): upgrade codemode"
            )
        for version, statements in enumerate(MIGRATIONS[current:], start=current + 1):
            for statement in statements:
                db.execute(statement)
            db.execute("INSERT INTO codemode_schema_version (version, applied) VALUES (?, ?)", (version, time.time()))
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
