"""`CodeModeOptions`: every `CodeMode` keyword as one typed dict, for the wrappers that make
sessions (SyncCodeMode, the MCP server entry points, the adapters, the CLI).

Wrappers take `**options: Unpack[CodeModeOptions]` and call `check_options` when they are
built, so a misspelt keyword fails there, not when the first client arrives.
"""

from __future__ import annotations

import difflib
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias, TypedDict

from codemode.errors import UsageError

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

    from codemode._engine.base import Engine
    from codemode._protocol.calls import ApprovalPolicy
    from codemode._protocol.config import Defaults, Isolation, Limits
    from codemode.store import Store

__all__ = ["CodeModeOptions", "NotifyCallback", "check_options"]

NotifyCallback: TypeAlias = Callable[[str, str], Awaitable[None] | None]
"""`CodeMode(on_notify=...)`: called with (cell_id, text) for every `notify(...)`; may be async."""


class CodeModeOptions(TypedDict, total=False):
    """The keyword arguments of `CodeMode` after `tools` (see `CodeMode` for each one)."""

    mcp_servers: Mapping[str, Any] | str | Path | None
    openapi: Mapping[str, Any] | None
    limits: Limits
    defaults: Defaults
    description_budget_tokens: int | None
    on_notify: NotifyCallback | None
    isolation: Isolation | None
    engine: Engine | None
    approve: ApprovalPolicy | None
    tracer_provider: TracerProvider | None
    store: str | Store | None
    session_id: str | None


def check_options(options: Mapping[str, object]) -> None:
    """Raise `UsageError` naming each key that is no `CodeMode` keyword (and the likely one)."""
    known = CodeModeOptions.__optional_keys__
    unknown = [key for key in options if key not in known]
    if not unknown:
        return
    problems: list[str] = []
    for key in unknown:
        close = difflib.get_close_matches(key, sorted(known), n=1)
        problems.append(f"`{key}`" + (f" (did you mean `{close[0]}`?)" if close else ""))
    raise UsageError(
        f"unknown CodeMode option {', '.join(problems)}; the options are: {', '.join(sorted(known))}"
    )
