"""The public exception tree.

    CodeModeError
    ├── UsageError          the host called the API wrongly (bad config, bad tool definition)
    └── ToolError           raised by a tool on purpose; its message is what the script sees

What the *model* should see (script errors, unknown cells, termination, a closed session) is
never raised: it is returned as an `ExecResult`. Exceptions are for host-side problems only.
"""

from __future__ import annotations


class CodeModeError(Exception):
    """Base class of every codemode exception."""


class UsageError(CodeModeError):
    """The host used the API wrongly; the message says what to change."""


class ToolError(CodeModeError):
    """A tool failed in a way the script should see: the message is passed into JavaScript."""
