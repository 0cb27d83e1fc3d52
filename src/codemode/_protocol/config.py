"""Every session default, and the two option groups a session takes: `Limits` and `Defaults`.

One home for these numbers, so the engine, the session and every model-facing text (the exec
and wait descriptions, each API's tool specs) quote the same values: the session's own.

Invariant: imports nothing of codemode but `codemode.errors` (a leaf too), so any layer may
depend on it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal, TypeAlias

from codemode.errors import UsageError

__all__ = [
    "DEFAULT_APPROVAL_TIMEOUT_S",
    "DEFAULT_DEFAULTS",
    "DEFAULT_DESCRIPTION_BUDGET_TOKENS",
    "DEFAULT_EXEC_YIELD_TIME_MS",
    "DEFAULT_HEAP_LIMIT_BYTES",
    "DEFAULT_ISOLATION",
    "DEFAULT_LIMITS",
    "DEFAULT_MAX_OUTPUT_TOKENS",
    "DEFAULT_MAX_SESSIONS",
    "DEFAULT_SESSION_IDLE_TIMEOUT_S",
    "DEFAULT_WAIT_YIELD_TIME_MS",
    "MIB",
    "Defaults",
    "Isolation",
    "Limits",
]

MIB = 1024 * 1024

DEFAULT_EXEC_YIELD_TIME_MS = 10_000
"""How long `exec` waits for the script before yielding (the reference's default)."""
DEFAULT_WAIT_YIELD_TIME_MS = 10_000
"""How long `wait` waits for more output before yielding again (the reference's default)."""
DEFAULT_MAX_OUTPUT_TOKENS = 10_000
"""The token budget of one observation's output (the reference's default)."""
DEFAULT_HEAP_LIMIT_BYTES = 256 * MIB
"""V8 heap limit of each cell."""
DEFAULT_APPROVAL_TIMEOUT_S = 600.0
"""Seconds a call may wait for its approval (the policy's answer included) before it is rejected."""
DEFAULT_DESCRIPTION_BUDGET_TOKENS = 2_000
"""Estimated tokens the nested tools' declarations may take in the exec description."""
DEFAULT_SESSION_IDLE_TIMEOUT_S = 600.0
"""`codemode mcp` over HTTP: a session with no request in flight (and no open GET stream) for
this long is ended (here, not in `mcp_server`, so the CLI quotes it without the server stack)."""
DEFAULT_MAX_SESSIONS = 1000
"""`codemode mcp` over HTTP: open MCP sessions a server takes before it refuses new ones."""

Isolation: TypeAlias = Literal["process", "in-process"]
DEFAULT_ISOLATION: Isolation = "process"


@dataclass(frozen=True)
class Limits:
    """What model-written scripts of one session may use (`CodeMode(limits=Limits(...))`).

    Each limit has a default meant to be invisible to reasonable scripts; hitting one never
    harms the host or other cells, and the model is told which limit it hit.

    Attributes:
        heap_limit_bytes: V8 heap limit of each cell (256 MiB); 0 disables it (not recommended).
            A cell over it fails with a script error naming the limit.
        cell_time_limit_ms: wall-clock budget of each cell from its start; None (default) means
            unlimited. A cell still running then is stopped and fails saying why.
        max_concurrent_cells: cells that may be open at once (64: running, or finished but not
            yet observed); further execs are refused until one is collected or terminated.
        max_tool_calls_per_cell: nested tool calls one cell may make in total (10 000); each
            call beyond it rejects with an explanation.
        max_source_bytes: UTF-8 size of one exec's source, pragma line included (1 MiB).
        max_buffered_output_chars: characters of output (text, image and audio URLs) a cell
            may buffer between two observations (32 Mi); further items are dropped with a notice
            (so is output past 64 Mi characters waiting inside the engine while a script runs
            without pausing); the cell runs on.
        max_stored_bytes: characters of keys plus JSON texts of every stored value together
            (16 MiB; every cell gets them, so they must stay small); a `store` beyond it throws.
        max_tool_threads: threads the session's sync tools may use at once (16).
        approval_timeout_s: seconds a call may wait for approval before it is rejected (600;
            None: no limit).
        max_journal_bytes: characters one cell's journal may hold (16 MiB: the program, stored
            values it started with, tool results, timer and clock records). A cell past it runs
            on, but is not replayed if its engine worker or host stops (with a store it says it
            can no longer be made durable).
    """

    heap_limit_bytes: int = DEFAULT_HEAP_LIMIT_BYTES
    cell_time_limit_ms: int | None = None
    max_concurrent_cells: int = 64
    max_tool_calls_per_cell: int = 10_000
    max_source_bytes: int = 1 * MIB
    max_buffered_output_chars: int = 32 * MIB
    max_stored_bytes: int = 16 * MIB
    max_tool_threads: int = 16
    approval_timeout_s: float | None = DEFAULT_APPROVAL_TIMEOUT_S
    max_journal_bytes: int = 16 * MIB

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "approval_timeout_s" or (value is None and f.name == "cell_time_limit_ms"):
                continue
            _require_count(f.name, value)
        if self.max_concurrent_cells < 1:
            raise UsageError("`max_concurrent_cells` must be at least 1")
        if self.max_tool_threads < 1:
            raise UsageError("`max_tool_threads` must be at least 1")
        if self.cell_time_limit_ms is not None and self.cell_time_limit_ms < 1:
            raise UsageError("`cell_time_limit_ms` must be at least 1 (or None for no limit)")
        timeout = self.approval_timeout_s
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0):
            raise UsageError(
                f"`approval_timeout_s` must be a positive number of seconds (or None), got {timeout!r}"
            )


@dataclass(frozen=True)
class Defaults:
    """What an exec or wait uses when the model does not say (`CodeMode(defaults=Defaults(...))`).

    The exec and wait descriptions and every API's tool specs quote these values to the model.

    Attributes:
        exec_yield_time_ms: how long `exec` waits before yielding (a pragma may override).
        wait_yield_time_ms: how long `wait` waits before yielding again.
        max_output_tokens: the token budget of one exec's or wait's output.
        max_yield_time_ms: optional cap on every yield time, the model's included (the cell
            keeps running); None: no cap.
    """

    exec_yield_time_ms: int = DEFAULT_EXEC_YIELD_TIME_MS
    wait_yield_time_ms: int = DEFAULT_WAIT_YIELD_TIME_MS
    max_output_tokens: int = DEFAULT_MAX_OUTPUT_TOKENS
    max_yield_time_ms: int | None = None

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None and f.name == "max_yield_time_ms":
                continue
            _require_count(f.name, value)


def _require_count(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise UsageError(f"`{name}` must be a non-negative integer, got {value!r}")


DEFAULT_LIMITS = Limits()
DEFAULT_DEFAULTS = Defaults()
