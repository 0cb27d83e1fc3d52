"""An engine worker process: the in-process mini-racer engine, driven over a pipe by the host.

Started by the host's supervisor as `python -I -S -c <bootstrap>` with an empty environment (but
`TZ=UTC` and a fixed locale, so scripts cannot read the host's), a scratch working directory
and no inherited file descriptors but the pipes. It runs the cells the host starts, in fresh
isolates from one pool shared by every session, and sends their events back (see
`_protocol`). It never decides anything about a cell: limits, admission and kills are the
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

from codemode._engine.base import CellProgram, EngineEvent, SessionSetup
from codemode._engine.miniracer import MiniRacerEngine, MiniRacerSession
from codemode._engine.miniracer._cell import MiniRacerCell
from codemode._engine.miniracer._compat import init_v8, longest_free_s
from codemode._engine.process import _protocol as wire
from codemode._loop import run as run_loop

STUCK_CHECK_S = 0.5  # how often the worker looks for isolates that do not stop


class _Server:
    """Applies the host's commands and batches the cells' events into EVENTS messages."""

    def __init__(self, engine: MiniRacerEngine, keeper: MiniRacerSession, out: asyncio.WriteTransport) -> None:
        self._engine = engine
        self._keeper = keeper  # holds the pool open for the worker's lifetime
        self._out = out
        self._packer = wire.packer()
        self._setups: dict[int, MiniRacerSession] = {}
        self._cells: dict[int, MiniRacerCell] = {}
        self._outbox: dict[int, list[list[Any]]] = {}
        self._started: list[int] = []  # cells to acknowledge with the next flush
        self._flush_scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop = asyncio.get_running_loop()

    def send(self, message: list[Any]) -> None:
        self._flush()
        self._out.write(self._packer.pack(message))

    def handle(self, message: list[Any]) -> None:
        kind = message[0]
        if kind == wire.START:
            _, cell_id, setup_id, code, hoisted, stored_json, budget, limit_error = message
            program = CellProgram(code, hoisted, stored_json, budget, limit_error)
            self._cells[cell_id] = self._setups[setup_id].start(program, self._sink(cell_id))
            self._started.append(cell_id)
            self._schedule_flush()
        elif kind == wire.RESOLVE:
            _, cell_id, call_id, ok, payload = message
            cell = self._cells.get(cell_id)
            if cell is not None:
                cell.resolve_tool_call(call_id, ok, payload)
        elif kind == wire.RELEASE:
            cell = self._cells.pop(message[1], None)
            if cell is not None:
                cell.release()
        elif kind == wire.TERMINATE:
            self._spawn(self._terminate(message[1]))
        elif kind == wire.SETUP:
            _, setup_id, tools_json, heap_limit = message
            self._setups[setup_id] = self._engine.session(SessionSetup(wire.decode_tools(tools_json), heap_limit))
        elif kind == wire.FORGET:
            session = self._setups.pop(message[1], None)
            if session is not None:
                self._spawn(session.aclose())
        else:  # pragma: no cover - the host sends only the kinds above
            raise ValueError(f"unknown command {kind!r}")

    async def _terminate(self, cell_id: int) -> None:
        cell = self._cells.pop(cell_id, None)
        if cell is not None:
            await cell.terminate()
        self.send([wire.TERMINATED, cell_id])

    def _sink(self, cell_id: int) -> Any:
        def on_event(event: EngineEvent) -> None:
            batch = self._outbox.get(cell_id)
            if batch is None:
                batch = self._outbox[cell_id] = []
            batch.append(wire.encode_event(event))
            self._schedule_flush()

        return on_event

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        """Everything queued this loop iteration, in one write."""
        self._flush_scheduled = False
        pack = self._packer.pack
        parts = []
        if self._started:
            parts.append(pack([wire.STARTED, self._started]))
            self._started = []
        if self._outbox:
            outbox, self._outbox = self._outbox, {}
            parts.extend(pack([wire.EVENTS, cell_id, events]) for cell_id, events in outbox.items())
        if parts:
            self._out.write(b"".join(parts))

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def watch_stuck(self) -> None:
        while True:
            await asyncio.sleep(STUCK_CHECK_S)
            stuck_for = longest_free_s()
            if stuck_for > STUCK_CHECK_S:
                self.send([wire.STUCK, stuck_for])


class _Commands(asyncio.Protocol):
    def __init__(self, server: _Server, closed: asyncio.Future[None]) -> None:
        self._server = server
        self._unpacker = wire.unpacker()
        self._closed = closed

    def data_received(self, data: bytes) -> None:
        self._unpacker.feed(data)
        for message in self._unpacker:
            self._server.handle(message)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._closed.done():
            self._closed.set_result(None)


async def _serve(config: dict[str, Any], commands_fd: int, events_fd: int) -> None:
    loop = asyncio.get_running_loop()
    engine = MiniRacerEngine(pool_size=config["isolate_pool_size"], memory_cap_bytes=config["memory_cap_bytes"])
    keeper = engine.session(SessionSetup((), 0))
    await keeper.ready(1)
    out, _ = await loop.connect_write_pipe(asyncio.Protocol, os.fdopen(events_fd, "wb", buffering=0))
    server = _Server(engine, keeper, out)  # type: ignore[arg-type]
    closed: asyncio.Future[None] = loop.create_future()
    await loop.connect_read_pipe(lambda: _Commands(server, closed), os.fdopen(commands_fd, "rb", buffering=0))
    server.send([wire.READY, os.getpid()])
    watcher = asyncio.ensure_future(server.watch_stuck())
    await closed  # the host closed its end: nothing more to do
    watcher.cancel()
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
