"""The mini-racer (V8) engine: the only module that knows py_mini_racer.

Invariants:
* Every cell runs in a fresh, never-used V8 context (its own isolate and native thread).
  Contexts are created, prepared and freed on background "isolate" threads, so the event
  loop never blocks on V8; a per-session pool of prepared contexts keeps creating and freeing
  them off the critical path (`IsolatePool`).
* The event loop never makes a synchronous call into a running isolate (such a call blocks
  until the script is idle, which for `while(true){}` is never). Script -> host data travels
  through a SharedArrayBuffer ring read straight from memory; host -> script data travels as
  queued eval tasks, which V8 runs when the script is idle.
* Terminate = free the context: the only way to stop a loop running after an `await`.
  The ring is read one last time first, and never after.

mini-racer's private Context helpers are used on purpose (its public API blocks the loop);
the version is pinned in pyproject.toml.

Modules: `_isolate` (one prepared context and its output ring), `_cell` (one script in it),
`_pool` (prepared isolates per session); this one ties them into the `Engine` interface.
"""

from __future__ import annotations

import asyncio
import json

from codemode._engine.base import CellProgram, EventSink, SessionSetup
from codemode._engine.miniracer._cell import (
    PROGRAM_PREFIX,
    PROGRAM_SUFFIX,
    MiniRacerCell,
)
from codemode._engine.miniracer._isolate import (
    CHANNEL_ERROR,
    MAX_BUFFERED_CHARS,
    PRELUDE,
    RING_BYTES,
    Isolate,
)
from codemode._engine.miniracer._pool import POOL_SIZE, IsolatePool

__all__ = ["CHANNEL_ERROR", "MiniRacerEngine", "MiniRacerSession"]


class MiniRacerSession:
    """A session's isolates: a pool prepared in the background; implements EngineSession."""

    def __init__(self, setup: SessionSetup, pool_size: int = POOL_SIZE) -> None:
        self._loop = asyncio.get_running_loop()
        setup_json = json.dumps(
            {
                "tools": [{"name": t.global_name, "description": t.description} for t in setup.tools],
                "ring_bytes": RING_BYTES,
                "max_buffered_chars": MAX_BUFFERED_CHARS,
            }
        )
        # The setup travels as a JSON string for JSON.parse: much cheaper than a literal to compile.
        prelude = PRELUDE.replace("__CODEMODE_SETUP__", f"JSON.parse({json.dumps(setup_json)})")
        heap_limit = setup.heap_limit_bytes
        loop = self._loop
        self._pool = IsolatePool(loop, lambda: Isolate(loop, prelude, heap_limit), pool_size)

    async def ready(self, isolates: int | None = None) -> None:
        """Wait until V8 is up and `isolates` (default: the whole pool) are prepared."""
        await self._pool.filled(self._pool.size if isolates is None else isolates)

    async def start(self, program: CellProgram, on_event: EventSink) -> MiniRacerCell:
        isolate = await self._pool.take()
        prefix = PROGRAM_PREFIX.format(snapshot=json.dumps(json.dumps(program.stored)), hoisted=program.hoisted)
        cell = MiniRacerCell(isolate, on_event, len(prefix), self._pool.release)
        cell.launch(prefix + program.code + PROGRAM_SUFFIX)
        return cell

    async def aclose(self) -> None:
        await self._pool.aclose()


class MiniRacerEngine:
    """The default engine: V8 through mini-racer; implements `Engine`.

    `pool_size` prepared isolates are kept per session (0: create each one on demand).
    """

    def __init__(self, pool_size: int = POOL_SIZE) -> None:
        self._pool_size = pool_size

    def open_session(self, setup: SessionSetup) -> MiniRacerSession:
        return MiniRacerSession(setup, self._pool_size)
