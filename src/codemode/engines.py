"""The JavaScript engines a `CodeMode` session can run on, and the shared ones it uses by default.

* `ProcessEngine` (`isolation="process"`, the default): V8 in a small pool of supervised engine
  worker processes shared by every session of this process. A script that crashes, exhausts or
  hangs V8 costs only its own worker; its cells fail with a clear error and a spare takes over.
* `InProcessEngine` (`isolation="in-process"`): V8 inside this process. Each exec starts a
  little faster, but one fatal V8 error (some one-line scripts cause them) aborts the process.

Sessions created without `engine=` share one engine per isolation mode; create your own engine
object to give a group of sessions other settings (`ProcessEngine(workers=4)`), and close it with
`await engine.aclose()` or `async with ProcessEngine(...) as engine:`. The shared engines are
never closed by a session: their workers are killed at interpreter exit (as are those of an
engine nobody closed). An engine that cannot start raises `codemode.errors.EngineError`.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from codemode._engine.base import Engine
    from codemode._engine.miniracer import MiniRacerEngine as InProcessEngine
    from codemode._engine.process import ProcessEngine

__all__ = ["InProcessEngine", "ProcessEngine", "shared"]

_shared: dict[str, Engine] = {}
_lock = threading.Lock()


def shared(isolation: Literal["process", "in-process"]) -> Engine:
    """The engine every session of this process uses for `isolation` (created on first use)."""
    with _lock:
        engine = _shared.get(isolation)
        if engine is None:
            if isolation == "process":
                from codemode._engine.process import ProcessEngine

                engine = ProcessEngine()
            else:
                from codemode._engine.miniracer import MiniRacerEngine

                engine = MiniRacerEngine()
            _shared[isolation] = engine
        return engine


def __getattr__(name: str) -> object:
    # Imported on first use: the process engine never loads V8 into this process.
    if name == "ProcessEngine":
        from codemode._engine.process import ProcessEngine

        return ProcessEngine
    if name == "InProcessEngine":
        from codemode._engine.miniracer import MiniRacerEngine

        return MiniRacerEngine
    raise AttributeError(name)
