"""`SyncCodeMode`: the same session for callers without an event loop.

It owns one private event-loop thread; every call is run there and waited for. Tools still run
on that loop (sync tools in worker threads), so a slow tool never blocks other cells.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from codemode._result import ExecResult
from codemode._session.session import CodeMode

T = TypeVar("T")


class SyncCodeMode:
    """A blocking facade over `CodeMode`; same arguments. Use as a context manager or `close()`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="codemode-loop", daemon=True)
        self._thread.start()
        self.session = CodeMode(*args, **kwargs)
        self._call(self.session.start())

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        if self._loop.is_closed():
            coroutine.close()
            raise RuntimeError("this SyncCodeMode is closed")
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def exec(self, source: str, **kwargs: Any) -> ExecResult:
        """See `CodeMode.exec`."""
        return self._call(self.session.exec(source, **kwargs))

    def wait(self, cell_id: str, **kwargs: Any) -> ExecResult:
        """See `CodeMode.wait`."""
        return self._call(self.session.wait(cell_id, **kwargs))

    def close(self) -> None:
        """Terminate every cell, stop the loop thread."""
        if self._loop.is_closed():
            return
        self._call(self.session.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def __enter__(self) -> SyncCodeMode:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
