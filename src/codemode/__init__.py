"""codemode: "code mode" for LLM agents.

The model writes a short JavaScript program; it runs in a fresh V8 isolate (in a supervised
engine process by default), calls your Python and MCP tools as `await tools.name(args)`, and
only what it prints with `text(...)`/`image(...)` goes back to the model. Layout:

    _source, _imports      model input -> program (pragma, module syntax)
    _session/              sessions and cells (engine-independent lifecycle)
    _engine/               the engine interface; V8 in process (miniracer/) and in
                           supervised worker processes (process/)
    _output, formats/      ExecResult -> what each model API receives
    _describe/             tool names, JSON Schema -> TypeScript, exec/wait descriptions
    tools/                 Tool, Python functions as tools, MCP servers as tools
    engines                the engines a session can use, and the shared defaults
    cli, mcp_server        thin adapters over the public API

The public names are imported on first use, so an engine worker process (which imports
`codemode._engine`) does not load the session layer.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from codemode._calls import ApprovalDecision, ApprovalPolicy, PendingApproval, ToolCall, ToolCallRecord
    from codemode._result import ExecResult
    from codemode._session.session import CodeMode, Notification
    from codemode._sync import SyncCodeMode
    from codemode._types import AudioItem, ImageItem, OutputItem, TextItem
    from codemode.errors import CodeModeError, ToolError, UsageError
    from codemode.tools import Tool

_PUBLIC = {
    "ApprovalDecision": "codemode._calls",
    "ApprovalPolicy": "codemode._calls",
    "AudioItem": "codemode._types",
    "CodeMode": "codemode._session.session",
    "CodeModeError": "codemode.errors",
    "ExecResult": "codemode._result",
    "ImageItem": "codemode._types",
    "Notification": "codemode._session.session",
    "OutputItem": "codemode._types",
    "PendingApproval": "codemode._calls",
    "SyncCodeMode": "codemode._sync",
    "TextItem": "codemode._types",
    "Tool": "codemode.tools",
    "ToolCall": "codemode._calls",
    "ToolCallRecord": "codemode._calls",
    "ToolError": "codemode.errors",
    "UsageError": "codemode.errors",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'codemode' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
