"""The engine interface: what the cell logic needs from a JavaScript engine, and nothing more.

Commands go in as method calls (`start`, `resolve_tool_call`, `terminate`, `release`, and for
durable cells `resolve_together`, `fire_timer`, `go_live`), reaching the script in the order they
are made; everything the script does, and everything that happens to the engine under it (a heap
limit reached, an engine process that died), comes out as `EngineEvent`s through one callback, in
order. A program given a `Determinism` is journaled (`JournalEvent`s) so that a fresh isolate can
replay it. The session/cell layer imports only this module, so engines (in-process V8, V8 in supervised worker
processes, a scripted fake in tests) are interchangeable.

Lifecycle: an `Engine` is an async context manager; `aclose()` stops what it runs (its worker
processes, its isolates). An engine that cannot start, or stops under a session, raises
`codemode.errors.EngineError` from `open_session`/`ready` (cause chained); a cell whose engine
died gets an `EngineDiedEvent` instead.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Protocol, Self, TypeAlias

from codemode._protocol.types import OutputItem


@dataclass(frozen=True, slots=True)
class OutputEvent:
    """The script appended an item with `text`/`image`/`audio`/`forward_output`."""

    item: OutputItem


@dataclass(frozen=True, slots=True)
class OutputDroppedEvent:
    """The engine dropped `items` output items (`chars` characters of text and URLs) in order
    here, because more output waited inside it than it keeps (the script printed faster than the
    host could take it while the script never paused); the cell shows a notice in their place."""

    items: int
    chars: int


@dataclass(frozen=True, slots=True)
class NotifyEvent:
    """The script called `notify(text)`."""

    text: str


@dataclass(frozen=True, slots=True)
class ToolCallEvent:
    """The script called `tools.<name>(args)`; answer with `EngineCell.resolve_tool_call`.

    `arguments_json` is the JSON text of the first argument, or None when it was absent
    (no argument, or one that JSON-serializes to nothing such as `undefined`).
    """

    call_id: int
    tool_name: str
    arguments_json: str | None


@dataclass(frozen=True, slots=True)
class YieldEvent:
    """The script called `yield_control()`."""


@dataclass(frozen=True, slots=True)
class FinishedEvent:
    """The script's top-level evaluation settled (or the engine gave up on it).

    `error` is the model-facing error text (None on success); `stored_writes` maps each key the
    script passed to `store` to the JSON text of its last value.
    """

    error: str | None
    stored_writes: Mapping[str, str] = field(default_factory=dict[str, str])


@dataclass(frozen=True, slots=True)
class MemoryLimitEvent:
    """The cell's isolate reached its heap limit; the cell must be stopped (`terminate`).

    Pushed by the engine wherever the overflow happened (an evaluation, a timer, after an
    `await`), so the cell layer never polls for it.
    """


@dataclass(frozen=True, slots=True)
class EngineDiedEvent:
    """The engine under the cell stopped (its process died or was killed); the script is gone.

    `error` is the model-facing text: what stopped and why, and what to do about it. No more
    events follow, and `terminate`/`release` are no-ops from now on.
    """

    error: str
    # True when the engine died on its own while this cell ran on it (a crash, an out-of-memory
    # abort, a kill from outside), so this cell may be what killed it; False when the host
    # stopped the engine for another reason (it was retired, another cell could not be
    # interrupted), so this cell is not to blame.
    suspect: bool = True


@dataclass(frozen=True, slots=True)
class ResolvedCalls:
    """One step of the script settled these calls, in this order (one `resolve_together` replays it)."""

    call_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class TimerFired:
    """A timer's callback ran live, as its own step (`fire_timer` replays it)."""

    timer_id: int


@dataclass(frozen=True, slots=True)
class ClockRead:
    """The script read the real clock (`Date.now()`, `new Date()`, `Date()`, `Temporal.Now`,
    `Intl.DateTimeFormat().format()`) `times` times in a row and got `ms` each time (a loop
    waiting on the clock reads one value a million times); replay hands them back."""

    ms: float
    times: int = 1


JournalEntry: TypeAlias = ResolvedCalls | TimerFired | ClockRead


@dataclass(frozen=True, slots=True)
class JournalEvent:
    """Non-deterministic inputs the isolate applied, in order, since the last event (cells with a
    `Determinism` only). It precedes every event that depends on them, so a host that journals
    what it saw can replay the cell up to its last event."""

    entries: tuple[JournalEntry, ...]


EngineEvent: TypeAlias = (
    OutputEvent
    | OutputDroppedEvent
    | NotifyEvent
    | ToolCallEvent
    | YieldEvent
    | FinishedEvent
    | MemoryLimitEvent
    | EngineDiedEvent
    | JournalEvent
)
EventSink: TypeAlias = Callable[[EngineEvent], None]


@dataclass(frozen=True, slots=True)
class ToolBinding:
    """A nested tool as the engine installs it: the JS global name and its ALL_TOOLS text."""

    global_name: str
    description: str


