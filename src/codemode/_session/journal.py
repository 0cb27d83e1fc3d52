"""One cell's journal: what a fresh isolate needs to replay the cell exactly (issue 22).

A journal is a header (the program, the stored values it started with, the seed of its
`Math.random`) and records, in the order they happened:

* `call`: the script called a tool (its id, name and a hash of its arguments). With a store it is
  written before the tool runs, so after a restart a call that may have run is known.
* `result`: the call's outcome, before the script is handed it.
* `steps`: what the isolate applied, as its engine reported (`JournalEvent`): which calls one
  host step settled, which timer fired, which clock value a `Date` read.
* `seen`: how many output items and notifications the caller had received, so a replay does not
  hand them out again.
* `armed`: calls up to this id may have started even without a `call` record (see below).

Every record is one JSON object; the records of one flush are stored as one JSON array. The
journal keeps them in memory (a cell whose engine worker
dies is replayed from memory) and, with a store, appends them there; `flush` writes what is
pending, at the points where something leaves the host: before a tool runs and before an
observation is returned; the cell's row is written with its first flush, so a cell that ends
within its first observation without calling a tool writes nothing. Past `max_bytes` the cell
is no longer durable: its records are dropped and the store forgets it.

Arming takes the store's write off a call's path. A call must be on record as possibly started
before its tool runs (at-most-once). Once a call's result is handed to the script, the host
`arm`s the script's next call and flushes that in the background, while the isolate works
towards the call; when the call comes, `flush_before_call` finds it covered and the tool runs at
once. A replay treats an armed call without a `call` record as one that may have run. If no call
comes soon (`DISARM_AFTER_S`), or at the next observation, the arming is withdrawn (`disarm`), so
a host that stops while the script computes or sleeps between calls does not make the next call
look interrupted.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from json.encoder import encode_basestring_ascii as json_string
from typing import TYPE_CHECKING, Any

from codemode._engine.base import CellProgram, ClockRead, JournalEntry, ResolvedCalls, TimerFired

if TYPE_CHECKING:
    from codemode.store import Store

__all__ = ["CallRecord", "CellJournal", "JournalPlace", "argument_hash"]

JOURNAL_FORMAT = 1
DISARM_AFTER_S = 0.05  # an arming no call used within this long is withdrawn


def argument_hash(tool_name: str, arguments_json: str | None) -> str:
    """What a replay compares to know the script made the same call: the tool and its arguments."""
    text = tool_name + "\0" + ("" if arguments_json is None else arguments_json)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


@dataclass
class CallRecord:
    """A call the script made; `outcome` is (ok, payload) once it ended."""

    tool_name: str
    argument_hash: str
    outcome: tuple[bool, str] | None = None


@dataclass(frozen=True)
class JournalPlace:
    """Where a journal lives in a store: the session and cell, and the host that owns the cell."""

    store: Store
    session_id: str
    cell_id: str
    owner: str
    lease_s: float


@dataclass(eq=False)  # compared and hashed by identity: the session keeps sets of them
class CellJournal:
    """The journal of one cell (see the module docstring)."""

    program: CellProgram
    random_seed: int
    max_bytes: int
    calls: dict[int, CallRecord] = field(default_factory=dict[int, CallRecord])
    steps: list[JournalEntry] = field(default_factory=list[JournalEntry])
    delivered_outputs: int = 0
    delivered_notifications: int = 0
    durable: bool = True
    size: int = 0
    place: JournalPlace | None = None
    created: bool = False  # the store has the cell's row (written with its first flush)
    highest_call: int = 0  # the highest call id the script made
    armed: int = 0  # calls up to this id are on record as possibly started (see the docstring)
    armed_on_store: int = 0  # ... and that record is in the store
    _pending: list[str] = field(default_factory=list[str])
    _flushing: asyncio.Lock = field(default_factory=asyncio.Lock)  # one flush at a time: calls run at once
    _forget_in_store: bool = False

    def __post_init__(self) -> None:
        if self.size == 0:  # a new journal: the program counts against the cap too
            program = self.program
            self.size = len(program.code) + len(program.hoisted) + len(program.stored_json) + 200

    # -- the header -------------------------------------------------------------------------
    def header(self) -> str:
        program = self.program
        text = json.dumps(
            {
                "format": JOURNAL_FORMAT,
                "code": program.code,
                "hoisted": program.hoisted,
                "stored_json": program.stored_json,
                "store_budget_bytes": program.store_budget_bytes,
                "store_limit_error": program.store_limit_error,
                "random_seed": self.random_seed,
            },
        )
        return text

    @classmethod
    def restore(cls, header: str, records: Sequence[str], max_bytes: int) -> CellJournal:
        """A journal read back from a store (a new host resuming the cell)."""
        fields_ = json.loads(header)
        if fields_.get("format") != JOURNAL_FORMAT:
            raise ValueError(f"unknown journal format {fields_.get('format')!r}")
        program = CellProgram(
            fields_["code"],
            fields_["hoisted"],
            stored_json=fields_["stored_json"],
            store_budget_bytes=fields_["store_budget_bytes"],
            store_limit_error=fields_["store_limit_error"],
        )
        journal = cls(program, int(fields_["random_seed"]), max_bytes, size=len(header), created=True)
        for text in records:
            journal.size += len(text)
            for record in json.loads(text):  # each stored row holds the records of one flush
                journal._apply(record)
        return journal

    # -- records ----------------------------------------------------------------------------
    def call_started(self, call_id: int, tool_name: str, arguments_json: str | None) -> None:
        if not self.durable:
            return
        digest = argument_hash(tool_name, arguments_json)
        self.calls[call_id] = CallRecord(tool_name, digest)
        self.highest_call = max(self.highest_call, call_id)
        self._keep(lambda: f'{{"call":{call_id},"tool":{json_string(tool_name)},"hash":"{digest}"}}', 64 + len(tool_name))

    def call_ended(self, call_id: int, ok: bool, payload: str) -> None:
        call = self.calls.get(call_id)
        if call is None or call.outcome is not None or not self.durable:
            return
        call.outcome = (ok, payload)
        self._keep(
            lambda: f'{{"result":{call_id},"ok":{"true" if ok else "false"},"payload":{json_string(payload)}}}',
            40 + len(payload),
        )

    def applied(self, entries: Sequence[JournalEntry]) -> None:
        if not self.durable:
            return
        self.steps.extend(entries)
        self._keep(lambda: f'{{"steps":[{",".join(map(_entry_json, entries))}]}}', 16 + 24 * len(entries))

    def delivered(self, outputs: int, notifications: int) -> None:
        if (outputs, notifications) == (self.delivered_outputs, self.delivered_notifications) or not self.durable:
            return
        self.delivered_outputs, self.delivered_notifications = outputs, notifications
        self._keep(lambda: f'{{"seen":[{outputs},{notifications}]}}', 24)

    def arm(self) -> bool:
        """Put the script's next call on record as possibly started, ahead of it (with a store
        only); True if that needs a flush."""
        call_id = self.highest_call + 1
        if self.place is None or not self.durable or call_id <= self.armed:
            return False
        self.armed = call_id
        self._keep(lambda: f'{{"armed":{call_id}}}', 16)
        return True

    def disarm(self) -> bool:
        """Withdraw an arming no call used; True if that needs a flush."""
        if self.armed <= self.highest_call or not self.durable:
            return False
        made = self.armed = self.highest_call
        self._keep(lambda: f'{{"armed":{made}}}', 16)
        return True

    def _keep(self, record: Callable[[], str], estimate: int) -> None:
        """Count a record against the cap; with a store, queue its JSON text for the next flush.
        (In memory only, its size is estimated: encoding it would cost more than the record.)
        The texts are built by hand, strings escaped to ASCII (a lone surrogate a script sent
        stays storable): `json.dumps` of a dict cost more than the store's write."""
        if self.place is None:
            self.size += estimate
        else:
            text = record()
            self.size += len(text)
            self._pending.append(text)
        if self.size > self.max_bytes:
            self.durable = False
            self._pending.clear()
            self.calls.clear()
            self.steps.clear()
            self._forget_in_store = self.created

    def _apply(self, record: dict[str, Any]) -> None:
        if "call" in record:
            call_id = int(record["call"])
            self.calls[call_id] = CallRecord(record["tool"], record["hash"])
            self.highest_call = max(self.highest_call, call_id)
        elif "result" in record:
            call = self.calls.get(int(record["result"]))
            if call is not None:
                call.outcome = (bool(record["ok"]), str(record["payload"]))
        elif "steps" in record:
            self.steps.extend(_entry(item) for item in record["steps"])
        elif "seen" in record:
            self.delivered_outputs, self.delivered_notifications = (int(n) for n in record["seen"])
        elif "armed" in record:
            self.armed = self.armed_on_store = int(record["armed"])

    # -- the store ---------------------------------------------------------------------------
    async def flush(self) -> None:
        """Write the pending records to the store: the cell's row comes with its first ones (a
        cell that ends before anything needs to last is never written). Once the cell is no
        longer durable, forget it there instead."""
        place = self.place
        if place is None:
            return
        async with self._flushing:  # concurrent calls (`Promise.all`) flush in turn, in order
            await self._flush_locked(place)

    async def flush_before_call(self, call_id: int) -> None:
        """`flush`, unless call `call_id` is on record already: armed, and that in the store."""
        place = self.place
        if place is None:
            return
        async with self._flushing:  # an arming being written: wait for it
            if self.durable and not self._forget_in_store and call_id <= self.armed_on_store:
                return
            await self._flush_locked(place)

    async def _flush_locked(self, place: JournalPlace) -> None:
        if self._forget_in_store:
            self._forget_in_store = False
            await place.store.drop_cell(place.session_id, place.cell_id)
        elif self.durable:
            await self._flush_pending(place)

    async def _flush_pending(self, place: JournalPlace) -> None:
        # The records of one flush go as one (a JSON array): one row, one statement.
        pending, self._pending = self._pending, []
        armed = self.armed
        batch = [f"[{','.join(pending)}]"] if pending else []
        try:
            if not self.created:
                await place.store.create_cell(
                    place.session_id, place.cell_id, self.header(), place.owner, place.lease_s, batch
                )
                self.created = True
            elif batch:
                await place.store.append(place.session_id, place.cell_id, batch)
        except BaseException:
            self._pending[:0] = pending  # not written: they go with the next flush
            raise
        self.armed_on_store = armed


def _entry_json(entry: JournalEntry) -> str:
    if isinstance(entry, ResolvedCalls):
        return f'["b",[{",".join(map(str, entry.call_ids))}]]'
    if isinstance(entry, TimerFired):
        return f'["t",{entry.timer_id}]'
    return json.dumps(["d", entry.ms, entry.times])


def _entry(item: list[Any]) -> JournalEntry:
    kind = item[0]
    if kind == "b":
        return ResolvedCalls(tuple(int(i) for i in item[1]))
    if kind == "t":
        return TimerFired(int(item[1]))
    if kind == "d":
        return ClockRead(float(item[1]), int(item[2]))
    raise ValueError(f"unknown journal step {kind!r}")
