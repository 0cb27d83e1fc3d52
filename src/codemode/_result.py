"""`ExecResult`: what one `exec` or `wait` observation produced, and its model-facing rendering."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from codemode._calls import PendingApproval, ToolCallRecord
from codemode._types import OutputItem, Status, TextItem

if TYPE_CHECKING:
    from codemode.formats import Api

DEFAULT_MAX_OUTPUT_TOKENS = 10_000


@dataclass(frozen=True)
class ExecResult:
    """One observation of a cell.

    Attributes:
        status: "completed", "failed", "running" (yielded; resume with `wait`) or "terminated".
        cell_id: the cell's id, or None when the input was rejected before a cell existed.
        items: the text/image/audio items produced since the last observation (no header,
            no error item, not truncated).
        error: the script error text (or the rejection message) when status is "failed".
        wall_time_s: how long this exec/wait call took.
        max_output_tokens: the token budget `to_model` truncates the items to.
        tool_calls: the nested calls that ended since the cell's previous observation.
        pending_approvals: the cell's calls waiting for `CodeMode.approve`/`reject` (only on a
            "running" result); the model reads one `Waiting for approval: ...` line for each.
    """

    status: Status
    cell_id: str | None
    items: tuple[OutputItem, ...] = ()
    error: str | None = None
    wall_time_s: float = 0.0
    max_output_tokens: int = DEFAULT_MAX_OUTPUT_TOKENS
    tool_calls: tuple[ToolCallRecord, ...] = ()
    pending_approvals: tuple[PendingApproval, ...] = ()

    @property
    def success(self) -> bool:
        """False only for a failed script (or rejected input), as the reference reports it."""
        return self.status != "failed"

    def model_items(self) -> list[OutputItem]:
        """The items the model receives: header, items, error item, truncated (spec 2.2), then
        the calls waiting for approval, if any (never truncated away)."""
        from codemode._output import model_items

        items = model_items(self)
        if self.pending_approvals:
            lines = (f"Waiting for approval: {pending.describe()}" for pending in self.pending_approvals)
            items.append(TextItem("\n".join(lines)))
        return items

    def to_model(self, api: Api = "responses") -> Any:
        """The tool output in the given API's format (default: the OpenAI Responses API)."""
        from codemode.formats import to_model

        return to_model(self, api)
