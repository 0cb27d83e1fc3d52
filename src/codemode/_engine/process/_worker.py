"""An engine worker process: the in-process mini-racer engine, driven over a pipe by the host.

Started by the host's supervisor as `python -I -S -c <bootstrap>` with an empty environment (but
`TZ=UTC` and a fixed locale, so scripts cannot read the host's), a scratch working directory
and no inherited file descriptors but the pipes. It runs the cells the host starts, in fresh
isolates from one pool shared by every session, and sends their events back (see
`_protocol`); it also strips the TypeScript types of the scripts the host asks about, in its
engine's stripper (made on the first). It never decides anything about a cell: limits, admission and kills are the
host's. When the host goes away (its end of the pipe closes, or it dies: the parent-death
signal), the worker exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import signal
import sys
from typing import Any

import msgpack

from codemode._engine.base import CellProgram, EngineEvent, EventSink, FinishedEvent, SessionSetup
from codemode._engine.miniracer import (
    CREATE_HEADROOM_BYTES,
    MiniRacerEngine,
    MiniRacerSession,
    data_bytes,
)
from codemode._engine.miniracer._cell import MiniRacerCell
from codemode._engine.miniracer._compat import init_v8, longest_free_s, make_lost_callbacks_fatal
from codemode._engine.process import _protocol as wire
from codemode._loop import run as run_loop
from codemode.errors import EngineError

STUCK_CHECK_S = 0.5  # how often the worker looks for isolates that do not stop, and at its memory
AT_CAP_BYTES = 4 * 1024 * 1024  # this close to the memory cap, the worker's own Python may not fit
AT_CAP_CHECKS = 3  # checks in a row at the cap (1.5 s) after which the worker ends
STARVED_CHECKS = 4  # checks in a row (2 s) with cells waiting for an isolate memory is too short for
OVERSIZED = (
    "The script sent one output of {size:.0f} MiB at once (a text, image, tool call, notification or its "
    "stored values); at most {limit:.0f} MiB can leave the JavaScript engine in one piece, so the script "
    "was stopped. Send less at once: split it into smaller pieces, or across several execs."
)
STRIPPED_OVERSIZED = (
    "The script without its TypeScript types is {size:.0f} MiB: more than the {limit:.0f} MiB that can leave "
    "the JavaScript engine at once. Send a shorter script."
)


class _Server:
    """Applies the host's commands and batches the cells' events into `Events` messages.

    Runs on the worker's one event loop; the tasks it starts (terminations, session closes, the
    stuck-isolate watch) belong to the task group `_serve` holds open for the worker's lifetime,
    so one that fails ends the worker (and the host reports that to its cells) instead of
    vanishing.
    """

    def __init__(
        self,
        engine: MiniRacerEngine,
        keeper: MiniRacerSession,
        out: asyncio.WriteTransport,
        tasks: asyncio.TaskGroup,
        max_frame_bytes: int,
    ) -> None:
        self._engine = engine
        self._keeper = keeper  # holds the pool open for the worker's lifetime
        self._out = out
        self._tasks = tasks
        self._max_frame = max_frame_bytes
        self._packer = wire.packer()
        self._setups: dict[int, MiniRacerSession] = {}
        self._cells: dict[int, MiniRacerCell] = {}
        self._cut_off: set[int] = set()  # cells failed for an oversized message: their later events are dropped
        self._outbox: dict[int, list[EngineEvent]] = {}
        self._started: list[int] = []  # cells to acknowledge with the next flush
        self._flush_scheduled = False
        self._loop = asyncio.get_running_loop()

    def send(self, message: wire.WorkerMessage) -> None:
        """Everything queued first, then `message` (small: never over the frame cap)."""
        self._flush()
        self._out.write(wire.pack(message, self._max_frame, self._packer))

    def handle(self, message: wire.Message) -> None:
        match message:
            case wire.Start():
                program = CellProgram(
                    message.code,
                    message.hoisted,
                    message.stored_json,
                    message.store_budget_bytes,
                    message.store_limit_error,
                    message.determinism(),
                )
                setup = self._setups[message.setup_id]
                self._cells[message.cell_id] = setup.start(
                    program, self._sink(message.cell_id), lambda: self._launched(message.cell_id)
                )
            case wire.Resolve():
                cell = self._cells.get(message.cell_id)
                if cell is not None:
                    cell.resolve_tool_call(message.call_id, message.ok, message.payload)
            case wire.ResolveTogether():
                cell = self._cells.get(message.cell_id)
                if cell is not None:
                    cell.resolve_together(message.results)
            case wire.FireTimer():
                cell = self._cells.get(message.cell_id)
                if cell is not None:
                    cell.fire_timer(message.timer_id)
            case wire.GoLive():
                cell = self._cells.get(message.cell_id)
                if cell is not None:
                    cell.go_live()
            case wire.Release():
                self._cut_off.discard(message.cell_id)
                cell = self._cells.pop(message.cell_id, None)
                if cell is not None:
                    cell.release()
            case wire.Terminate():
                self._cut_off.discard(message.cell_id)
                self._tasks.create_task(self._terminate(message.cell_id))
            case wire.Setup():
                tools = wire.decode_tools(message.tools_json)
                self._setups[message.setup_id] = self._engine.session(SessionSetup(tools, message.heap_limit_bytes))
            case wire.Forget():
                session = self._setups.pop(message.setup_id, None)
                if session is not None:
                    self._tasks.create_task(session.aclose())
            case wire.Strip():
                self._tasks.create_task(self._strip(message.strip_id, message.code))
            case _:
                raise wire.ProtocolError(f"the host sent a worker's message: {message!r:.200}")

    def _launched(self, cell_id: int) -> None:
        """The cell's script reached V8: tell the host with the next flush (not before: a cell
        waiting for an isolate may still be moved to another worker)."""
        self._started.append(cell_id)  # (the host ignores it for a cell it no longer has here)
        self._schedule_flush()

    async def _terminate(self, cell_id: int) -> None:
        cell = self._cells.pop(cell_id, None)
        if cell is not None:
            await cell.terminate()
        self.send(wire.Terminated(cell_id))

    async def _strip(self, strip_id: int, code: str) -> None:
        """Answer a `Strip`: the stripper runs on its own thread, so cells keep being served."""
        try:
            reply = wire.Stripped(strip_id, await self._engine.stripper.strip_types(code), None)
        except EngineError as exc:
            reply = wire.Stripped(strip_id, None, str(exc))
        try:
            self.send(reply)
        except wire.FrameTooLarge as exc:
            self.send(wire.Stripped(strip_id, None, STRIPPED_OVERSIZED.format(size=exc.size / wire.MIB, limit=exc.limit / wire.MIB)))

    def _sink(self, cell_id: int) -> EventSink:
        def on_event(event: EngineEvent) -> None:
            if cell_id in self._cut_off:
                return
            batch = self._outbox.get(cell_id)
            if batch is None:
                batch = self._outbox[cell_id] = []
            batch.append(event)
            self._schedule_flush()

        return on_event

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        """Everything queued this loop iteration, in one write."""
        try:
            self._flush_events()
        except MemoryError:
            _die_of_memory()  # the events taken from the outbox would be lost

    def _flush_events(self) -> None:
        self._flush_scheduled = False
        parts: list[bytes] = []
        if self._started:
            parts.append(wire.pack(wire.Started(self._started), self._max_frame, self._packer))
            self._started = []
        if self._outbox:
            outbox, self._outbox = self._outbox, {}
            for cell_id, events in outbox.items():
                try:
                    parts.append(wire.pack(wire.Events(cell_id, events), self._max_frame, self._packer))
                except wire.FrameTooLarge:
                    parts.extend(self._split(cell_id, events))
        if parts:
            self._out.write(b"".join(parts))

    def _split(self, cell_id: int, events: list[EngineEvent]) -> list[bytes]:
        """A batch over the frame cap, as several frames; an event over the cap on its own fails
        its cell (the host gets a `FinishedEvent` saying why) and stops the script."""
        frames: list[bytes] = []
        batch: list[EngineEvent] = []
        size = 0
        for event in events:
            try:
                event_size = len(wire.pack(wire.Events(cell_id, [event]), self._max_frame, self._packer))
            except wire.FrameTooLarge as exc:
                batch.append(FinishedEvent(OVERSIZED.format(size=exc.size / wire.MIB, limit=exc.limit / wire.MIB)))
                self._cut_off.add(cell_id)
                self._tasks.create_task(self._stop(cell_id))
                break
            if batch and size + event_size > self._max_frame:
                frames.append(wire.pack(wire.Events(cell_id, batch), self._max_frame, self._packer))
                batch, size = [], 0
            batch.append(event)
            size += event_size
        if batch:
            frames.append(wire.pack(wire.Events(cell_id, batch), self._max_frame, self._packer))
        return frames

    async def _stop(self, cell_id: int) -> None:
        """Stop a cell the host already saw fail (no `Terminated`: the host did not ask)."""
        cell = self._cells.pop(cell_id, None)
        if cell is not None:
            await cell.terminate()

    async def watch(self, memory_cap: int) -> None:
        """Report isolates that do not stop. A poll, and the only way: mini-racer tells nobody
        when a freed isolate's thread finally returns (`longest_free_s` reads its clock).

        Also end the worker when it stays at its memory cap: a script that took nearly all of
        it (many small ArrayBuffers) leaves the worker's Python no room, and an error Python
        could not even report may have lost a cell's events. A cell that fails at the cap
        normally frees its memory within milliseconds, when the host releases it.

        And report cells that wait for an isolate the memory is too short to make: memory freed
        inside the process does not always lower what its cap counts, so they may wait for
        good; the host moves them to another worker and retires this one."""
        at_cap = starved = 0
        while True:
            await asyncio.sleep(STUCK_CHECK_S)
            stuck_for = longest_free_s()
            if stuck_for > STUCK_CHECK_S:
                self.send(wire.Stuck(stuck_for))
            starved = starved + 1 if self._engine.starved() else 0
            if starved == STARVED_CHECKS:
                self.send(wire.Starved(starved * STUCK_CHECK_S))
            at_cap = at_cap + 1 if memory_cap and data_bytes() > memory_cap - AT_CAP_BYTES else 0
            if at_cap >= AT_CAP_CHECKS:
                _die_of_memory()


class _Commands(asyncio.Protocol):
    def __init__(self, server: _Server, closed: asyncio.Future[None], max_frame_bytes: int) -> None:
        self._server = server
        self._unpacker = wire.unpacker(max_frame_bytes)
        self._closed = closed

    def data_received(self, data: bytes) -> None:
        try:
            self._unpacker.feed(data)
            for message in self._unpacker:
                self._server.handle(wire.from_wire(message))
        except (wire.ProtocolError, msgpack.BufferFull) as exc:
            # The host broke the protocol: nothing it sends can be trusted any more.
            print(f"codemode engine worker: {exc}", file=sys.stderr, flush=True)
            os._exit(3)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._closed.done():
            self._closed.set_result(None)


_OUT_OF_MEMORY = b"codemode engine worker: MemoryError: out of memory at the memory cap; cells' events may be lost\n"
LOST_WORK_STATUS = 5


def _die_of_memory() -> None:
    """End the worker, allocating nothing (there is no memory left): the host then fails or
    replays its cells and says they ran out of memory."""
    try:
        os.write(2, _OUT_OF_MEMORY)
    finally:
        os._exit(LOST_WORK_STATUS)


def _lost_work_is_fatal(loop: asyncio.AbstractEventLoop) -> None:
    """Make an error that would lose a cell's events end the worker. asyncio only logs one
    raised by a loop callback (a flush, a settled eval), and ctypes only prints one raised by an
    isolate's callback: either way the events are gone while the worker lives on, and the host
    would wait for that cell forever. Near the memory cap that error is a `MemoryError`."""

    def on_loop_error(_loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if isinstance(exc, MemoryError):
            _die_of_memory()
        if exc is None or isinstance(exc, ConnectionError):
            _loop.default_exception_handler(context)  # a message, or the host going away
            return
        with contextlib.suppress(BaseException):
            print(f"codemode engine worker: {context.get('message')}: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        os._exit(LOST_WORK_STATUS)

    def on_unraisable(unraisable: Any) -> None:
        if isinstance(unraisable.exc_value, MemoryError):
            _die_of_memory()
        sys.__unraisablehook__(unraisable)

    loop.set_exception_handler(on_loop_error)
    sys.unraisablehook = on_unraisable
    make_lost_callbacks_fatal(LOST_WORK_STATUS, _OUT_OF_MEMORY)


async def _serve(config: dict[str, Any], commands_fd: int, events_fd: int) -> None:
    loop = asyncio.get_running_loop()
    _lost_work_is_fatal(loop)
    max_frame = config["max_frame_bytes"]
    memory_cap = config["memory_cap_bytes"]
    engine = MiniRacerEngine(pool_size=config["isolate_pool_size"], memory_cap_bytes=memory_cap)
    if memory_cap and data_bytes() > memory_cap - CREATE_HEADROOM_BYTES:
        # The engine would wait forever for the memory a first isolate needs: say so instead.
        print(
            f"codemode engine worker: no isolate can be created: the process already uses "
            f"{data_bytes() / wire.MIB:.0f} MiB of its {memory_cap / wire.MIB:.0f} MiB memory cap, and an isolate "
            f"needs up to {CREATE_HEADROOM_BYTES / wire.MIB:.0f} MiB more",
            file=sys.stderr,
            flush=True,
        )
        os._exit(4)
    keeper = engine.session(SessionSetup((), 0))
    await keeper.ready(1)
    out, _ = await loop.connect_write_pipe(asyncio.Protocol, os.fdopen(events_fd, "wb", buffering=0))
    async with asyncio.TaskGroup() as tasks:
        server = _Server(engine, keeper, out, tasks, max_frame)
        closed: asyncio.Future[None] = loop.create_future()
        await loop.connect_read_pipe(
            lambda: _Commands(server, closed, max_frame), os.fdopen(commands_fd, "rb", buffering=0)
        )
        server.send(wire.Ready(wire.PROTOCOL_VERSION, os.getpid()))
        tasks.create_task(server.watch(memory_cap))
        await closed  # the host closed its end: nothing more to do
        # At once: an isolate stuck in a builtin would keep a normal interpreter exit waiting.
        os._exit(0)


def _die_with_parent() -> None:
    """Linux: get SIGKILL when the host dies, even by SIGKILL (no orphaned engines)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def main(config: dict[str, Any]) -> None:
    """Serve the host on stdin/stdout until it closes them."""
    _die_with_parent()
    if os.getppid() != config["host_pid"]:
        return  # the host died before the death signal was armed
    memory_cap = config["memory_cap_bytes"]
    if memory_cap:
        # Bounds everything the worker allocates, ArrayBuffer backing stores included: an
        # allocation past it fails (a RangeError in the script, or a fatal V8 OOM that ends
        # only this worker), where in the host it would have grown without bound.
        resource.setrlimit(resource.RLIMIT_DATA, (memory_cap, memory_cap))
    # The protocol owns the original stdin/stdout; anything else printing to fd 1 (V8's fatal
    # error reports included) goes to stderr, which the host keeps the end of.
    commands_fd, events_fd = os.dup(0), os.dup(1)
    os.dup2(2, 1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C in the host's terminal is the host's
    init_v8()  # on the main thread, before any isolate thread exists
    run_loop(_serve(config, commands_fd, events_fd))
