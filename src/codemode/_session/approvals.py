"""Approvals of nested calls: the host's policy, and the calls of one cell waiting for an answer.

Invariants:
* A call of a tool that requires approval runs only after the policy answered True or the host
  approved it. Anything else (False, a rejection, the timeout, a policy that raised or returned
  nonsense) rejects the script's promise with a text saying why; the tool never runs.
* Each waiting call has one future, owned by the cell's `Approvals`: approve, reject or the
  timeout resolve it; a call cancelled because its cell ended takes its future with it. Answered
  and cancelled calls are remembered, so a late or second answer gets a clear error.
* Only the waiting call pauses: every other call of the script runs in a task of its own.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

from codemode._protocol.calls import ApprovalDecision, ApprovalPolicy, PendingApproval, ToolCall
from codemode._protocol.config import DEFAULT_APPROVAL_TIMEOUT_S
from codemode.errors import ToolError, UsageError

__all__ = [
    "NO_APPROVAL_POLICY",
    "ApprovalSettings",
    "Approvals",
    "ToolCallRejected",
]

_Answer: TypeAlias = Literal["approved", "rejected", "timed out", "cancelled"]


class ToolCallRejected(Exception):
    """The call was not approved; `str(exc)` is the rejection text for the script."""


@dataclass(frozen=True)
class ApprovalSettings:
    """A session's approval policy (None: ask the host for every call) and its timeout
    (validated by `Limits.approval_timeout_s`)."""

    policy: ApprovalPolicy | None = None
    timeout_s: float | None = DEFAULT_APPROVAL_TIMEOUT_S

    def __post_init__(self) -> None:
        if self.policy is not None and not callable(self.policy):
            raise UsageError(f"`approve` must be a callable taking the call, got {self.policy!r}")


NO_APPROVAL_POLICY = ApprovalSettings()


class Approvals:
    """The approvals of one cell: which calls wait, and what became of the others.

    `on_pending` is called when a call starts to wait, so the cell can yield to its observer.
    """

    def __init__(self, cell_id: str, settings: ApprovalSettings, on_pending: Callable[[], None]) -> None:
        self._cell_id = cell_id
        self._settings = settings
        self._on_pending = on_pending
        self._waiting: dict[str, tuple[PendingApproval, asyncio.Future[str | None]]] = {}
        self._answered: dict[str, _Answer] = {}
        self._unannounced: set[str] = set()  # calls that began to wait since `announce`

    @property
    def pending(self) -> tuple[PendingApproval, ...]:
        """The calls waiting for the host, in the order they began to wait."""
        return tuple(pending for pending, _ in self._waiting.values())

    def announce(self) -> bool:
        """Whether a call began to wait since the last time this was asked and still waits (one
        answered meanwhile, e.g. asked and answered through another channel, is no news)."""
        news = any(call_id in self._waiting for call_id in self._unannounced)
        self._unannounced.clear()
        return news

    async def seek(self, call_id: str, tool_name: str, arguments: Any) -> None:
        """Return once the call may run; raise `ToolCallRejected` (the script's text) if not."""
        call = ToolCall(self._cell_id, call_id, tool_name, arguments)
        timeout_s = self._settings.timeout_s
        try:
            async with asyncio.timeout(timeout_s):
                decision = await self._decide(call)
                if decision == "ask":
                    reason = await self._wait(call)
                    if reason is not None:
                        raise ToolCallRejected(reason)
        except TimeoutError:
            self._answered[call_id] = "timed out"
            raise ToolCallRejected(
                f"No approval for this call to tools.{tool_name} arrived within {timeout_s:g} s, "
                "so it was not run."
            ) from None

    async def _decide(self, call: ToolCall) -> ApprovalDecision:
        policy = self._settings.policy
        if policy is None:
            return "ask"
        try:
            decision = policy(call)
            if inspect.isawaitable(decision):
                decision = await decision
        except ToolError as exc:
            raise ToolCallRejected(str(exc)) from None
        except Exception as exc:
            raise ToolCallRejected(
                f"The approval policy failed ({type(exc).__name__}: {exc}), so this call to "
                f"tools.{call.tool_name} was not run."
            ) from None
        if decision is True or decision == "ask":
            return decision
        if decision is False:
            raise ToolCallRejected(
                f"The approval policy rejected this call to tools.{call.tool_name}; it was not run."
            )
        raise ToolCallRejected(
            f"The approval policy answered {decision!r} (expected True, False or \"ask\"), so this call to "
            f"tools.{call.tool_name} was not run."
        )

    async def _wait(self, call: ToolCall) -> str | None:
        """Wait for the host: None when approved, else the rejection text."""
        future: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        pending = PendingApproval(call.cell_id, call.call_id, call.tool_name, call.arguments)
        self._waiting[call.call_id] = (pending, future)
        self._unannounced.add(call.call_id)
        self._on_pending()
        try:
            return await future
        finally:
            self._waiting.pop(call.call_id, None)
            if not future.done() or future.cancelled():
                self._answered.setdefault(call.call_id, "cancelled")

    def answer(self, call_id: str, *, approved: bool, reason: str | None = None) -> None:
        """Approve the waiting call, or reject it with `reason` (the text its promise rejects with).

        Raises:
            UsageError: no call `call_id` of this cell waits (unknown, or answered already).
        """
        entry = self._waiting.get(call_id)
        if entry is None or entry[1].done():
            raise UsageError(self._not_waiting(call_id))
        pending, future = entry
        del self._waiting[call_id]
        if approved:
            self._answered[call_id] = "approved"
            future.set_result(None)
        else:
            self._answered[call_id] = "rejected"
            future.set_result(reason or _host_rejected(pending.tool_name))

    def _not_waiting(self, call_id: str) -> str:
        answered = self._answered.get(call_id)
        if answered is not None:
            return (
                f"call {call_id} of exec cell {self._cell_id} is not waiting for approval: "
                f"it was {answered} already"
            )
        waiting = ", ".join(self._waiting) or "none"
        return f"exec cell {self._cell_id} has no call {call_id} waiting for approval (waiting: {waiting})"


def _host_rejected(tool_name: str) -> str:
    return f"The host rejected this call to tools.{tool_name}; it was not run."
