"""A pool of prepared isolates shared by the sessions of one event loop, kept filled in the background."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from codemode._engine.miniracer._isolate import (
    ISOLATE_THREADS,
    Isolate,
    isolate_executor,
)

POOL_SIZE = 32  # prepared isolates per engine and event loop (see IsolatePool)
QUIET_S = 0.02  # pool work waits until no cell has started for this long...
LOW_WATER = 4  # ...unless fewer isolates than this are ready,
MAX_FREE_DELAY_S = 0.25  # or a finished isolate has waited this long to be freed,
MAX_DEFERRED_FREES = 32  # or this many have.
IDLE_TRIM_S = 30.0  # a pool that started no cell for this long keeps only IDLE_KEEP isolates,
IDLE_KEEP = 2  # and refills to POOL_SIZE after its next exec.
CREATE_RETRY_S = 0.05  # how long creation pauses when the process is short of memory


class CreateLater(Exception):
    """Raised by a pool's `create`: no isolate can be made now (memory is short); try again."""


class IsolatePool:
    """Prepared isolates for every session on one event loop, and the work that keeps them coming.

    Creating and preparing an isolate costs about 2 ms of CPU and freeing one about 0.3 ms: more
    than a whole exec. That work runs on the isolate threads, and it is *deferred while execs
    follow each other closely* (no cell started for `QUIET_S`), so a burst of execs takes
    prepared isolates without competing with their creation for the CPU. It runs anyway when
    fewer than `LOW_WATER` isolates are ready, when a cell waits for one, and when finished
    isolates wait too long (`MAX_FREE_DELAY_S`) or too many (`MAX_DEFERRED_FREES`) to be freed.
    An idle pool (no cell for `IDLE_TRIM_S`) shrinks to `IDLE_KEEP` isolates until the next cell.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, create: Callable[[], Isolate], size: int) -> None:
        self._loop = loop
        self._create = create  # runs on an isolate thread
        self.size = max(0, size)
        self.ready: deque[Isolate] = deque()
        self._to_free: deque[tuple[float, Isolate]] = deque()
        self._waiting: deque[asyncio.Future[Isolate]] = deque()  # cells waiting for an isolate
        self._creating = 0
        self._jobs = 0
        self._last_take = -QUIET_S
        self._last_use = loop.time()
        self._trimmed = False
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._create_after = 0.0  # creation paused until then (CreateLater)
        self._short = False  # the last creation found memory too short (CreateLater)
        self._closed = False
        self._changed: asyncio.Event = asyncio.Event()
        self.error: BaseException | None = None
        self._kick()

    # -- what the session uses ----------------------------------------------------------------
    def take_nowait(self) -> Isolate | None:
        """A prepared isolate if one is ready (the common case: no task, no wait)."""
        if not self.ready:
            return None
        self._last_take = self._last_use = self._loop.time()
        self._trimmed = False
        isolate = self.ready.popleft()
        self._kick()
        return isolate

    def reserve(self) -> asyncio.Future[Isolate]:
        """A future of a prepared, never-used isolate (from the pool, or the next one created),
        served in the order asked. Cancel it to withdraw; one that arrived unused goes back
        through `give_back`."""
        self._last_take = self._last_use = self._loop.time()
        self._trimmed = False
        reservation: asyncio.Future[Isolate] = self._loop.create_future()
        if self.ready:
            reservation.set_result(self.ready.popleft())
        elif self.error is not None:
            reservation.set_exception(self.error)  # none will be created: say so, not wait forever
        else:
            self._waiting.append(reservation)
        self._kick()
        return reservation

    async def take(self) -> Isolate:
        """`reserve`, awaited (an isolate that arrives for a cancelled caller is kept)."""
        reservation = self.reserve()
        try:
            return await reservation
        except asyncio.CancelledError:
            if reservation.done() and not reservation.cancelled() and reservation.exception() is None:
                self.give_back(reservation.result())
            raise

    def give_back(self, isolate: Isolate) -> None:
        """A reserved isolate that was never used: ready for the next cell."""
        self.ready.appendleft(isolate)
        self._changed.set()

    def release(self, isolate: Isolate) -> None:
        """A finished cell's isolate: freed soon, off the critical path."""
        self._to_free.append((self._loop.time(), isolate))
        self._kick()

    def starved(self) -> bool:
        """Whether cells wait for an isolate that memory is too short to create now."""
        return self._short and bool(self._waiting)

    async def filled(self, count: int) -> None:
        """Wait until the pool holds `count` prepared isolates (at most its size), or creation
        failed, or it closed."""
        count = min(count, self.size)
        while not (self._closed or self.error is not None or len(self.ready) >= count):
            self._changed.clear()
            await self._changed.wait()

    async def aclose(self) -> None:
        """Free every isolate this pool holds, and wait for its background work to end."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for waiter in self._waiting:
            waiter.cancel()
        self._waiting.clear()
        now = self._loop.time()
        while self.ready:
            self._to_free.append((now, self.ready.popleft()))
        self._kick()
        while self._jobs or self._to_free:
            self._changed.clear()
            await self._changed.wait()

    # -- background work ------------------------------------------------------------------
    def _kick(self) -> None:
        while self._jobs < ISOLATE_THREADS:
            job = self._next_job()
            if job is None:
                break
            self._jobs += 1
            if job == "create":
                self._creating += 1
                future = self._loop.run_in_executor(isolate_executor(), self._create)
                future.add_done_callback(self._created)
            else:
                _, isolate = self._to_free.popleft()
                future = self._loop.run_in_executor(isolate_executor(), isolate.free)
                future.add_done_callback(self._freed)

    def _next_job(self) -> str | None:
        now = self._loop.time()
        quiet_at = self._last_take + QUIET_S
        may_create = self.error is None and now >= self._create_after
        if len(self._waiting) > self._creating and may_create:
            return "create"  # a cell is waiting: it comes first
        wake_at = None
        if self._to_free:
            due = self._to_free[0][0] + MAX_FREE_DELAY_S
            if self._closed or now >= quiet_at or now >= due or len(self._to_free) >= MAX_DEFERRED_FREES:
                return "free"
            wake_at = min(quiet_at, due)
        if not self._closed and not self._trimmed and len(self.ready) > IDLE_KEEP:
            trim_at = self._last_use + IDLE_TRIM_S
            if now >= trim_at:
                self._trimmed = True
                while len(self.ready) > IDLE_KEEP:
                    self._to_free.append((now, self.ready.pop()))
                return "free"
            wake_at = trim_at if wake_at is None else min(wake_at, trim_at)
        if not may_create and self.error is None:
            wake_at = self._create_after if wake_at is None else min(wake_at, self._create_after)
        elif not self._closed and self.error is None:
            have = len(self.ready) + self._creating
            if have < (IDLE_KEEP if self._trimmed else self.size):
                if now >= quiet_at or have < LOW_WATER:
                    return "create"
                wake_at = quiet_at if wake_at is None else min(wake_at, quiet_at)
        if wake_at is not None and (self._timer is None or wake_at < self._timer_at):
            if self._timer is not None:
                self._timer.cancel()
            self._timer_at = wake_at
            self._timer = self._loop.call_at(wake_at, self._on_timer)
        return None

    def _on_timer(self) -> None:
        self._timer = None
        self._kick()

    def _created(self, future: asyncio.Future[Isolate]) -> None:
        self._jobs -= 1
        self._creating -= 1
        if future.cancelled():
            pass
        elif isinstance(future.exception(), CreateLater):
            self._short = True
            self._create_after = self._loop.time() + CREATE_RETRY_S
        elif (error := future.exception()) is not None:
            self.error = error
            while self._waiting:
                waiter = self._waiting.popleft()
                if not waiter.done():
                    waiter.set_exception(error)
            # Reported too: in-process it is logged; an engine worker, which can serve no cell
            # any more, ends, and its supervisor starts another.
            self._loop.call_exception_handler({"message": "codemode: creating an isolate failed", "exception": error})
        else:
            self._short = False
            isolate = future.result()
            while self._waiting and self._waiting[0].done():
                self._waiting.popleft()
            if self._waiting:
                self._waiting.popleft().set_result(isolate)
            elif self._closed:
                self._to_free.append((self._loop.time(), isolate))
            else:
                self.ready.append(isolate)
        self._changed.set()
        self._kick()

    def _freed(self, future: asyncio.Future[None]) -> None:
        self._jobs -= 1
        if not future.cancelled() and future.exception() is not None:
            self._loop.call_exception_handler(
                {"message": "codemode: freeing an isolate failed", "exception": future.exception()}
            )
        self._changed.set()
        self._kick()
