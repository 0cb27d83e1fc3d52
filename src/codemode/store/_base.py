"""What a durable store keeps and the interface both stores implement.

The store orders and keeps opaque JSON texts that the session layer writes (stored values, cell
headers, journal records); it never parses them. A session's cells are ordered by creation, a
cell's records by append; ids and leases are atomic across replicas sharing the store.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = ["CellRecord", "SessionRecord", "Store"]


@dataclass(frozen=True)
class SessionRecord:
    """A session as stored: what a resuming host starts from."""

    values: dict[str, str]  # stored values: key -> JSON text
    cells: tuple[str, ...]  # ids of cells with a journal (not dropped), oldest first


@dataclass(frozen=True)
class CellRecord:
    """One cell's journal and who runs it now."""

    header: str  # JSON text written by create_cell
    records: tuple[str, ...]  # appended JSON texts, in append order
    lease_owner: str | None
    lease_expires: float | None  # unix time


@runtime_checkable
class Store(Protocol):
    """Durable sessions, values and cell journals, shared by every replica that opens it."""

    async def open_session(self, session_id: str) -> SessionRecord:
        """The session's values and cells; an absent session is created empty."""
        ...

    async def session_exists(self, session_id: str) -> bool:
        """Whether the session was opened (and not dropped) by any replica."""
        ...

    async def next_cell_id(self, session_id: str, count: int = 1) -> int:
        """The first of the session's next `count` cell ids (1, 2, 3... per session), reserved
        for the caller: unique across replicas (atomic in the store)."""
        ...

    async def put_values(self, session_id: str, writes: Mapping[str, str | None]) -> None:
        """Upsert each value, delete each key mapped to None, all in one transaction."""
        ...

    async def create_cell(
        self, session_id: str, cell_id: str, header: str, owner: str, lease_s: float, records: Sequence[str] = ()
    ) -> None:
        """Start a cell's journal with its first `records`, atomically, leased to `owner` for
        `lease_s` seconds (UsageError if it exists)."""
        ...

    async def append(self, session_id: str, cell_id: str, records: Sequence[str]) -> None:
        """Add records after the cell's others, atomically; a dropped cell's records are discarded."""
        ...

    async def read_cell(self, session_id: str, cell_id: str) -> CellRecord | None:
        """The cell's header, records and lease, or None if it has no journal."""
        ...

    async def drop_cell(self, session_id: str, cell_id: str) -> None:
        """Forget the cell's journal (no-op if absent)."""
        ...

    async def acquire_lease(self, session_id: str, cell_id: str, owner: str, lease_s: float) -> bool:
        """Take or renew the cell's lease: True if it was free, expired or already `owner`'s;
        False if another owner holds it or the cell does not exist."""
        ...

    async def release_lease(self, session_id: str, cell_id: str, owner: str) -> None:
        """Free the lease if `owner` holds it (no-op otherwise)."""
        ...

    async def drop_session(self, session_id: str) -> None:
        """Forget the session, its values and its cells."""
        ...

    async def server_key(self) -> bytes:
        """32 random bytes made once per store and the same for every replica (signs handles)."""
        ...

    async def aclose(self) -> None:
        """Close the connection; the store cannot be used afterwards."""
        ...
