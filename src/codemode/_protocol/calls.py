"""Plain data about nested tool calls: what an approval policy sees, the approvals a cell waits
for, and the trace record of every call.

Invariant: imports nothing from codemode, so any layer may depend on it.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

__all__ = [
    "APPROVAL_LINE_ARGUMENT_CHARS",
    "TRACED_ARGUMENT_CHARS",
    "TRACED_ERROR_CHARS",
    "ApprovalDecision",
    "ApprovalPolicy",
    "PendingApproval",
    "ToolCall",
    "ToolCallOutcome",
    "ToolCallRecord",
    "arguments_json",
    "shorten",
]

ToolCallOutcome: TypeAlias = Literal["ok", "error", "rejected", "cancelled"]

TRACED_ARGUMENT_CHARS = 1000
"""Arguments JSON longer than this is shortened in trace records and span attributes."""

TRACED_ERROR_CHARS = 2000
"""Error texts longer than this are shortened in trace records and span statuses (a schema error
quotes the offending value, which may be megabytes)."""

APPROVAL_LINE_ARGUMENT_CHARS = 200
"""Arguments JSON longer than this is shortened in the model-facing approval lines."""


def shorten(text: str, limit: int) -> str:
    """`text`, or its first `limit` characters and a note of how long it was."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text)} characters)"


def arguments_json(arguments: Any) -> str:
    """Compact JSON text of validated arguments, as the script would have written them."""
    return json.dumps(arguments, ensure_ascii=False, separators=(",", ":"), default=str)


@dataclass(frozen=True)
class ToolCall:
    """A nested call of a tool that requires approval, as the approval policy sees it.

    Attributes:
        cell_id: the exec cell making the call.
        call_id: the call's id within the cell (what `approve`/`reject` take).
        tool_name: the name the script called, `tools.<tool_name>`.
        arguments: the validated arguments (a dict, or a string for freeform tools).
    """

    cell_id: str
    call_id: str
    tool_name: str
    arguments: Any


ApprovalDecision: TypeAlias = bool | Literal["ask"]
"""An approval policy's answer: run the call (True), reject it (False), or ask the host ("ask")."""

ApprovalPolicy: TypeAlias = Callable[[ToolCall], ApprovalDecision | Awaitable[ApprovalDecision]]
"""`CodeMode(approve=...)`: decides the calls of tools that require approval (sync or async)."""


@dataclass(frozen=True)
class PendingApproval:
    """A nested call paused until the host approves or rejects it (`CodeMode.approve`/`reject`)."""

    cell_id: str
    call_id: str
    tool_name: str
    arguments: Any

    def describe(self) -> str:
        """The call as the model reads it: `call 3 tools.delete_file({"path":"/tmp/x"})`."""
        shown = shorten(arguments_json(self.arguments), APPROVAL_LINE_ARGUMENT_CHARS)
        return f"call {self.call_id} tools.{self.tool_name}({shown})"


@dataclass(frozen=True)
class ToolCallRecord:
    """What one nested call did, once it ended.

    Attributes:
        cell_id: the exec cell that made the call.
        call_id: the call's id within the cell.
        tool_name: the name the script called, `tools.<tool_name>`.
        arguments: the arguments' JSON text as the script sent it, shortened past
            `TRACED_ARGUMENT_CHARS` ("" when the script passed none).
        outcome: "ok", "error" (the tool or its arguments failed), "rejected" (not approved) or
            "cancelled" (the cell ended while the call ran or waited).
        error: the rejection text the script got, for "error" and "rejected", shortened past
            `TRACED_ERROR_CHARS`.
        started_at: when the script made the call (Unix time, seconds).
        duration_s: from the call to its end, approval waits included.
    """

    cell_id: str
    call_id: str
    tool_name: str
    arguments: str
    outcome: ToolCallOutcome
    error: str | None
    started_at: float
    duration_s: float
