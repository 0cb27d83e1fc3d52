"""The one lifecycle of everything that is started and closed: sessions and tool sources.

    NEW -> STARTING -> OPEN -> CLOSING -> CLOSED
                   \\-> FAILED -> CLOSING -> CLOSED     (NEW -> CLOSED when closed unstarted)

One way only: nothing reopens. A refused transition is a host mistake, so each one has its own
message here (httpx's `ClientState` is the model); the owner raises it as a `UsageError` (this
leaf imports nothing of codemode, not even `errors`).
"""

from __future__ import annotations

import enum

__all__ = ["State", "start_refusal", "use_refusal"]


class State(enum.Enum):
    """Where a session or tool source is in its one-way lifecycle."""

    NEW = "new"
    STARTING = "starting"
    OPEN = "open"
    FAILED = "failed"
    CLOSING = "closing"
    CLOSED = "closed"


def start_refusal(state: State, what: str, cause: BaseException | None = None) -> str | None:
    """Why `what` (e.g. "this McpToolset") may not start in `state`; None when it may (NEW).

    `cause` is the error of a failed start, named in the FAILED message.
    """
    match state:
        case State.NEW:
            return None
        case State.STARTING | State.OPEN:
            return f"{what} can be started only once"
        case State.FAILED:
            return _failed(what, cause)
        case State.CLOSING | State.CLOSED:
            return f"Cannot start {what}: it was closed; create a new one"


def use_refusal(state: State, what: str, cause: BaseException | None = None) -> str | None:
    """Why `what` may not be used in `state`; None when it may (OPEN)."""
    match state:
        case State.OPEN:
            return None
        case State.NEW | State.STARTING:
            return f"{what} is not started: call `start()` first (or use `async with`)"
        case State.FAILED:
            return _failed(what, cause)
        case State.CLOSING | State.CLOSED:
            return f"{what} was closed; create a new one"


def _failed(what: str, cause: BaseException | None) -> str:
    reason = f": {type(cause).__name__}: {cause}" if cause is not None else ""
    return f"{what} failed to start{reason}; create a new one"