@dataclass(frozen=True)
class SessionSetup:
    """What every cell of one session runs with; given to a fresh isolate when a cell starts."""

    tools: Sequence[ToolBinding]
    heap_limit_bytes: int


MAX_RANDOM_SEED = 2**53  # seeds are JS numbers: integers below this are exact


@dataclass(frozen=True)
class Determinism:
    """Makes a cell replayable: its non-deterministic inputs are seeded, recorded or handed back.

    `random_seed` seeds the script's Math.random (the host journals the seed, so nothing is
    recorded per call); `clock` are recorded clock readings (a number: one reading; a
    `ClockRead`: its `ms`, `times` times), handed out first (in replay) before the real clock,
    which is recorded; `replaying` makes timers wait for `fire_timer` until
    `go_live`, and leaves the batches and fires the host replays out of the journal.
    """

    random_seed: int
    clock: tuple[float | ClockRead, ...] = ()
    replaying: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.random_seed < MAX_RANDOM_SEED:
            raise ValueError(f"random_seed must be in [0, 2**53), got {self.random_seed}")


@dataclass(frozen=True)
class CellProgram:
    """One script ready to run.

    `code` is the user's source with import/export declarations blanked out (line and column
    positions preserved); `hoisted` holds JS statements that bind the imported names, run before
    `code` on its first line. Both refer to the module loader as `__codemode_module__` and to the
    dynamic-import function as `__codemode_import__`.
    """

    code: str
    hoisted: str
    stored_json: str = "{}"  # JSON object: each stored key -> the JSON text of its value
    store_budget_bytes: int = 1 << 62  # key + JSON text characters `store` may add this cell
    store_limit_error: str = "store: the stored values are too large"  # what `store` throws then
    determinism: Determinism | None = None  # None: nothing seeded or recorded


class EngineCell(Protocol):
    """One running script in its own fresh isolate."""

    def resolve_tool_call(self, call_id: int, ok: bool, payload: str) -> None:
        """Settle a pending tool call: `payload` is JSON text when ok, else the error message."""
        ...

    def resolve_together(self, results: Sequence[tuple[int, bool, str]]) -> None:
        """Settle these calls `(call_id, ok, payload)` in one step of the script (replays a
        recorded `ResolvedCalls`); calls not pending are skipped."""
        ...

    def fire_timer(self, timer_id: int) -> None:
        """Replay: run this timer's callback now, as its own step (no-op if cleared/unknown)."""
        ...

    def go_live(self) -> None:
        """Replay is over: arm the timers still registered (with their full delay), record
        everything from now on."""
        ...

    async def terminate(self) -> None:
        """Stop the script wherever it is; returns once the isolate has really stopped.

        Every event the script produced before it stopped is delivered first.
        """
        ...

    def release(self) -> None:
        """The cell finished: free its isolate in the background."""
        ...


class EngineSession(Protocol):
    """One code-mode session's handle on the engine: its cells all run with one `SessionSetup`."""

    def start(self, program: CellProgram, on_event: EventSink, *, alone: bool = False) -> EngineCell:
        """Run a program in a fresh, never-used isolate; events flow to `on_event`.

        `alone=True`: the process engine runs this cell on a worker of its own (a suspect
        replayed after a worker died must not take innocent cells down with it); the in-process
        engine ignores it.

        Returns at once: when the engine must first find room for the cell (an isolate, a
        worker with capacity), the cell waits inside the engine, so the caller can observe it
        and yield on time, and `terminate` stops it wherever it is.
        """
        ...

    async def strip_types(self, code: str) -> str:
        """`code` with its TypeScript syntax removed (the session asks only for a script that
        does not parse as JavaScript), or `code` itself when TypeScript does not parse it either.

        The engine strips where it runs scripts, never in a host that loads no V8. Raises
        `EngineError` (saying what happened) when the engine fails while stripping."""
        ...

    async def ready(self, isolates: int | None = None) -> None:
        """Wait until the engine is up and `isolates` prepared isolates (default: all it keeps
        ready) wait for cells, so the next execs do not pay for their creation.

        Raises `EngineError` when the engine cannot start."""
        ...

    def is_alive(self) -> bool:
        """Whether new cells can run: the session is open and its engine has not failed or closed."""
        ...

    def may_lose_cells(self) -> bool:
        """Whether a cell may end with `EngineDiedEvent` while the host lives on (its worker
        process died): the session then journals its cells, to replay them elsewhere."""
        ...

    async def aclose(self) -> None:
        """Leave the engine (running cells are the caller's job); shared resources stay."""
        ...


class Engine(Protocol):
    """A JavaScript engine able to run cells.

    Implementations subclass it to inherit `async with` (which closes the engine on exit)."""

    async def open_session(self, setup: SessionSetup) -> EngineSession:
        """Register a new session (its events arrive on the running event loop).

        Raises `UsageError` once the engine is closed, `EngineError` when it cannot start."""
        ...

    async def aclose(self) -> None:
        """Stop everything this engine runs; its sessions' cells end with `EngineDiedEvent`s
        (or are dropped, on an engine in this process). The engine cannot be used again."""
        ...

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.aclose()
