"""codemode: "code mode" for LLM agents.

The model writes a short JavaScript program; it runs in a fresh V8 isolate inside this process,
calls your Python and MCP tools as `await tools.name(args)`, and only what it prints with
`text(...)`/`image(...)` goes back to the model. Layout:

    _source, _imports      model input -> program (pragma, module syntax)
    _session/              sessions and cells (engine-independent lifecycle)
    _engine/               the engine interface and the mini-racer (V8) adapter
    _output, formats/      ExecResult -> what each model API receives
    _describe/             tool names, JSON Schema -> TypeScript, exec/wait descriptions
    tools/                 Tool, Python functions as tools, MCP servers as tools
    cli, mcp_server        thin adapters over the public API
"""

from codemode._result import ExecResult
from codemode._session.session import CodeMode, Notification
from codemode._sync import SyncCodeMode
from codemode._types import AudioItem, ImageItem, OutputItem, TextItem
from codemode.errors import CodeModeError, ToolError, UsageError
from codemode.tools import Tool

__all__ = [
    "AudioItem",
    "CodeMode",
    "CodeModeError",
    "ExecResult",
    "ImageItem",
    "Notification",
    "OutputItem",
    "SyncCodeMode",
    "TextItem",
    "Tool",
    "ToolError",
    "UsageError",
]
