"""The event loop of the processes codemode owns: `codemode mcp`, `codemode exec`, engine workers.

uvloop where it is installed (a dependency everywhere but Windows): its loop and transports cost
the server and the engine workers less CPU per exec than asyncio's own (about 0.5 ms each of
the 17 an exec took under `benchmarks/http_load.py`). Library users keep the loop they run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run`, on uvloop's loop when it is installed."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)
