"""Durable stores: where sessions, stored values and cell journals outlive the host process.

    open_store("sqlite:///var/lib/app/codemode.db")     one machine (processes may share the file)
    open_store("postgresql://user@db.internal/app")     several replicas (needs codemode[postgres])

Both keep the same things: each session's stored values and the journal of each of its cells, with
cell ids unique across replicas and a lease saying which replica runs a cell. Each store creates and
migrates its tables itself (recorded in `codemode_schema_version`).
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from codemode.errors import UsageError
from codemode.store._base import CellRecord, SessionRecord, Store
from codemode.store._postgres import PostgresStore
from codemode.store._sqlite import SQLiteStore

__all__ = ["CellRecord", "PostgresStore", "SQLiteStore", "SessionRecord", "Store", "open_store"]

_ACCEPTED = "'sqlite:///absolute/path/to/file.db', 'postgresql://user@host/database' or a Store object"


def open_store(url_or_store: str | Store) -> Store:
    """The store a URL names (connecting on first use), or the given Store object itself."""
    if not isinstance(url_or_store, str):
        if isinstance(url_or_store, Store):
            return url_or_store
        raise UsageError(f"store must be {_ACCEPTED}, not {type(url_or_store).__name__}")
    url = url_or_store
    scheme = url.partition(":")[0].lower()
    if scheme in ("postgresql", "postgres"):
        return PostgresStore(url)
    if scheme == "sqlite":
        return SQLiteStore(_sqlite_path(url))
    raise UsageError(f"store must be {_ACCEPTED}, not {url!r}")


def _sqlite_path(url: str) -> str:
    """The absolute file path of a sqlite:/// URL."""
    parts = urlsplit(url)
    path = unquote(parts.path)
    if parts.netloc or parts.query or parts.fragment or not url.lower().startswith("sqlite:///"):
        raise UsageError(f"a SQLite store URL is 'sqlite:///' then an absolute file path, with no options, not {url!r}")
    if path.endswith("/:memory:") or path == "/":
        raise UsageError(
            f"a SQLite store must be a file, not {url!r}: an in-memory database would not outlive the process"
        )
    return path
