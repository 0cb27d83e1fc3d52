"""What an observation of a cell produced, as plain data: statuses, output items, `ExecResult`,
and the `notify(...)` texts a session keeps.

Rendering for a model lives in the presentation layer (`codemode._output`, `codemode.formats`:
`codemode.to_model(result, api)`), never here.

Invariant: imports nothing from codemode, so any layer may depend on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypeAlias

from codemode._protocol.calls import PendingApproval, ToolCallRecord
from codemode._protocol.config import DEFAULT_MAX_OUTPUT_TOKENS

__all__ = [
    "AudioItem",
    "ErrorKind",
    "ExecResult",
    "ImageDetail",
    "ImageItem",
    "Notification",
    "OutputItem",
    "Status",
    "TextItem",
]

Status: TypeAlias = Literal["completed", "failed", "running", "terminated", "rejected"]
"""How an observation ended: the cell completed, failed (its script, or the observation: see
`ErrorKind`), is still running (resume with `wait`), was terminated, or the input was rejected
before a cell existed."""

ErrorKind: TypeAlias = Literal["not_found", "busy", "terminating", "shutting_down"]
"""Why an observation failed for a reason other than the script (the reference's error kinds):
no such cell (`exec cell <id> not found`), another `wait` already observes it, it is already
being terminated, or the session is shutting down."""

ImageDetail: TypeAlias = Literal["auto", "low", "high", "original"]


@dataclass(frozen=True, slots=True)
class TextItem:
    """A text item produced by `text(...)` (or an error/header text added by the host)."""

    text: str
    type: Literal["text"] = "text"


@dataclass(frozen=True, slots=True)
class ImageItem:
    """An image produced by `image(...)`: always a `data:` URL; detail defaults to "high"."""

    image_url: str
    detail: ImageDetail | None = "high"
    type: Literal["image"] = "image"


@dataclass(frozen=True, slots=True)
class AudioItem:
    """An audio clip produced by `audio(...)`: always a `data:` URL."""

    audio_url: str
    type: Literal["audio"] = "audio"


OutputItem: TypeAlias = TextItem | ImageItem | AudioItem


@dataclass(frozen=True)
class ExecResult:
    """One observation of a cell (render it for a model with `codemode.to_model(result, api)`).

    Attributes:
        status: "completed", "failed", "running" (yielded; resume with `wait`), "terminated",
            or "rejected" (the exec input was refused before a cell existed: too large, too
            many open cells, a bad pragma, or the session is shutting down).
        cell_id: the cell's id (for a `wait`, the id asked for); None only when "rejected".
        items: the text/image/audio items produced since the last observation (no header,
            no error item, not truncated).
        error: the script error text, or why the input or observation was refused, when
            status is "failed" or "rejected".
        error_kind: why the observation failed when the script is not the reason (see
            `ErrorKind`); None for script errors, successes and most rejected inputs.
        wall_time_s: how long this exec/wait call took.
        max_output_tokens: the token budget the rendered output is truncated to.
        tool_calls: the nested calls that ended since the cell's previous observation.
        pending_approvals: the cell's calls waiting for `CodeMode.approve`/`reject` (only on a
            "running" result); the model reads one `Waiting for approval: ...` line for each.
    """

    status: Status
    cell_id: str | None
    items: tuple[OutputItem, ...] = ()
    error: str | None = None
    error_kind: ErrorKind | None = None
    wall_time_s: float = 0.0
    max_output_tokens: int = DEFAULT_MAX_OUTPUT_TOKENS
    tool_calls: tuple[ToolCallRecord, ...] = ()
    pending_approvals: tuple[PendingApproval, ...] = ()

    def __post_init__(self) -> None:
        if (self.cell_id is None) != (self.status == "rejected"):
            raise ValueError(f"a {self.status!r} result must {'not ' if self.status == 'rejected' else ''}name a cell")

    @property
    def ok(self) -> bool:
        """True only for a completed cell: not failed, rejected, still running or terminated."""
        return self.status == "completed"


@dataclass(frozen=True)
class Notification:
    """A `notify(...)` text, with the cell that sent it."""

    cell_id: str
    text: str
