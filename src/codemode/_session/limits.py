"""What the model reads when a script reaches one of the session's limits.

The limits themselves are `codemode.Limits` (`_protocol/config.py`), one `CodeMode(limits=...)`
argument; their defaults are meant to be invisible to reasonable scripts. Hitting one never
harms the host or other cells, keeps the output already produced, and tells the model which
limit it hit and what to do.

| `Limits` field              | default   | when exceeded                                              |
|-----------------------------|-----------|------------------------------------------------------------|
| `heap_limit_bytes`          | 256 MiB   | the cell fails: `memory_limit_error`                       |
| `cell_time_limit_ms`        | None      | the cell is stopped and fails: `time_limit_error`          |
| `max_concurrent_cells`      | 64        | exec is refused, no cell is created: `concurrency_error`   |
| `max_tool_calls_per_cell`   | 10 000    | that call rejects (catchable): `tool_call_limit_error`     |
| `max_source_bytes`          | 1 MiB     | exec is refused, no cell is created: `source_size_error`   |
| `max_buffered_output_chars` | 32 Mi     | later items are dropped until observed: `output_dropped_notice` |
| `max_stored_bytes`          | 16 MiB    | that `store` throws (catchable): `store_limit_error`       |
|                             |           | (writes that arrive over it: none kept, `stored_writes_refused`) |
| `max_tool_threads`          | 16        | further sync tool calls wait for a thread of the session   |
| `approval_timeout_s`        | 600       | the call waiting for approval is rejected                  |

Invariants:
* Pure: no I/O, imports nothing from codemode but the data leaf.
* Every text names the limit and its value, so the model can adapt instead of retrying blindly.
"""

from __future__ import annotations

from collections.abc import Sequence

from codemode._protocol.config import MIB

__all__ = [
    "concurrency_error",
    "memory_limit_error",
    "output_dropped_notice",
    "source_size_error",
    "store_limit_error",
    "stored_writes_refused",
    "time_limit_error",
    "tool_call_limit_error",
]


def _size(n: int) -> str:
    """Bytes in the unit a reader would pick: `256 MiB`, `1.5 MiB`, `900 KiB`, `12 bytes`."""
    for unit, scale in (("GiB", 1024**3), ("MiB", MIB), ("KiB", 1024)):
        if n >= scale:
            value = n / scale
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{n} bytes"


def _duration(ms: int) -> str:
    if ms % 1000 == 0:
        return f"{ms // 1000} s"
    return f"{ms / 1000:g} s" if ms >= 1000 else f"{ms} ms"


def memory_limit_error(heap_limit_bytes: int) -> str:
    """The script error of a cell whose V8 heap reached the limit."""
    return (
        f"JavaScript memory limit reached (heap limit {_size(heap_limit_bytes)} per cell). "
        "Process the data in smaller pieces, or keep less of it in memory at once."
    )


def time_limit_error(cell_time_limit_ms: int) -> str:
    """The script error of a cell stopped by the wall-clock budget."""
    return (
        f"Time limit reached: the script ran for {_duration(cell_time_limit_ms)} (the wall-clock limit "
        "per cell) and was stopped. Split the work into smaller execs."
    )


def concurrency_error(limit: int, open_cell_ids: Sequence[str]) -> str:
    """Why exec refused to start a cell."""
    shown = ", ".join(open_cell_ids[:20]) + (", ..." if len(open_cell_ids) > 20 else "")
    return (
        f"Too many open exec cells (limit {limit} per session; open: {shown}). Collect a finished cell's "
        "result with `wait`, or stop a running one with `wait` and `terminate: true`, then retry."
    )


def tool_call_limit_error(limit: int) -> str:
    """The rejection of a nested tool call over the per-cell budget."""
    return (
        f"Nested tool call limit reached: this cell already made {limit} tool calls (the limit per cell). "
        "Start a new exec to make more calls."
    )


def source_size_error(size_bytes: int, limit_bytes: int) -> str:
    """Why exec refused an oversized source."""
    return (
        f"exec source is too large: {_size(size_bytes)} (limit {_size(limit_bytes)} per exec). "
        "Send a shorter script; keep large data in tools or `store`, not in the source."
    )


def store_limit_error(limit_bytes: int) -> str:
    """What `store` throws (inside the isolate) when the stored values would outgrow the limit."""
    return (
        f"store: the stored values would exceed {_size(limit_bytes)} (the limit per session). "
        "Store smaller values, or overwrite keys you no longer need with small ones."
    )


def stored_writes_refused(limit_bytes: int) -> str:
    """The script error of a cell whose stored values reached the host over the limit (the
    isolate's own check was bypassed): none of them is kept."""
    return (
        f"store: this cell's stored values would exceed {_size(limit_bytes)} (the limit per session), "
        "so none of them were saved. Store smaller values, or overwrite keys you no longer need with small ones."
    )


def output_dropped_notice(items: int, chars: int, limit: int) -> str:
    """The text item that takes the place of output dropped over the buffer limit."""
    what = "1 output item" if items == 1 else f"{items} output items"
    return (
        f"[output limit reached: {what} ({chars} characters) dropped here; a cell may buffer at most "
        f"{limit} characters of output between two observations, so print less or observe sooner]"
    )
