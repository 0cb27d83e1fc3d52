"""What the model reads for one observation: header, token-budget truncation, error item.

Rendering follows the reference adapter (spec 2.2, 2.4, LATEST):
1. a failed result's error becomes a trailing `Script error:\\n<error>` text item;
2. the items are truncated to the token budget (the header is never counted);
3. the `<status>\\nWall time <s.s> seconds\\nOutput:\\n` header item is prepended;
4. one `Waiting for approval: ...` line per call waiting for the host follows: the first one
   always (its arguments are shortened, so it is short), the next ones while they fit in the
   token budget the output left; the rest are summarised in one line, `N more calls wait for
   approval`.
Rejected input, and a wait refused for the cell's state (another observer, already terminating)
or because the session is shutting down, is just its message, with no header (plain error text,
as the reference sends it). A missing cell is a failed result with a header.

Invariants:
* Tokens are estimated as ceil(UTF-8 bytes / 4) everywhere; a byte budget is tokens * 4.
* Text is measured and cut as UTF-8, always at character boundaries. Lone surrogates (which
  JavaScript strings may carry) count 3 bytes, like the U+FFFD each becomes in what
  `model_items` returns, so every format and adapter can send it over a UTF-8 wire.
* Pure: no I/O; the only codemode imports at run time are from `codemode._protocol`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from codemode._protocol.text import safe_item
from codemode._protocol.tokens import BYTES_PER_TOKEN, approx_tokens, tokens_for_bytes
from codemode._protocol.types import AudioItem, ErrorKind, ImageItem, OutputItem, Status, TextItem

if TYPE_CHECKING:
    from codemode._protocol.calls import PendingApproval
    from codemode._protocol.types import ExecResult

__all__ = ["approx_tokens", "header_text", "model_items", "truncate_items"]

_PLAIN_ERROR_KINDS: frozenset[ErrorKind] = frozenset({"busy", "terminating", "shutting_down"})


def model_items(result: ExecResult) -> list[OutputItem]:
    """The items the model receives for `result`, in order (spec 2.2 steps 1-3), then the
    calls waiting for approval, if any."""
    if result.cell_id is None or result.error_kind in _PLAIN_ERROR_KINDS:
        return [safe_item(TextItem(result.error or ""))]
    items = list(result.items)
    if result.status == "failed" and result.error is not None:
        items.append(TextItem(f"Script error:\n{result.error}"))
    header = TextItem(header_text(result.status, result.cell_id, result.wall_time_s))
    output = truncate_items(items, result.max_output_tokens)
    shown: list[OutputItem] = [header, *output]
    if result.pending_approvals:
        remaining = max(0, result.max_output_tokens - _items_tokens(output))
        shown.append(TextItem(_approval_lines(result.pending_approvals, remaining)))
    return [safe_item(item) for item in shown]


def _approval_lines(pending: Sequence[PendingApproval], max_tokens: int) -> str:
    """The first call waiting for approval, the next ones while they fit in `max_tokens`, then a
    count of the rest (so thousands of waiting calls cost the model a few lines)."""
    lines: list[str] = []
    remaining = max_tokens
    for call in pending:
        line = f"Waiting for approval: {call.describe()}"
        cost = approx_tokens(line + "\n")
        if lines and cost > remaining:
            break
        lines.append(line)
        remaining = max(0, remaining - cost)
    left = len(pending) - len(lines)
    if left:
        lines.append(f"{left} more call waits for approval" if left == 1 else f"{left} more calls wait for approval")
    return "\n".join(lines)


def _items_tokens(items: Sequence[OutputItem]) -> int:
    """Estimated tokens of items as `truncate_items` charges them (images are free)."""
    total = 0
    for item in items:
        if isinstance(item, TextItem):
            total += approx_tokens(item.text)
        elif isinstance(item, AudioItem):
            total += approx_tokens(item.audio_url)
    return total


def header_text(status: Status, cell_id: str, wall_time_s: float) -> str:
    """The status header, e.g. `Script completed\\nWall time 0.0 seconds\\nOutput:\\n`.

    The wall time is rounded half away from zero to one decimal, as Rust's `f32::round`
    does (0.25 -> 0.3, where Python's `f"{0.25:.1f}"` would give 0.2).
    """
    match status:
        case "running":
            line = f"Script running with cell ID {cell_id}"
        case "terminated":
            line = "Script terminated"
        case "completed":
            line = "Script completed"
        case "failed" | "rejected":
            line = "Script failed"
    tenths = math.floor(max(wall_time_s, 0.0) * 10 + 0.5)
    return f"{line}\nWall time {tenths // 10}.{tenths % 10} seconds\nOutput:\n"


def truncate_items(items: Sequence[OutputItem], max_tokens: int) -> list[OutputItem]:
    """Fit `items` into `max_tokens` estimated tokens (spec 2.4).

    All-text output that fits is returned unchanged; otherwise it collapses into one text
    item with a `Warning:` preamble and a middle-truncated body. Output with images or audio
    is walked item by item instead, so media keep their places.
    """
    texts = [item.text for item in items if isinstance(item, TextItem)]
    if len(texts) < len(items):
        return _truncate_mixed(items, max_tokens)
    combined = _join_like_reference(texts)
    data = _utf8(combined)
    budget = max_tokens * BYTES_PER_TOKEN
    if len(data) <= budget:
        return list(items)
    return [
        TextItem(
            f"Warning: truncated output (original token count: {tokens_for_bytes(len(data))})\n"
            f"Total output lines: {_count_lines(combined)}\n\n"
            f"{_truncate_middle(data, budget)}"
        )
    ]


def _truncate_mixed(items: Sequence[OutputItem], max_tokens: int) -> list[OutputItem]:
    out: list[OutputItem] = []
    remaining = max_tokens
    omitted_text = 0
    omitted_audio = 0
    for item in items:
        if isinstance(item, ImageItem):
            out.append(item)  # images are free and always kept
        elif isinstance(item, AudioItem):
            # The reference estimates audio from its decoded duration when it can, and
            # falls back to the data URL's size; we always use the fallback.
            cost = approx_tokens(item.audio_url)
            if cost <= remaining:
                out.append(item)
                remaining -= cost
            else:
                omitted_audio += 1
        elif not item.text:
            continue  # empty text carries nothing; it is neither kept nor counted
        elif remaining == 0:
            omitted_text += 1
        else:
            cost = approx_tokens(item.text)
            if cost <= remaining:
                out.append(item)
                remaining -= cost
            else:
                budget = remaining * BYTES_PER_TOKEN
                out.append(TextItem(_truncate_middle(_utf8(item.text), budget)))
                remaining = 0
    if omitted_text:
        out.append(TextItem(f"[omitted {omitted_text} text items ...]"))
    if omitted_audio:
        out.append(TextItem(f"[omitted {omitted_audio} audio items ...]"))
    return out


def _truncate_middle(data: bytes, budget: int) -> str:
    """Keep about `budget` bytes of `data` (longer than `budget`): head, marker, tail.

    The head is the first floor(budget/2) bytes cut back to a character boundary; the tail
    starts at the first character boundary at or after len - (budget - head budget).
    """
    head_budget = budget // 2
    head_end = head_budget
    while head_end > 0 and _is_continuation(data[head_end]):
        head_end -= 1
    tail_start = len(data) - (budget - head_budget)
    while tail_start < len(data) and _is_continuation(data[tail_start]):
        tail_start += 1
    removed_tokens = tokens_for_bytes(len(data) - budget)
    return (
        f"{_from_utf8(data[:head_end])}…{removed_tokens} tokens truncated…"
        f"{_from_utf8(data[tail_start:])}"
    )


def _join_like_reference(texts: list[str]) -> str:
    """`texts` joined by `\\n` as the reference appends them: no separator while still empty.

    So leading empty texts vanish (["", "", "x"] -> "x") and later ones each add a newline.
    One `join` keeps this linear; appending to a growing string would copy it every time.
    """
    first = next((i for i, text in enumerate(texts) if text), len(texts))
    return "\n".join(texts[first:])


def _count_lines(text: str) -> int:
    """Lines as Rust's `str::lines` counts them: split on `\\n` only, no trailing empty line."""
    return text.count("\n") + (1 if text and not text.endswith("\n") else 0)


def _is_continuation(byte: int) -> bool:
    return byte & 0xC0 == 0x80


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def _from_utf8(data: bytes) -> str:
    return data.decode("utf-8", "surrogatepass")
