"""The public exception tree.

    CodeModeError
    ├── UsageError          the host called the API wrongly (bad config, bad tool definition,
    │                       a session used before start, after a failed start or after close)
    ├── ToolError           raised by a tool on purpose; its message is what the script sees
    ├── EngineError         the JavaScript engine could not start or stopped (cause chained)
    └── McpServerError      an MCP server could not be started or reached (codemode.tools.mcp)

What the *model* should see (script errors, unknown cells, termination, a closed session) is
never raised: it is returned as an `ExecResult`. Exceptions are for host-side problems only.
"""

from __future__ import annotations

__all__ = ["CodeModeError", "EngineError", "ToolError", "UsageError"]


class CodeModeError(Exception):
    """Base class of every codemode exception."""


class UsageError(CodeModeError):
    """The host used the API wrongly; the message says what to change."""


class ToolError(CodeModeError):
    """A tool failed in a way the script should see: the message is passed into JavaScript."""


class EngineError(CodeModeError):
    """The JavaScript engine (a worker process, or V8 in this process) failed to start or died;
    the message says what happened and the cause is chained."""
