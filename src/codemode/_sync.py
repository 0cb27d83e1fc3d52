"""`SyncCodeMode`: the same session for callers without an event loop.

It runs one `CodeMode` on an anyio blocking portal (a private event-loop thread); every method
is `CodeMode`'s, run there and waited for. Tools still run on that loop (sync tools in worker
threads), so a slow tool never blocks other cells. The thread exists only while the session is
open: a construction that fails (a misspelt option, a failed start) leaves none behind.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Self, TypeVar, Unpack

from anyio.from_thread import BlockingPortal, start_blocking_portal

from codemode._describe.names import NestedTool
from codemode._protocol.calls import PendingApproval, ToolCallRecord
from codemode._protocol.config import Defaults, Isolation, Limits
from codemode._protocol.lifecycle import State, use_refusal
from codemode._protocol.types import ExecResult, Notification
from codemode._session.options import CodeModeOptions, check_options
from codemode._session.session import CodeMode
from codemode.errors import UsageError
from codemode.formats import Api
from codemode.tools import Tool

T = TypeVar("T")


class SyncCodeMode:
    """`CodeMode` for blocking code: the same arguments, methods and properties, and started on
    construction. Use it as a context manager, or call `close()`.

    Raises (on construction):
        UsageError: an unknown option, or a bad value.
        Exception: the start failed (see `CodeMode.start`).
    """

    def __init__(
        self, tools: Iterable[Tool | Callable[..., Any] | object] = (), **options: Unpack[CodeModeOptions]
    ) -> None:
        check_options(options)
        self._session = CodeMode(tools, **options)
        self._portal_context: contextlib.AbstractContextManager[BlockingPortal] | None = None
        portal_context = start_blocking_portal(name="codemode-loop")
        self._portal = portal_context.__enter__()
        self._portal_context = portal_context
        try:
            self._portal.call(self._session.start)
        except BaseException:
            self.close()
            raise

    def _open_portal(self) -> BlockingPortal:
        """The portal to the session's loop thread, while open."""
        if self._portal_context is None:
            raise UsageError(use_refusal(State.CLOSED, "this SyncCodeMode"))
        return self._portal

    def _call(self, function: Callable[[], Awaitable[T]]) -> T:
        """Run a coroutine function of the session on its loop and wait for the result."""
        return self._open_portal().call(function)

    def _read(self, function: Callable[[], T]) -> T:
        """Run a plain function on the session's loop (where the session changes) and return it."""
        return self._open_portal().call(function)

    # -- lifecycle --------------------------------------------------------------------------
    def start(self, *, fill_pool: bool = False) -> None:
        """See `CodeMode.start` (already done on construction; `fill_pool=True` waits for the
        whole isolate pool)."""
        self._call(functools.partial(self._session.start, fill_pool=fill_pool))

    def close(self) -> None:
        """Terminate every cell, close the tool sources, stop the loop thread; idempotent."""
        portal_context, self._portal_context = self._portal_context, None
        if portal_context is None:
            return
        try:
            self._portal.call(self._session.aclose)
        finally:
            portal_context.__exit__(None, None, None)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def state(self) -> State:
        """See `CodeMode.state`."""
        return self._session.state

    # -- the model-facing tools -------------------------------------------------------------
    def exec(
        self, source: str, *, yield_time_ms: int | None = None, max_output_tokens: int | None = None
    ) -> ExecResult:
        """See `CodeMode.exec`."""
        return self._call(
            functools.partial(
                self._session.exec, source, yield_time_ms=yield_time_ms, max_output_tokens=max_output_tokens
            )
        )

    def wait(
        self,
        cell_id: str,
        yield_time_ms: int | None = None,
        max_tokens: int | None = None,
        terminate: bool = False,
    ) -> ExecResult:
        """See `CodeMode.wait`."""
        return self._call(functools.partial(self._session.wait, cell_id, yield_time_ms, max_tokens, terminate))

    # -- approvals and the trace ------------------------------------------------------------
    def approve(self, cell_id: str, call_id: str) -> None:
        """See `CodeMode.approve`."""
        self._call(functools.partial(self._session.approve, cell_id, call_id))

    def reject(self, cell_id: str, call_id: str, reason: str | None = None) -> None:
        """See `CodeMode.reject`."""
        self._call(functools.partial(self._session.reject, cell_id, call_id, reason))

    def pending_approvals(self, cell_id: str | None = None) -> list[PendingApproval]:
        """See `CodeMode.pending_approvals`."""
        return self._read(functools.partial(self._session.pending_approvals, cell_id))

    def tool_calls(self, cell_id: str) -> list[ToolCallRecord]:
        """See `CodeMode.tool_calls`."""
        return self._read(functools.partial(self._session.tool_calls, cell_id))

    # -- what the host can read (read on the loop thread, where the session changes) --------
    @property
    def notifications(self) -> list[Notification]:
        """See `CodeMode.notifications`."""
        return self._read(lambda: self._session.notifications)

    @property
    def stored_values(self) -> dict[str, Any]:
        """See `CodeMode.stored_values`."""
        return self._read(lambda: self._session.stored_values)

    def delete_stored_value(self, key: str) -> bool:
        """See `CodeMode.delete_stored_value`."""
        return self._read(functools.partial(self._session.delete_stored_value, key))

    def tool_specs(self, api: Api = "responses", *, code_mode_only: bool = True) -> list[dict[str, Any]]:
        """See `CodeMode.tool_specs`."""
        return self._read(functools.partial(self._session.tool_specs, api, code_mode_only=code_mode_only))

    def exec_description(self, *, code_mode_only: bool = True) -> str:
        """See `CodeMode.exec_description`."""
        return self._read(functools.partial(self._session.exec_description, code_mode_only=code_mode_only))

    @property
    def tools(self) -> Sequence[NestedTool]:
        """See `CodeMode.tools`."""
        return self._read(lambda: self._session.tools)

    @property
    def running_cells(self) -> list[str]:
        """See `CodeMode.running_cells`."""
        return self._read(lambda: self._session.running_cells)

    @property
    def limits(self) -> Limits:
        """See `CodeMode.limits`."""
        return self._session.limits

    @property
    def defaults(self) -> Defaults:
        """See `CodeMode.defaults`."""
        return self._session.defaults

    @property
    def isolation(self) -> Isolation:
        """See `CodeMode.isolation`."""
        return self._session.isolation

    @property
    def session_id(self) -> str:
        """See `CodeMode.session_id`."""
        return self._session.session_id
