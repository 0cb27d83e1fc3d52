"""The supervisor: engine worker processes, which cells they run, and what happens when one dies.

One `WorkerPool` serves every session of the host process, whatever event loop each runs on.

Thread rules (the one contract between reader threads and event loops):
* The pool lock guards all shared bookkeeping: the pool's lists, and each worker's `cells`,
  `heap_admitted`, `setups`, `ready`, `retiring`, `idle_since` and `strips`, and each cell's `started`. Any
  thread reads or writes them only while holding it (`WorkerPool.lock`).
* A worker's `dead` flag and its command pipe are guarded by the worker's own send lock, so
  writing a command never waits for the pool lock; nor for the worker: what its pipe cannot
  take at once goes, in order, to a writer thread of that worker's (`Worker.send`).
* Nothing else crosses threads: a reader thread hands a cell its events, its termination or its
  death through the cell's `*_threadsafe` methods (the cell's own loop's `call_soon_threadsafe`),
  and a loop waits for the pool through `concurrent.futures.Future`s the pool resolves.

* Admission: a worker runs at most `cells_per_worker` cells whose heap limits add up to at most
  `heap_per_worker` (all isolates of a process share V8's one pointer-compression cage of about
  4 GiB, so per-cell limits alone do not keep ordinary cells from exhausting it together).
  Cells beyond that go to another worker, start one (up to `workers`), or wait in order.
* Spare: once a worker is up, one more is started and kept idle, so replacing a dead worker or
  growing the pool does not make an exec wait for Python and V8 to start.
* Alone: a cell started with `alone=True` gets a worker started for it that runs and strips
  nothing else and is killed when the cell leaves it (the session layer replays a dead worker's
  cells so: any of them may have killed it, and one that does again must take no other cell
  with it). Alone workers are apart from the ones in service (they neither count against
  `workers` nor are the spare); at most `workers` of them live at once, and further alone cells
  wait, in order, for one.
* Death: when a worker's pipe closes, each of its cells gets an `EngineDiedEvent` saying why
  (out of memory, killed by a signal, stopped because another cell could not be interrupted),
  and the spare takes its place.
* Strips: a script's TypeScript is stripped on a worker (`WorkerPool.stripper`: the oldest ready
  one in service), never in the host; a worker that dies before it answers fails the strip with
  an `EngineError` saying so (its cells fail as above).
* Kills: a terminate the worker does not confirm within `TERMINATE_GRACE_S` (a builtin V8 cannot
  interrupt) kills the worker. A worker whose finished cell's isolate will not stop (it reports
  STUCK), or whose cells wait for isolates its memory is too short to make (STARVED), retires:
  it takes no new cells, the cells on it whose script has not reached V8 (they wait for an
  isolate it may never make) move to another worker, and it is
  killed once its other cells are done, or `retire_grace_s` after it retired, or when a newer
  worker retires while `MAX_RETIRING` others already are. A worker that holds cells it has not
  started and confirms no start for `UNSTARTED_S` retires the same way, whatever stopped it (a
  loop or memory stuck without a STARVED, a stopped process): the host's net under the
  worker's own reports. So the engine processes of one pool
  number at most `workers` in service + `MAX_RETIRING` retiring + the spare + `workers` alone
  (+ workers being killed, for the moment it takes).
* Start failures: a worker that is not ready within `START_TIMEOUT_S`, or dies before it is, is
  a failed start. After `MAX_FAILED_STARTS` in a row (or one that speaks another protocol
  version) the pool's `failure` is an `EngineError` saying the engine could not start, with the
  worker's own error (cause chained): the cells and `ready` calls waiting fail with it. Starts
  are then retried with a growing delay (`RETRY_DELAYS_S`) while cells or sessions wait for a
  worker; the first worker that is ready clears `failure`. Nothing disables the pool for good.
* Scratch: each worker starts in a fresh empty directory that is removed as soon as the worker
  runs in it (a process may keep a deleted working directory), so nothing is left behind on any
  exit path, `os._exit` and SIGKILL included. Its name holds the host's pid and start time; a
  host killed in the instant between creating and removing one leaves it, and the next pool
  removes such directories whose host is gone (`remove_stale_scratch`).
* Exit: reader threads are daemons, workers die with the host (parent-death signal, EOF on
  their pipe, and an atexit kill), so neither a hung script nor a hung worker keeps the
  interpreter from exiting.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import contextlib
import json
import math
import os
import queue
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Protocol

import msgpack

from codemode._engine.base import EngineEvent
from codemode._engine.process import _protocol as wire
from codemode.errors import EngineError

TERMINATE_GRACE_S = 2.0  # a terminated isolate that has not stopped by then is killed with its worker
WORKER_ENV = {"TZ": "UTC", "LANG": "en_US.UTF-8"}  # all a worker inherits: no secrets, one locale
BOOTSTRAP = (
    "import sys, json; config = json.loads(sys.argv[1]); sys.path[:0] = config['path']; "
    "from codemode._engine.process._worker import main; main(config)"
)
_STDERR_TAIL = 16 * 1024
MAX_FAILED_STARTS = 3  # failed starts in a row before waiting cells fail (the start is then retried)
RETRY_DELAYS_S = (0.5, 1.0, 2.0, 4.0, 8.0, 15.0)  # between retried starts after that; the last repeats
START_TIMEOUT_S = 60.0  # a worker not ready this long after it started is killed (a failed start)
RETIRE_GRACE_S = 30.0  # a retired worker's cells have this long to finish before it is killed
MAX_RETIRING = 2  # retired workers alive at once; a newer one retiring kills the oldest
BACKLOG_CHECK_S = 0.5  # a writer waiting on a worker's full pipe looks this often whether it died
UNSTARTED_S = 10.0  # a worker that starts none of the cells it holds this long retires (they move)
SCRATCH_PREFIX = "codemode-engine-"
ALONE_ISOLATES = 1  # prepared isolates an alone worker keeps: it runs one cell
MIB = wire.MIB


@dataclass(frozen=True)
class WorkerConfig:
    """How many engine workers there may be and what each one may run (see `ProcessEngine`)."""

    workers: int
    cells_per_worker: int
    heap_per_worker: int
    memory_cap_bytes: int
    isolate_pool_size: int
    idle_worker_s: float = 60.0  # a worker beyond the first that ran no cell this long is stopped
    retire_grace_s: float = RETIRE_GRACE_S
    max_frame_bytes: int = wire.MAX_FRAME_BYTES  # the wire's frame cap, both ways (smaller in tests)


class Tenant(Protocol):
    """What the supervisor needs of a cell it placed on a worker (the host-side `ProcessCell`)."""

    id: int
    heap: int
    started: bool  # the worker confirmed it handed the script to V8 (under the pool lock)

    def deliver_threadsafe(self, events: list[EngineEvent]) -> None: ...
    def terminated_threadsafe(self) -> None: ...
    def died_threadsafe(self, error: str, suspect: bool) -> None: ...
    def move_threadsafe(self) -> None:
        """The supervisor took the cell off its retiring worker before its script started: it
        must drop it there and be placed again."""


class Worker:
    """One engine worker process, its pipes, and the reader thread that listens to it."""

    def __init__(self, pool: WorkerPool, config: WorkerConfig, *, alone: bool = False) -> None:
        self._pool = pool
        self.alone = alone  # runs one cell, the alone cell it was started for (see the module docstring)
        self.cells: dict[int, Tenant] = {}
        self.heap_admitted = 0
        self.setups: set[int] = set()
        self.ready = False
        self.dead = False
        self.retiring = False  # takes no new cells; killed when its last cell is done
        self.retired_at = 0.0  # when it retired (monotonic)
        self.retired_because = ""  # why, as a clause: "an earlier script in it could not be stopped"
        self.started_at = self.idle_since = time.monotonic()  # idle: when its last cell left (or it started)
        self.unstarted_since: float | None = None  # since when it holds a cell it has not started (see `hold`)
        self.kill_reason: str | None = None
        self.strips: dict[int, concurrent.futures.Future[wire.Stripped]] = {}  # `Strip`s it has not answered
        self.refusal: EngineError | None = None  # set when it speaks another protocol version
        self.memory_cap_bytes = config.memory_cap_bytes
        self.max_frame_bytes = config.max_frame_bytes
        self.exited: concurrent.futures.Future[None] = concurrent.futures.Future()  # its reader is done
        self._send_lock = threading.Lock()
        self._backlog: deque[memoryview] = deque()  # commands the pipe could not take yet, in order (`send`)
        self._stderr = bytearray()
        scratch = tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{_HOST}-")
        arguments = {
            "path": [p for p in sys.path if p],
            "host_pid": os.getpid(),
            "memory_cap_bytes": config.memory_cap_bytes,
            "isolate_pool_size": ALONE_ISOLATES if alone else config.isolate_pool_size,
            "max_frame_bytes": config.max_frame_bytes,
        }
        try:
            self.proc = _spawner.spawn(
                [sys.executable, "-I", "-S", "-c", BOOTSTRAP, json.dumps(arguments)], cwd=scratch
            )
        finally:
            os.rmdir(scratch)  # the worker runs in it, deleted: nothing to clean up later
        self.pid = self.proc.pid
        assert self.proc.stdin is not None  # spawned with pipes
        self._commands = self.proc.stdin.fileno()
        os.set_blocking(self._commands, False)  # see `send`
        threading.Thread(target=self._read, name=f"codemode-engine-{self.pid}", daemon=True).start()

    # -- cells (pool lock held) ----------------------------------------------------------------
    def hold(self, cell: Tenant) -> None:
        """Take `cell`; it waits to start from now if no other cell here was waiting."""
        if self.unstarted_since is None or all(c.started for c in self.cells.values()):
            self.unstarted_since = time.monotonic()
        self.cells[cell.id] = cell
        self.heap_admitted += cell.heap

    def note_started(self) -> None:
        """A start was confirmed: what still waits to start, waits from now."""
        waiting = any(not c.started for c in self.cells.values())
        self.unstarted_since = time.monotonic() if waiting else None

    # -- host -> worker -----------------------------------------------------------------------
    def send(self, message: wire.HostMessage) -> None:
        """Write one command (from any thread) without waiting for the worker: what its pipe
        cannot take now (a large command, a worker that reads slowly or not at all) waits, in
        order, for a writer thread, so no event loop blocks on a worker. A dead worker's
        commands are dropped.

        Raises `wire.FrameTooLarge` (and sends nothing) when it is over the frame cap."""
        data = memoryview(wire.pack(message, self.max_frame_bytes))
        with self._send_lock:
            if self.dead:
                return
            if not self._backlog:
                try:
                    data = data[os.write(self._commands, data) :]
                except BlockingIOError:
                    pass
                except OSError:
                    return  # it died; the reader thread reports that
                if not data:
                    return
                # The writer waits for this lock, so for the append below.
                threading.Thread(target=self._write_backlog, name=f"codemode-engine-{self.pid}-w", daemon=True).start()
            self._backlog.append(data)

    def _write_backlog(self) -> None:
        """Write what `send` could not, in order, as the worker takes it; ends when all is
        written or the worker is dead (checked under the send lock before every write: the
        reader closes the pipe only after it set `dead` under it)."""
        with selectors.DefaultSelector() as selector:
            with self._send_lock:
                if self.dead:  # (its pipe may be closed already)
                    self._backlog.clear()
                    return
                selector.register(self._commands, selectors.EVENT_WRITE)
            while True:
                with self._send_lock:
                    if self.dead or not self._backlog:
                        self._backlog.clear()
                        return
                    head = self._backlog[0]
                    try:
                        written = os.write(self._commands, head)
                    except BlockingIOError:
                        written = 0
                    except OSError:
                        self._backlog.clear()  # it died; the reader thread reports that
                        return
                    if written == len(head):
                        self._backlog.popleft()
                        continue
                    self._backlog[0] = head[written:]
                selector.select(BACKLOG_CHECK_S)  # writable again, or time to see whether it died

    def strip(self, strip_id: int, code: str) -> concurrent.futures.Future[wire.Stripped]:
        """Send a `Strip` (from any thread): the future settles with the worker's `Stripped`, or
        fails with an `EngineError` when the worker dies first.

        Raises `wire.FrameTooLarge` (and sends nothing) when `code` is over the frame cap."""
        future: concurrent.futures.Future[wire.Stripped] = concurrent.futures.Future()
        with self._pool.lock:  # `worker_died` takes the pending strips under it, after `dead` is set
            if self.dead:
                future.set_exception(EngineError(self.strip_death_text()))
                return future
            self.strips[strip_id] = future
        try:
            self.send(wire.Strip(strip_id, code))
        except wire.FrameTooLarge:
            with self._pool.lock:
                del self.strips[strip_id]
            raise
        return future

    def kill(self, reason: str) -> None:
        """Kill the process now; its cells learn `reason` when the reader sees it die."""
        if self.kill_reason is None:
            self.kill_reason = reason
        self.retiring = True
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()

    @property
    def doomed(self) -> bool:
        """It was killed, or its process ended: it will never run a cell again."""
        return self.dead or self.kill_reason is not None

    # -- worker -> host -----------------------------------------------------------------------
    def _read(self) -> None:
        stdin, stdout, stderr = self.proc.stdin, self.proc.stdout, self.proc.stderr
        assert stdin is not None and stdout is not None and stderr is not None
        unpacker = wire.unpacker(self.max_frame_bytes)
        first = True  # the next message must be READY
        broken = False  # it broke the protocol: it is being killed, the rest of its output is ignored
        with selectors.DefaultSelector() as selector:
            selector.register(stdout, selectors.EVENT_READ)
            selector.register(stderr, selectors.EVENT_READ)
            events_open = True
            while events_open or _registered(selector, stderr):
                # Once the events pipe closed, the last of stderr (why it died) gets a second.
                ready = selector.select(None if events_open else 1.0)
                if not ready:
                    break
                for key, _ in ready:
                    data = os.read(key.fd, 1 << 18)
                    if not data:
                        selector.unregister(key.fileobj)
                        events_open = events_open and key.fileobj is not stdout
                    elif key.fileobj is stderr:
                        self._stderr += data
                        del self._stderr[:-_STDERR_TAIL]
                    elif not broken:
                        try:
                            unpacker.feed(data)
                            for message in unpacker:
                                if first:
                                    first = False
                                    self._pool.worker_ready(self, wire.read_ready(message))
                                else:
                                    self._dispatch(wire.from_wire(message))
                        except wire.VersionMismatch as exc:
                            broken = True
                            self._pool.worker_refused(self, exc)
                        except (wire.ProtocolError, msgpack.BufferFull, msgpack.UnpackException) as exc:
                            broken = True
                            self.kill(f"because it broke the engine protocol ({type(exc).__name__}: {exc})")
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
        if self.proc.returncode is None:
            self.proc.kill()  # it closed its pipes but lingers
            self.proc.wait()
        with self._send_lock:
            self.dead = True
        with contextlib.suppress(OSError):
            stdin.close()
        for pipe in (stdout, stderr):
            pipe.close()
        try:
            self._pool.worker_died(self, self._death_text(), self._stderr.decode("utf-8", "replace"))
        finally:
            self.exited.set_result(None)

    def _dispatch(self, message: wire.Message) -> None:
        """One message after READY (reader thread; see the thread rules above)."""
        match message:
            case wire.Events(cell_id=cell_id, events=events):
                with self._pool.lock:
                    cell = self.cells.get(cell_id)
                if cell is not None:
                    cell.deliver_threadsafe(list(events))
            case wire.Started(cell_ids=cell_ids):
                with self._pool.lock:
                    for cell_id in cell_ids:
                        cell = self.cells.get(cell_id)
                        if cell is not None:
                            cell.started = True
                    self.note_started()
            case wire.Terminated(cell_id=cell_id):
                with self._pool.lock:
                    cell = self.cells.get(cell_id)
                if cell is not None:
                    cell.terminated_threadsafe()
            case wire.Stuck(seconds=seconds):
                if seconds > TERMINATE_GRACE_S:
                    self._pool.retire(self, "an earlier script in it could not be stopped")
            case wire.Starved():
                self._pool.retire(self, "it had no memory left to start new scripts")
            case wire.Stripped(strip_id=strip_id):
                with self._pool.lock:
                    future = self.strips.pop(strip_id, None)
                if future is not None:
                    _settle(future, message)
            case _:
                raise wire.ProtocolError(f"the worker sent an unexpected message: {message!r:.200}")

    def _death_text(self) -> str:
        """What the cells that were running here read: what stopped, why, and what to do."""
        if self.kill_reason is not None:
            return f"The JavaScript engine process running this script was stopped {self.kill_reason}."
        return f"The JavaScript engine process running this script stopped: {self._cause()}. Output produced before is kept; nothing the script stored was saved."

    def strip_death_text(self) -> str:
        """What an exec whose TypeScript this worker was removing reads when the worker died."""
        if self.kill_reason is not None:
            return f"The JavaScript engine process removing this script's TypeScript types was stopped {self.kill_reason}. The script did not run."
        return f"The JavaScript engine process removing this script's TypeScript types stopped: {self._cause()}. The script did not run."

    def _cause(self) -> str:
        """Why the process ended by itself (it was not killed by the host)."""
        stderr = self._stderr.decode("utf-8", "replace")
        code = self.proc.returncode
        if _out_of_memory(stderr):
            cap = self.memory_cap_bytes
            limit = f" (it may allocate at most {cap / MIB:.0f} MiB)" if cap else ""
            why = (
                f"it ran out of memory{limit}. A single operation needed more memory than the engine can give "
                "(a huge array, string or JSON text). Process less data at once: work in smaller "
                "pieces, or across several execs"
            )
        elif code is not None and code < 0:
            number = -code
            name = signal.Signals(number).name if number in signal.valid_signals() else "a signal"
            why = f"it was killed by signal {number} ({name}). Run the script again; if this repeats, process less data at once"
            if number == signal.SIGTRAP:
                why = f"V8 stopped with a fatal error (signal {number}, SIGTRAP). Process less data at once, or avoid the operation that caused it"
        else:
            why = f"it exited with code {code}. Run the script again"
        return why

    def start_failure(self, failed_in_a_row: int, retry_in_s: float) -> EngineError:
        """Why the engine could not start, after this worker ended before it was ready: what
        happened to it, its own last error line, and whether its memory cap is the cause."""
        stderr = self._stderr.decode("utf-8", "replace")
        code = self.proc.returncode
        if self.kill_reason is not None:
            how = f"was stopped {self.kill_reason}"
        elif code is not None and code < 0:
            number = -code
            name = signal.Signals(number).name if number in signal.valid_signals() else "a signal"
            how = f"was killed by signal {number} ({name})"
        else:
            how = f"exited with code {code}"
        own = _last_error_line(stderr)
        text = (
            f"The JavaScript engine could not start: {failed_in_a_row} engine processes in a row ended "
            f"before they were ready; the last one {how}" + (f", saying: {own}" if own else "") + "."
        )
        cap = self.memory_cap_bytes
        if cap and (_out_of_memory(stderr) or "failed to map segment" in stderr or "no isolate" in stderr):
            text += (
                f" Its memory cap, memory_cap_bytes={cap / MIB:.0f} MiB, is too small for Python and V8 to "
                "start: raise it (1 GiB or more) or set 0 for no cap."
            )
        return EngineError(f"{text} Starting is tried again in {retry_in_s:g} s, while execs wait for it.")


def _out_of_memory(stderr: str) -> bool:
    lowered = stderr.lower()
    return "out of memory" in lowered or "OOM" in stderr or "invalid size error" in lowered or "MemoryError" in stderr


def _last_error_line(stderr: str) -> str:
    """The line of a worker's stderr that says what went wrong: V8's fatal error, else the last
    line (a Python traceback's exception); at most 300 characters."""
    lines = [line.strip(" #") for line in stderr.splitlines() if line.strip(" #")]
    fatal = [line for line in lines if line.startswith("Fatal")]
    line = fatal[0] if fatal else (lines[-1] if lines else "")
    return line[:300]


class _Spawner:
    """Starts worker processes from one thread that lives as long as the host.

    A worker asks for SIGKILL when its parent dies, and Linux means the parent *thread*: a
    worker started from a reader thread would die with that thread (its worker's death).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: queue.SimpleQueue[tuple[list[str], str, concurrent.futures.Future[subprocess.Popen[bytes]]]] = (
            queue.SimpleQueue()
        )
        self._thread: threading.Thread | None = None

    def spawn(self, command: list[str], cwd: str) -> subprocess.Popen[bytes]:
        future: concurrent.futures.Future[subprocess.Popen[bytes]] = concurrent.futures.Future()
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="codemode-engine-spawner", daemon=True)
                self._thread.start()
        self._jobs.put((command, cwd, future))
        return future.result()

    def _run(self) -> None:
        while True:
            command, cwd, future = self._jobs.get()
            try:
                process = subprocess.Popen(
                    command,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    env=WORKER_ENV,
                    cwd=cwd,
                    close_fds=True,
                )
            except BaseException as exc:
                future.set_exception(exc)
            else:
                future.set_result(process)


_spawner = _Spawner()


def _process_start(pid: int) -> str | None:
    """When process `pid` started (clock ticks since boot, Linux), "0" where that is unknown,
    None when there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()[19]
    except FileNotFoundError:
        return None
    except OSError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except OSError:
        pass
    return "0"


_HOST = f"{os.getpid()}-{_process_start(os.getpid())}"  # this host, as scratch directory names hold it


def remove_stale_scratch(directory: str | None = None) -> None:
    """Remove scratch directories (`SCRATCH_PREFIX<pid>-<start>-*`) whose host process is gone:
    a pid that no longer runs, or runs a process that started at another time (a reused pid).
    Directories of live hosts, and names of any other form, are left alone."""
    directory = directory or tempfile.gettempdir()
    with contextlib.suppress(OSError), os.scandir(directory) as entries:
        for entry in entries:
            if not entry.name.startswith(SCRATCH_PREFIX):
                continue
            pid, _, rest = entry.name[len(SCRATCH_PREFIX) :].partition("-")
            start, _, _ = rest.partition("-")
            if not (pid.isdigit() and start.isdigit()):
                continue
            alive = _process_start(int(pid))
            if alive is not None and alive in (start, "0"):
                continue
            with contextlib.suppress(OSError):
                if entry.is_dir(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_uid == os.getuid():
                    shutil.rmtree(entry.path, ignore_errors=True)


def _registered(selector: selectors.BaseSelector, fileobj: Any) -> bool:
    try:
        selector.get_key(fileobj)
    except KeyError:
        return False
    return True


@dataclass
class _Waiter:
    cell: Tenant
    future: concurrent.futures.Future[Worker]


class WorkerPool:
    """The engine workers of one `ProcessEngine`, and the cells waiting for room on one."""

    def __init__(self, config: WorkerConfig) -> None:
        self.config = config
        self.lock = threading.RLock()  # see the thread rules in the module docstring
        self._active: list[Worker] = []
        self._spare: Worker | None = None
        self._waiters: deque[_Waiter] = deque()
        self._alone: list[Worker] = []  # alone workers, starting or running their cell
        self._alone_waiters: deque[_Waiter] = deque()  # alone cells waiting for their worker
        self._up = False  # a first worker was ready
        self._ready_waiters: list[concurrent.futures.Future[None]] = []
        self._strip_waiters: list[concurrent.futures.Future[Worker]] = []  # strips waiting for a ready worker
        self._failed_starts = 0  # workers in a row that ended before they were ready
        self._retry_at = 0.0  # no worker is started before then (monotonic), after start failures
        self.failure: EngineError | None = None  # why no worker could start (until one does)
        self._closed = False
        self._changed = threading.Condition(self.lock)  # wakes the janitor
        self._janitor_wakes_at = math.inf  # when the janitor wakes by itself next (monotonic)
        atexit.register(self.shutdown)
        threading.Thread(target=remove_stale_scratch, name="codemode-engine-scratch", daemon=True).start()
        threading.Thread(target=self._janitor, name="codemode-engine-janitor", daemon=True).start()

    # -- admission ----------------------------------------------------------------------------
    def start(self) -> None:
        """Make sure a worker is running or starting (an engine's first session calls this)."""
        with self.lock:
            if not self._closed and not self._active:
                self._grow()

    def stripper(self) -> concurrent.futures.Future[Worker]:
        """A future (the caller's own: cancel it to stop waiting) of a ready worker to strip a
        script's TypeScript on: the oldest in service (it is kept when idle, so one stripper
        usually serves the pool), else the spare. It fails with an `EngineError` when the engine
        is shut down or its next start fails."""
        future: concurrent.futures.Future[Worker] = concurrent.futures.Future()
        with self.lock:
            worker = self._ready_stripper()
            if worker is not None:
                future.set_result(worker)
                return future
            if self._closed:
                future.set_exception(_shut_down())
                return future
            self._strip_waiters.append(future)
            if not self._active:
                self._grow()
            self._changed.notify()  # a retried start may be due for it
        return future

    def _ready_stripper(self) -> Worker | None:
        for worker in [*self._active, *([self._spare] if self._spare is not None else [])]:
            if worker.ready and not worker.retiring and not worker.doomed:
                return worker
        return None

    def _settle_strip_waiters(self, outcome: Worker | EngineError) -> None:
        waiters, self._strip_waiters = self._strip_waiters, []
        for future in waiters:
            if not future.set_running_or_notify_cancel():
                continue  # its caller stopped waiting
            if isinstance(outcome, EngineError):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)

    def try_admit(self, cell: Tenant) -> Worker | None:
        """A worker with room for `cell` now (the cell is placed on it), else None."""
        with self.lock:
            if self._waiters or self._closed:
                return None
            return self._place(cell)

    def admission(self, cell: Tenant, *, alone: bool = False) -> concurrent.futures.Future[Worker]:
        """A future of the worker that will run `cell` (`alone`: a worker started for it alone),
        in the order cells (alone cells) asked; it fails with an `EngineError` when the engine is
        shut down or its next start fails.

        Cancel the future to withdraw; a cell placed meanwhile must be `discharge`d.
        """
        future: concurrent.futures.Future[Worker] = concurrent.futures.Future()
        with self.lock:
            if self._closed:
                future.set_exception(_shut_down())
                return future
            if alone:
                self._alone_waiters.append(_Waiter(cell, future))
                self._serve_alone()
            else:
                self._waiters.append(_Waiter(cell, future))
                self._serve_waiters()
            self._changed.notify()  # a start may be due for it (the janitor times it)
        return future

    def discharge(self, cell: Tenant, worker: Worker) -> None:
        """`cell` left `worker` (finished, terminated, or withdrawn): its room is free again
        (an alone worker is stopped)."""
        with self.lock:
            if worker.cells.pop(cell.id, None) is None:
                return
            worker.heap_admitted -= cell.heap
            if worker.alone:
                worker.kill("because its script ended")  # never reused: it ran only that cell
                self._serve_alone()
                return
            if not worker.cells:
                worker.idle_since = time.monotonic()
                self._changed.notify()
                if worker.retiring and not worker.dead:
                    worker.kill(f"because {worker.retired_because}")
            self._serve_waiters()

    def _place(self, cell: Tenant) -> Worker | None:
        best: Worker | None = None
        for worker in self._active:
            if not worker.ready or worker.retiring or worker.dead:
                continue
            if len(worker.cells) >= self.config.cells_per_worker:
                continue
            if worker.cells and worker.heap_admitted + cell.heap > self.config.heap_per_worker:
                continue
            if best is None or worker.heap_admitted < best.heap_admitted:
                best = worker
        if best is None:
            self._grow()
            return None
        self._give(best, cell)
        return best

    # -- the janitor: idle workers, retired workers, slow starts, retried starts ----------------
    def _janitor(self) -> None:
        """Do what is due, then sleep until the next thing is (or something changes, or the
        pool closes), rather than polling."""
        with self.lock:
            while not self._closed:
                now = time.monotonic()
                self._stop_idle_workers(now)
                self._end_retirements(now)
                self._stop_slow_starts(now)
                self._retire_workers_that_start_nothing(now)
                if self.failure is not None and now >= self._retry_at and self._wanted():
                    self._grow()
                    self._serve_waiters()
                    self._serve_alone()
                now = time.monotonic()
                timeout = self._next_due(now)
                self._janitor_wakes_at = math.inf if timeout is None else now + timeout
                self._changed.wait(timeout)

    def _stop_idle_workers(self, now: float) -> None:
        """Stop workers a burst started once they have been idle for `idle_worker_s`; the
        first one and the spare stay."""
        idle = [
            w
            for w in self._active
            if w.ready and not w.cells and not w.retiring and now - w.idle_since > self.config.idle_worker_s
        ]
        for worker in idle:
            if len(self._active) <= 1:
                break
            self._active.remove(worker)
            worker.kill("because it was idle")

    def _end_retirements(self, now: float) -> None:
        """Kill retired workers whose grace is over, and the oldest beyond `MAX_RETIRING`."""
        retiring = sorted((w for w in self._active if w.retiring and not w.doomed), key=lambda w: w.retired_at)
        grace = self.config.retire_grace_s
        for index, worker in enumerate(retiring):
            if now - worker.retired_at >= grace:
                worker.kill(
                    f"because {worker.retired_because}, and this script was still "
                    f"running {grace:g} s later (a worker in that state is retired: it takes no new scripts "
                    "and is stopped once its scripts end, or after that grace). Run it again"
                )
            elif index < len(retiring) - MAX_RETIRING:
                worker.kill(
                    f"because {worker.retired_because}, and more engine processes were in that state than are "
                    "kept. Run it again"
                )

    def _retire_workers_that_start_nothing(self, now: float) -> None:
        for worker in [*self._active, *self._alone]:
            if worker.retiring or worker.doomed or worker.unstarted_since is None:
                continue
            if all(cell.started for cell in worker.cells.values()):
                worker.unstarted_since = None  # the cells that waited left unstarted
            elif now - worker.unstarted_since >= UNSTARTED_S:
                self.retire(worker, f"it started none of the scripts it was given for {UNSTARTED_S:g} s")

    def _give(self, worker: Worker, cell: Tenant) -> None:
        """Place `cell` on `worker`, and make sure the janitor looks at the worker once its
        waiting cells are due: a wake-up only when that deadline is earlier than the janitor's
        own, not per cell placed."""
        worker.hold(cell)
        if worker.unstarted_since is not None and worker.unstarted_since + UNSTARTED_S < self._janitor_wakes_at:
            self._changed.notify()

    def _stop_slow_starts(self, now: float) -> None:
        for worker in self._starting():
            if now - worker.started_at >= START_TIMEOUT_S:
                worker.kill(f"because it was not ready {START_TIMEOUT_S:g} s after it started")

    def _starting(self) -> list[Worker]:
        workers = [*self._active, *([self._spare] if self._spare is not None else []), *self._alone]
        return [w for w in workers if not w.ready and not w.doomed]

    def _wanted(self) -> bool:
        """Whether a cell or a session waits for a worker."""
        return bool(self._waiters or self._alone_waiters or self._ready_waiters or self._strip_waiters)

    def _next_due(self, now: float) -> float | None:
        """Seconds until the janitor has something to do (None: nothing is scheduled)."""
        due = [w.retired_at + self.config.retire_grace_s for w in self._active if w.retiring and not w.doomed]
        due += [w.started_at + START_TIMEOUT_S for w in self._starting()]
        due += [
            w.unstarted_since + UNSTARTED_S
            for w in [*self._active, *self._alone]
            if w.unstarted_since is not None and not w.retiring and not w.doomed
        ]
        if len(self._active) > 1:
            due += [
                w.idle_since + self.config.idle_worker_s
                for w in self._active
                if w.ready and not w.cells and not w.retiring
            ]
        if self.failure is not None and self._wanted() and self._retry_at > now:
            due.append(self._retry_at)  # (once it is past, the janitor started one, or none can start now)
        return max(0.01, min(due) - now) if due else None

    # -- starting workers ---------------------------------------------------------------------
    def _grow(self) -> None:
        """Bring one more worker into service, unless one is starting, the pool is full, or a
        retried start is not due yet."""
        if any(not w.ready for w in self._active):
            return
        if len([w for w in self._active if not w.retiring]) >= self.config.workers:
            return
        if self._spare is not None:
            worker, self._spare = self._spare, None
            self._active.append(worker)
            self._changed.notify()
            if worker.ready:
                self._refill_spare()
        else:
            worker = self._spawn()
            if worker is not None:
                self._active.append(worker)

    def _refill_spare(self) -> None:
        if self._spare is None and not self._closed:
            self._spare = self._spawn()

    def _spawn(self, *, alone: bool = False) -> Worker | None:
        """A new worker process, or None while a retried start is not due or when none can be
        started (a failed start)."""
        if self._closed or time.monotonic() < self._retry_at:
            return None
        try:
            worker = Worker(self, self.config, alone=alone)
        except OSError as exc:
            self._failed_starts = max(self._failed_starts + 1, MAX_FAILED_STARTS)
            delay = self._next_retry()
            failure = EngineError(
                f"The JavaScript engine could not start: no engine process could be started ({exc}). "
                f"Starting is tried again in {delay:g} s, while execs wait for it."
            )
            self._start_failed(failure, exc)
            return None
        self._changed.notify()  # the janitor times its start
        return worker

    def _next_retry(self) -> float:
        """Schedule the next start after the current run of failed starts; its delay."""
        delay = RETRY_DELAYS_S[min(max(self._failed_starts - MAX_FAILED_STARTS, 0), len(RETRY_DELAYS_S) - 1)]
        self._retry_at = time.monotonic() + delay
        self._changed.notify()
        return delay

    def _start_failed(self, failure: EngineError, cause: BaseException) -> None:
        """No worker could start: say why to the cells and sessions waiting for one (a later
        start is retried, when something waits for it)."""
        failure.__cause__ = cause
        self.failure = failure
        for waiter in [*self._waiters, *self._alone_waiters]:
            if waiter.future.set_running_or_notify_cancel():
                waiter.future.set_exception(failure)
        self._waiters.clear()
        self._alone_waiters.clear()
        self._settle_ready_waiters()
        self._settle_strip_waiters(failure)

    def _serve_waiters(self) -> None:
        while self._waiters:
            waiter = self._waiters[0]
            if waiter.future.cancelled():
                self._waiters.popleft()
                continue
            worker = self._place(waiter.cell)
            if worker is None:
                return
            self._waiters.popleft()
            if not waiter.future.set_running_or_notify_cancel():
                self.discharge(waiter.cell, worker)
                continue
            waiter.future.set_result(worker)

    def _serve_alone(self) -> None:
        """Hand each ready alone worker to the next alone cell waiting (stop it when none
        waits), and start one for each cell still waiting, within the bound."""
        live = [w for w in self._alone if not w.doomed]
        for worker in live:
            if not worker.ready or worker.cells:
                continue
            while self._alone_waiters and not worker.cells:
                waiter = self._alone_waiters.popleft()
                if waiter.future.set_running_or_notify_cancel():
                    self._give(worker, waiter.cell)
                    waiter.future.set_result(worker)
            if not worker.cells:
                worker.kill("because no script waited for it any more")
        live = [w for w in live if not w.doomed]
        starting = sum(1 for w in live if not w.ready)
        waiting = sum(1 for w in self._alone_waiters if not w.future.cancelled())
        while starting < waiting and len(live) < self.config.workers:
            worker = self._spawn(alone=True)
            if worker is None:
                return
            self._alone.append(worker)
            live.append(worker)
            starting += 1

    # -- what the reader threads report -------------------------------------------------------
    def worker_ready(self, worker: Worker, ready: wire.Ready) -> None:
        del ready  # checked by `wire.read_ready`: nothing else in it matters yet
        with self.lock:
            worker.ready = True
            self._failed_starts = 0
            self._retry_at = 0.0
            self.failure = None
            self._up = True
            self._settle_ready_waiters()
            stripper = self._ready_stripper()
            if stripper is not None:
                self._settle_strip_waiters(stripper)
            self._changed.notify()
            if worker in self._active:
                self._refill_spare()
                self._serve_waiters()
            elif worker.alone:
                self._serve_alone()

    def retire(self, worker: Worker, why: str) -> None:
        """`worker` has an isolate that will not stop, or no memory for new ones: retire it (see
        the module docstring); `why` goes into what its cells read if it is killed before they end."""
        with self.lock:
            if worker.retiring or worker.dead:
                return
            worker.retiring = True
            worker.retired_at = time.monotonic()
            worker.retired_because = why
            moved = [cell for cell in worker.cells.values() if not cell.started]
            for cell in moved:
                del worker.cells[cell.id]
                worker.heap_admitted -= cell.heap
            if not worker.cells:
                worker.kill(f"because {why}")
            self._end_retirements(worker.retired_at)
            self._changed.notify()
            self._grow()
            self._serve_waiters()
        for cell in moved:
            cell.move_threadsafe()

    def worker_refused(self, worker: Worker, mismatch: wire.VersionMismatch) -> None:
        """`worker` speaks another protocol version: so would every other started now."""
        worker.refusal = EngineError(
            f"The JavaScript engine process speaks protocol version {mismatch.theirs!r}, but this "
            f"codemode needs {wire.PROTOCOL_VERSION}: the worker runs another codemode installation "
            f"than the host (reinstall codemode, or restart the host after an upgrade)."
        )
        worker.kill("because it speaks another engine protocol version")
        with self.lock:
            self._failed_starts = max(self._failed_starts + 1, MAX_FAILED_STARTS)
            self._next_retry()
            self._start_failed(worker.refusal, mismatch)

    def worker_died(self, worker: Worker, error: str, stderr: str) -> None:
        with self.lock:
            if worker in self._active:
                self._active.remove(worker)
            if worker in self._alone:
                self._alone.remove(worker)
            was_spare = self._spare is worker
            if was_spare:
                self._spare = None
            cells = list(worker.cells.values())
            worker.cells.clear()
            strips = list(worker.strips.values())
            worker.strips.clear()
            worker.heap_admitted = 0
            if not worker.ready and not self._closed and worker.refusal is None:
                self._failed_starts += 1
                if self._failed_starts >= MAX_FAILED_STARTS:
                    # Starting more at once would likely fail the same way: say why to everyone
                    # waiting, and try again after a while.
                    self._start_failed(
                        worker.start_failure(self._failed_starts, self._next_retry()),
                        ChildProcessError(
                            f"engine worker {worker.pid} exited with {worker.proc.returncode} before it was "
                            f"ready; the end of its stderr:\n{stderr[-4000:]}"
                        ),
                    )
            if not self._closed:
                if self._waiters or not self._active:
                    self._grow()
                if was_spare and any(w.ready for w in self._active):
                    self._refill_spare()
                self._serve_waiters()
                self._serve_alone()
            self._changed.notify()
        suspect = worker.kill_reason is None  # it died on its own: one of its cells may be why
        for cell in cells:
            cell.died_threadsafe(error, suspect)
        for strip in strips:
            _settle(strip, EngineError(worker.strip_death_text()))

    # -- lifecycle ----------------------------------------------------------------------------
    def when_ready(self) -> concurrent.futures.Future[None]:
        """A future (the caller's own: cancel it to stop waiting) resolved once a worker is up,
        or failed with an `EngineError` when the next start fails or the pool shuts down."""
        future: concurrent.futures.Future[None] = concurrent.futures.Future()
        with self.lock:
            self._ready_waiters.append(future)
            if self._closed or (self._up and self.failure is None):
                self._settle_ready_waiters()
            else:
                if not self._active:
                    self._grow()
                self._changed.notify()  # a retried start may be due for it
        return future

    def _settle_ready_waiters(self) -> None:
        waiters, self._ready_waiters = self._ready_waiters, []
        for future in waiters:
            if not future.set_running_or_notify_cancel():
                continue  # its caller stopped waiting
            failure = _shut_down() if self._closed else self.failure
            if failure is not None:
                future.set_exception(failure)
            else:
                future.set_result(None)

    @property
    def closed(self) -> bool:
        return self._closed

    def workers(self) -> list[Worker]:
        """The workers in service (retiring ones included), the spare and the alone workers
        (for diagnostics and tests)."""
        with self.lock:
            return [*self._active, *([self._spare] if self._spare is not None else []), *self._alone]

    def shutdown(self) -> None:
        """Kill every worker (at interpreter exit, or when the engine is closed)."""
        with self.lock:
            if self._closed:
                return
            self._closed = True
            self._changed.notify()
            workers = self.workers()
            for waiter in [*self._waiters, *self._alone_waiters]:
                waiter.future.cancel()
            self._waiters.clear()
            self._alone_waiters.clear()
            self._settle_ready_waiters()
            self._settle_strip_waiters(_shut_down())
        atexit.unregister(self.shutdown)  # (atexit would otherwise keep every closed pool alive)
        for worker in workers:
            worker.kill("because the code mode engine shut down")


def _settle(future: concurrent.futures.Future[wire.Stripped], outcome: wire.Stripped | EngineError) -> None:
    """Settle a strip's future, unless its caller stopped waiting (it was cancelled)."""
    if not future.set_running_or_notify_cancel():
        return
    if isinstance(outcome, EngineError):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


def _shut_down() -> EngineError:
    return EngineError("The JavaScript engine is shut down: its engine was closed, or the interpreter is exiting.")
