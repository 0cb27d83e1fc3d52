"""The mini-racer (V8) engine, in the calling process.

Invariants:
* Every cell runs in a fresh, never-used V8 context (its own isolate and native thread).
  Contexts are created, prepared and freed on background "isolate" threads, so the event
  loop never blocks on V8; one pool of prepared contexts per event loop, shared by every
  session on it, keeps creating and freeing them off the critical path (`IsolatePool`).
  Isolates are generic: a session's tools, heap limit and stored values come with each cell.
* The event loop never makes a synchronous call into a running isolate (such a call blocks
  until the script is idle, which for `while(true){}` is never). Script -> host data travels
  through a SharedArrayBuffer ring read straight from memory; host -> script data travels as
  queued eval tasks, which V8 runs when the script is idle.
* Terminate = free the context: the only way to stop a loop running after an `await`.
  The ring is read one last time first, and never after.
* V8 is initialised on the thread that creates the engine, before any isolate thread exists.

mini-racer's private parts are used on purpose (its public API blocks the loop); they all sit
in `_compat`. Modules: `_compat` (mini-racer), `_isolate` (one prepared context and its output
ring), `_cell` (one script in it), `_pool` (prepared isolates); this one ties them into the
`Engine` interface.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from codemode._engine.base import CellProgram, Engine, EventSink, SessionSetup
from codemode._engine.miniracer._cell import MiniRacerCell, tools_source
from codemode._engine.miniracer._compat import JSEvalException, JSOOMException, init_v8
from codemode._engine.miniracer._isolate import CHANNEL_ERROR, Isolate
from codemode._engine.miniracer._pool import POOL_SIZE, CreateLater, IsolatePool
from codemode._engine.miniracer._stripper import TypeStripper
from codemode.errors import EngineError, UsageError

CREATE_HEADROOM_BYTES = 128 * 1024 * 1024  # memory a new isolate may need, below the cap

__all__ = ["CHANNEL_ERROR", "MiniRacerEngine", "MiniRacerSession"]


@dataclass
class _LoopPool:
    pool: IsolatePool
    sessions: int = 0


class MiniRacerSession:
    """One session's use of the engine's pool; implements `EngineSession`."""

    def __init__(self, engine: MiniRacerEngine, pool: IsolatePool, setup: SessionSetup) -> None:
        self._engine = engine
        self._pool = pool
        self._setup = setup
        self._tools = tools_source(setup)
        self._closed = False

    async def ready(self, isolates: int | None = None) -> None:
        """Wait until `isolates` (default: the whole pool) are prepared; raises `EngineError`
        when V8 cannot create one."""
        await self._pool.filled(self._pool.size if isolates is None else isolates)
        if self._pool.error is not None:
            raise EngineError(f"the JavaScript engine could not create an isolate: {self._pool.error}") from (
                self._pool.error
            )

    def may_lose_cells(self) -> bool:
        """No: V8 dies only with this process, and its cells with it."""
        return False

    def is_alive(self) -> bool:
        """Whether new cells can run: the session is open and its isolates can be created."""
        return not self._closed and self._pool.error is None and not self._engine.closed

    async def strip_types(self, code: str) -> str:
        """`code` without its TypeScript types, by the engine's own stripper (in this process)."""
        return await self._engine.stripper.strip_types(code)

    def start(
        self,
        program: CellProgram,
        on_event: EventSink,
        on_launch: Callable[[], None] | None = None,
        *,
        alone: bool = False,
    ) -> MiniRacerCell:
        """Run `program` in a prepared isolate, or in the next one made. `on_launch` is called
        once the script was handed to V8 (an engine worker tells its host, which moves cells
        still waiting for an isolate off a worker that cannot make one); not for a cell
        terminated before, though it may be after a terminate that came too late. `alone` is
        ignored: in one process there is no worker of its own to give a cell."""
        del alone
        cell = MiniRacerCell(on_event, self._pool.release)
        isolate = self._pool.take_nowait()
        if isolate is not None:
            cell.launch(isolate, self._setup, self._tools, program)
            if on_launch is not None:
                on_launch()
        else:
            reservation = self._pool.reserve()
            cell.launch_when_ready(reservation, self._pool.give_back, self._setup, self._tools, program)
            if on_launch is not None:  # after the cell's own callback, which launches it
                reservation.add_done_callback(
                    lambda f: None if f.cancelled() or f.exception() is not None else on_launch()
                )
        return cell

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            await self._engine.leave(self._pool)


