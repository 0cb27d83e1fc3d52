"""V8 in supervised engine worker processes: the default engine (`isolation="process"`).

The host never loads V8. Cells run in a small pool of worker processes (`_worker`) shared by
every session of this process, which speak a typed, versioned msgpack protocol over pipes
(`_protocol`); the
supervisor (`_supervisor`) admits cells to workers, reads their events, kills workers whose
isolates do not stop, and turns a worker's death into a clear failure of its cells only.
TypeScript is stripped on a worker too (`ProcessSession.strip_types`).
This module adapts all that to the `Engine` interface.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import os
from collections.abc import Sequence
from typing import Any

from codemode._engine.base import (
    CellProgram,
    ClockRead,
    Engine,
    EngineDiedEvent,
    EngineEvent,
    EventSink,
    FinishedEvent,
    SessionSetup,
)
from codemode._engine.process import _protocol as wire
from codemode._engine.process._supervisor import MIB, TERMINATE_GRACE_S, Worker, WorkerConfig, WorkerPool
from codemode.errors import EngineError, UsageError

__all__ = ["ProcessEngine"]

_UNINTERRUPTIBLE = (
    "because another script in it could not be interrupted (a built-in operation on a huge array or "
    "string), and this script was lost with it. Run it again"
)
_ids = itertools.count(1)  # cell, setup and strip ids, unique per host process
MAX_PLACEMENTS = 3  # workers a cell is sent to when they die before its script started


class ProcessCell:
    """One script on a worker (or waiting for room on one); implements `EngineCell`."""

    def __init__(self, session: ProcessSession, program: CellProgram, on_event: EventSink, alone: bool) -> None:
        self.id = next(_ids)
        self._alone = alone  # runs on a worker of its own (see `WorkerPool.admission`)
        self.heap = session.admission_heap
        self._loop = asyncio.get_running_loop()
        self._session = session
        self._program = program  # kept until the worker confirms it started (see `_died`)
        self._on_event = on_event
        self.started = False  # set by the worker's reader thread
        self._placements = 0
        self._worker: Worker | None = None
        self._admission: concurrent.futures.Future[Worker] | None = None
        self._finished = False  # the script ended (or its worker died): no more commands
        self._left = False  # discharged from its worker
        self._stopped: asyncio.Future[None] | None = None  # a terminate waiting for the worker
        # Replay commands made before the script is known to have reached V8: sent (again) after
        # the program whenever the cell is placed on a worker.
        self._early: list[wire.ResolveTogether | wire.FireTimer | wire.GoLive] = []

    # -- start ---------------------------------------------------------------------------------
    def begin(self) -> None:
        pool = self._session.pool
        if self._alone:
            self._admission = pool.admission(self, alone=True)
        else:
            worker = pool.try_admit(self)
            if worker is not None:
                self._launch(worker)
                return
            self._admission = pool.admission(self)
        self._admission.add_done_callback(self._admitted_threadsafe)

    def _admitted_threadsafe(self, future: concurrent.futures.Future[Worker]) -> None:
        if future.cancelled():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits for this cell
            self._loop.call_soon_threadsafe(self._admitted, future)

    def _admitted(self, future: concurrent.futures.Future[Worker]) -> None:
        self._admission = None
        exc = future.exception()
        if exc is not None:
            if not self._finished:
                self._finished = True
                self._on_event(FinishedEvent(str(exc)))  # the pool's errors say what happened
            return
        worker = future.result()
        if self._finished:  # terminated while it waited
            self._session.pool.discharge(self, worker)
            return
        self._launch(worker)

    def _launch(self, worker: Worker) -> None:
        self._worker = worker
        self._placements += 1
        program = self._program
        try:
            self._session.install_on(worker)
            worker.send(
                wire.Start(
                    cell_id=self.id,
                    setup_id=self._session.setup_id,
                    code=program.code,
                    hoisted=program.hoisted,
                    stored_json=program.stored_json,
                    store_budget_bytes=program.store_budget_bytes,
                    store_limit_error=program.store_limit_error,
                    **_determinism_fields(program),
                )
            )
            for command in self._early:
                worker.send(command)
        except wire.FrameTooLarge as exc:
            self._finished = True
            self._leave()
            self._on_event(FinishedEvent(_too_large("The script and its stored values", exc)))

    # -- commands ------------------------------------------------------------------------------
    def resolve_tool_call(self, call_id: int, ok: bool, payload: str) -> None:
        if self._worker is None or self._finished:
            return
        try:
            self._worker.send(wire.Resolve(self.id, call_id, ok, payload))
        except wire.FrameTooLarge as exc:  # the script sees a failed call instead
            self._worker.send(wire.Resolve(self.id, call_id, False, _too_large("The tool's result", exc)))

    def resolve_together(self, results: Sequence[tuple[int, bool, str]]) -> None:
        message = wire.ResolveTogether(self.id, list(results))
        try:
            wire.pack(message, self._session.pool.config.max_frame_bytes)
        except wire.FrameTooLarge as exc:  # the script sees failed calls instead
            error = _too_large("The tool results settled together", exc)
            message = wire.ResolveTogether(self.id, [(call_id, False, error) for call_id, _, _ in results])
        self._command(message)

    def fire_timer(self, timer_id: int) -> None:
        self._command(wire.FireTimer(self.id, timer_id))

    def go_live(self) -> None:
        self._command(wire.GoLive(self.id))

    def _command(self, message: wire.ResolveTogether | wire.FireTimer | wire.GoLive) -> None:
        """Send a replay command in order with the others, also before the cell has a worker."""
        if self._finished:
            return
        with self._session.pool.lock:
            started = self.started
        if started:
            self._early.clear()
        else:
            self._early.append(message)
        if self._worker is not None:
            self._worker.send(message)

    async def terminate(self) -> None:
        if self._finished or self._left:
            return
        worker = self._worker
        if worker is None:  # still waiting for room: withdraw
            self._finished = True
            if self._admission is not None:
                self._admission.cancel()  # or, if it was placed meanwhile, `_admitted` discharges it
            return
        self._stopped = self._loop.create_future()
        worker.send(wire.Terminate(self.id))
        try:
            await asyncio.wait_for(asyncio.shield(self._stopped), TERMINATE_GRACE_S)
        except TimeoutError:
            # The isolate is inside a builtin V8 cannot interrupt: only killing its process stops it.
            worker.kill(_UNINTERRUPTIBLE)
            await self._stopped  # settled by the death report
        self._finished = True
        self._leave()

    def release(self) -> None:
        self._finished = True
        if self._worker is not None and not self._left:
            self._worker.send(wire.Release(self.id))
            self._leave()

    def _leave(self) -> None:
        if not self._left and self._worker is not None:
            self._left = True
            self._session.pool.discharge(self, self._worker)

    # -- from the worker's reader thread ----------------------------------------------------------
    def deliver_threadsafe(self, events: list[EngineEvent]) -> None:
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._deliver, events)

    def terminated_threadsafe(self) -> None:
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._settle_stop)

    def died_threadsafe(self, error: str, suspect: bool) -> None:
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._died, error, suspect)

    def move_threadsafe(self) -> None:
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._moved)

    def _deliver(self, events: list[EngineEvent]) -> None:
        on_event = self._on_event
        for event in events:
            on_event(event)

    def _settle_stop(self) -> None:
        if self._stopped is not None and not self._stopped.done():
            self._stopped.set_result(None)

    def _moved(self) -> None:
        """The supervisor took this cell off its retiring worker before the script reached V8 (it
        waited for an isolate the worker's stuck threads may never make): drop it there and run
        it on another worker. Not a placement: the script did nothing to its worker."""
        worker = self._worker
        if worker is None or self._left:
            return
        self._left = True  # the supervisor already discharged it
        if not self._finished:
            worker.send(wire.Terminate(self.id))  # its answer is ignored: the cell is no longer there
        if self._stopped is not None or self._finished:
            self._finished = True
            self._settle_stop()  # a terminate in progress has nothing left to wait for
            return
        self._worker = None
        self._left = False
        self._placements -= 1
        self.begin()

    def _died(self, error: str, suspect: bool) -> None:
        self._left = True  # the supervisor dropped it with its worker
        self._settle_stop()
        worker = self._worker
        with self._session.pool.lock:
            started = self.started
        if (
            not started
            and not self._finished
            and self._stopped is None
            and self._placements < MAX_PLACEMENTS
            and worker is not None
            and worker.kill_reason is None
        ):
            # The worker died before the script reached V8 (it was killed while idle, say): the
            # script never ran, so it runs elsewhere instead of failing. A few times at most (the
            # next worker may be dying too), so a script that somehow kills its worker at once
            # cannot take many more with it.
            self._worker = None
            self._left = False
            self.begin()
            return
        if not self._finished:
            self._finished = True
            self._on_event(EngineDiedEvent(error, suspect))


def _determinism_fields(program: CellProgram) -> dict[str, Any]:
    """The `Start` fields carrying the program's determinism (none: the defaults)."""
    determinism = program.determinism
    if determinism is None:
        return {}
    clock = [(r.ms, r.times) if isinstance(r, ClockRead) else (r, 1) for r in determinism.clock]
    return {"random_seed": determinism.random_seed, "clock": clock, "replaying": determinism.replaying}


def _too_large(what: str, exc: wire.FrameTooLarge) -> str:
    return (
        f"{what} is {exc.size / MIB:.0f} MiB: more than the {exc.limit / MIB:.0f} MiB that can pass "
        "into the JavaScript engine at once. Pass less at once."
    )


class ProcessSession:
    """One session's handle on the worker pool; implements `EngineSession`."""

    def __init__(self, pool: WorkerPool, setup: SessionSetup) -> None:
        self.pool = pool
        self.setup_id = next(_ids)
        self.heap_limit = setup.heap_limit_bytes
        # A cell without a heap limit is admitted as if it had the default one.
        self.admission_heap = setup.heap_limit_bytes or 256 * MIB
        self._tools_json = wire.encode_tools(setup.tools)
        self._installed: list[Worker] = []
        self._closed = False

    def install_on(self, worker: Worker) -> None:
        """Send this session's setup to `worker` before its first cell there."""
        with self.pool.lock:
            if self.setup_id in worker.setups:
                return
            worker.setups.add(self.setup_id)
        self._installed = [w for w in self._installed if not w.dead]  # (alone workers come and go)
        self._installed.append(worker)
        worker.send(wire.Setup(self.setup_id, self._tools_json, self.heap_limit))

    def start(self, program: CellProgram, on_event: EventSink, *, alone: bool = False) -> ProcessCell:
        """`alone`: on a worker started for this cell that runs nothing else (a suspect replayed
        after its worker died cannot take other cells down with it)."""
        cell = ProcessCell(self, program, on_event, alone)
        cell.begin()
        return cell

    async def strip_types(self, code: str) -> str:
        """`code` without its TypeScript types, stripped on a worker (the host loads no V8). A
        worker the host stopped meanwhile (idle, retired) hands the job to another, a few times
        at most; one that died by itself fails it (the script may have caused that)."""
        placements = 0
        while True:
            placements += 1
            worker = await asyncio.wrap_future(self.pool.stripper())
            try:
                reply = await asyncio.wrap_future(worker.strip(next(_ids), code))
            except wire.FrameTooLarge as exc:
                raise EngineError(_too_large("The script", exc)) from exc
            except EngineError:
                if worker.kill_reason is None or self.pool.closed or placements >= MAX_PLACEMENTS:
                    raise
                continue
            if reply.code is None:
                raise EngineError(reply.error or "The TypeScript in this script could not be removed.")
            return reply.code

    async def ready(self, isolates: int | None = None) -> None:
        """Wait until a worker is up (it keeps its own pool of prepared isolates); raises the
        pool's `EngineError` when the next worker cannot start either."""
        del isolates
        self.pool.start()
        await asyncio.wrap_future(self.pool.when_ready())

    def may_lose_cells(self) -> bool:
        """Yes: a worker dies alone (a fatal script, a kill) and takes its cells with it."""
        return True

    def is_alive(self) -> bool:
        """Whether new cells can run now: the session is open, the pool is not closed, and its
        last start did not fail."""
        return not self._closed and self.pool.failure is None and not self.pool.closed

    async def aclose(self) -> None:
        self._closed = True
        installed, self._installed = self._installed, []
        for worker in installed:
            with self.pool.lock:
                worker.setups.discard(self.setup_id)
            worker.send(wire.Forget(self.setup_id))


class ProcessEngine(Engine):
    """V8 in a pool of supervised engine worker processes.

    Close an engine you create with `aclose()` (or use it as `async with ProcessEngine() as
    engine:`): that kills its workers. The shared engines (`codemode.engines.shared`) stop at
    interpreter exit; so does one you forget to close.

    Args:
        workers: engine processes in service at most (default: the number of CPU cores, at
            least 4: most cells wait on tools rather than compute), plus one spare started in
            advance. They start as cells need room; one idle for `idle_worker_s` (default 60)
            stops again, except the first. Cells started `alone` (replayed after their worker
            died) each get a worker of their own besides, `workers` of them at most at once.
        cells_per_worker: cells one worker runs at once (default 64).
        heap_per_worker: the sum of the heap limits of the cells one worker runs at once
            (default 2 GiB, well inside V8's 4 GiB pointer-compression cage).
        memory_cap_bytes: all the memory one worker may allocate, ArrayBuffers included
            (RLIMIT_DATA; default 4 GiB; 0: no cap).
        isolate_pool_size: prepared isolates each worker keeps ready (default 32: a burst of
            execs then never waits for one to be made).
    """

    def __init__(
        self,
        workers: int | None = None,
        *,
        cells_per_worker: int = 64,
        heap_per_worker: int = 2048 * MIB,
        memory_cap_bytes: int = 4096 * MIB,
        isolate_pool_size: int = 32,
        idle_worker_s: float = 60.0,
    ) -> None:
        self.config = WorkerConfig(
            workers=workers if workers is not None else max(4, os.cpu_count() or 1),
            cells_per_worker=cells_per_worker,
            heap_per_worker=heap_per_worker,
            memory_cap_bytes=memory_cap_bytes,
            isolate_pool_size=isolate_pool_size,
            idle_worker_s=idle_worker_s,
        )
        self._pool: WorkerPool | None = None
        self._closed = False

    @property
    def pool(self) -> WorkerPool:
        if self._pool is None:
            self._pool = WorkerPool(self.config)
        return self._pool

    async def open_session(self, setup: SessionSetup) -> ProcessSession:
        if self._closed:
            raise UsageError("this ProcessEngine is closed: create a new one")
        pool = self.pool
        pool.start()
        return ProcessSession(pool, setup)

    def worker_pids(self) -> list[int]:
        """Process ids of the engine workers (in service and spare)."""
        return [worker.pid for worker in self.pool.workers() if not worker.dead]

    async def aclose(self) -> None:
        """Kill every worker and wait until they are gone; the engine cannot be used again."""
        self._closed = True
        pool, self._pool = self._pool, None
        if pool is None:
            return
        workers = pool.workers()
        pool.shutdown()
        for worker in workers:
            await asyncio.wrap_future(worker.exited)

    def __repr__(self) -> str:
        return f"ProcessEngine({self.config})"
