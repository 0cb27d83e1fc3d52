"""The public exception tree.

    CodeModeError
    ├── UsageError          the host called the API wrongly (bad config, bad tool definition)
    ├── SessionClosedError  the session was closed; later calls fail
    └── ToolError           raised by a tool on purpose; its message is what the script sees

What the *model* should see (script errors, unknown cells, termination) is never raised: it is
returned as an `ExecResult`. Exceptions are for host-side problems only.
"""

from __future__ import annotations


class CodeModeError(Exception):
    """Base class of every codemode exception."""


class UsageError(CodeModeError):
    """The host used the API wrongly; the message says what to change."""


class SessionClosedError(CodeModeError):
    """The session was closed (`code mode session is shutting down`)."""


class ToolError(CodeModeError):
    """A tool failed in a way the script should see: the message is passed into JavaScript."""