class MiniRacerEngine(Engine):
    """V8 through mini-racer in this process.

    Sessions on the same event loop share one pool of `pool_size` prepared isolates (0: each
    is created on demand); the pool is freed when its last session closes. `memory_cap_bytes`
    is the process's own memory cap, if it has one (an engine worker): no isolate is created
    while the process is close to it, since V8 aborts the process when an isolate cannot be
    set up (a cell that just filled memory is freed first).

    TypeScript is stripped by the engine's one `TypeStripper`, in this process too.

    `aclose()` (or leaving `async with`) frees the pool of the calling event loop and the
    stripper, and refuses new sessions; pools of other loops are freed as their last session
    closes.
    """

    def __init__(self, pool_size: int = POOL_SIZE, memory_cap_bytes: int = 0) -> None:
        init_v8()  # here, on the caller's thread, before any isolate thread exists
        self.pool_size = pool_size
        self._memory_cap = memory_cap_bytes
        self._pools: dict[asyncio.AbstractEventLoop, _LoopPool] = {}
        self.stripper = TypeStripper()  # one per engine: in an engine worker, the worker's
        self.closed = False

    async def open_session(self, setup: SessionSetup) -> MiniRacerSession:
        return self.session(setup)

    def session(self, setup: SessionSetup) -> MiniRacerSession:
        """`open_session` for callers that cannot await (must run on the event loop)."""
        if self.closed:
            raise UsageError("this InProcessEngine is closed: create a new one")
        loop = asyncio.get_running_loop()
        entry = self._pools.get(loop)
        if entry is None:
            entry = self._pools[loop] = _LoopPool(IsolatePool(loop, lambda: self._create(loop), self.pool_size))
        entry.sessions += 1
        return MiniRacerSession(self, entry.pool, setup)

    def _create(self, loop: asyncio.AbstractEventLoop) -> Isolate:
        """A new isolate (on an isolate thread), unless memory is too short for one now.

        Under a memory cap, a failure to allocate while preparing it is short memory too: a
        cell that just exhausted the cap holds it until its isolate is freed, which the check
        before creating may not have seen yet."""
        if self._memory_cap and data_bytes() > self._memory_cap - CREATE_HEADROOM_BYTES:
            raise CreateLater
        try:
            return Isolate(loop)
        except (MemoryError, JSOOMException, JSEvalException) as exc:
            if self._memory_cap and (not isinstance(exc, JSEvalException) or "allocation failed" in str(exc)):
                raise CreateLater from exc
            raise

    def starved(self) -> bool:
        """Whether cells wait for an isolate that memory is too short to create now (under a
        memory cap; an engine worker reports it, and its supervisor moves them elsewhere)."""
        return any(entry.pool.starved() for entry in self._pools.values())

    async def aclose(self) -> None:
        self.closed = True
        entry = self._pools.pop(asyncio.get_running_loop(), None)
        if entry is not None:
            await entry.pool.aclose()
        await self.stripper.aclose()

    async def leave(self, pool: IsolatePool) -> None:
        loop = asyncio.get_running_loop()
        entry = self._pools.get(loop)
        if entry is None or entry.pool is not pool:
            return
        entry.sessions -= 1
        if entry.sessions == 0:
            del self._pools[loop]
            await pool.aclose()


def data_bytes() -> int:
    """What this process has allocated as RLIMIT_DATA counts it (Linux; 0 elsewhere)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmData:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0
