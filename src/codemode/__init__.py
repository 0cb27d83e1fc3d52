"""codemode: "code mode" for LLM agents.

The model writes a short JavaScript program; it runs in a fresh V8 isolate (in a supervised
engine process by default), calls your Python and MCP tools as `await tools.name(args)`, and
only what it prints with `text(...)`/`image(...)` goes back to the model. Layout:

    _protocol/             the data leaf: results, output items, call records, Limits, Defaults
    _source, _imports      model input -> program (pragma, module syntax)
    _typescript/           TypeScript in scripts: the pinned strippers' bundle (the engine runs it)
    _session/              sessions and cells (engine-independent lifecycle)
    _engine/               the engine interface; V8 in process (miniracer/) and in
                           supervised worker processes (process/)
    _output, formats/      ExecResult -> what each model API receives (`to_model`)
    _describe/             tool names, JSON Schema -> TypeScript, exec/wait descriptions
    tools/                 Tool, Python functions as tools, MCP servers as tools
    engines                the engines a session can use, and the shared defaults
    cli, mcp_server        thin adapters over the public API

The public names are imported on first use (anyio's pattern), so an engine worker process
(which imports `codemode._engine`) does not load the session layer; type checkers see them
through the `TYPE_CHECKING` imports.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from codemode._protocol.calls import (
        ApprovalDecision,
        ApprovalPolicy,
        PendingApproval,
        ToolCall,
        ToolCallRecord,
    )
    from codemode._protocol.config import Defaults, Limits
    from codemode._protocol.lifecycle import State
    from codemode._protocol.types import (
        AudioItem,
        ErrorKind,
        ExecResult,
        ImageItem,
        Notification,
        OutputItem,
        Status,
        TextItem,
    )
    from codemode._session.options import CodeModeOptions
    from codemode._session.session import CodeMode
    from codemode._session.tool_calls import approve_running_call
    from codemode._sync import SyncCodeMode
    from codemode.errors import CodeModeError, EngineError, ToolError, UsageError
    from codemode.formats import to_model
    from codemode.tools import Tool

__all__ = (
    "ApprovalDecision",
    "ApprovalPolicy",
    "AudioItem",
    "CodeMode",
    "CodeModeError",
    "CodeModeOptions",
    "Defaults",
    "EngineError",
    "ErrorKind",
    "ExecResult",
    "ImageItem",
    "Limits",
    "Notification",
    "OutputItem",
    "PendingApproval",
    "State",
    "Status",
    "SyncCodeMode",
    "TextItem",
    "Tool",
    "ToolCall",
    "ToolCallRecord",
    "ToolError",
    "UsageError",
    "approve_running_call",
    "to_model",
)

_HOMES = {
    "ApprovalDecision": "codemode._protocol.calls",
    "ApprovalPolicy": "codemode._protocol.calls",
    "AudioItem": "codemode._protocol.types",
    "CodeMode": "codemode._session.session",
    "CodeModeError": "codemode.errors",
    "CodeModeOptions": "codemode._session.options",
    "Defaults": "codemode._protocol.config",
    "EngineError": "codemode.errors",
    "ErrorKind": "codemode._protocol.types",
    "ExecResult": "codemode._protocol.types",
    "ImageItem": "codemode._protocol.types",
    "Limits": "codemode._protocol.config",
    "Notification": "codemode._protocol.types",
    "OutputItem": "codemode._protocol.types",
    "PendingApproval": "codemode._protocol.calls",
    "State": "codemode._protocol.lifecycle",
    "Status": "codemode._protocol.types",
    "SyncCodeMode": "codemode._sync",
    "TextItem": "codemode._protocol.types",
    "Tool": "codemode.tools",
    "ToolCall": "codemode._protocol.calls",
    "ToolCallRecord": "codemode._protocol.calls",
    "ToolError": "codemode.errors",
    "UsageError": "codemode.errors",
    "approve_running_call": "codemode._session.tool_calls",
    "to_model": "codemode.formats",
}


def __getattr__(name: str) -> object:
    module = _HOMES.get(name)
    if module is None:
        raise AttributeError(f"module 'codemode' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
