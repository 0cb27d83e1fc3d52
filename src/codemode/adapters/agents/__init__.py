"""Code mode for the OpenAI Agents SDK (`pip install "codemode[agents]"`).

* `CodeModeTools`: `exec` and `wait` as Agents SDK tools over a session of their own (`exec` is a
  `CustomTool` with the Lark grammar for Responses models, or a `FunctionTool` taking `{code}`).
* `CodeMode(tools=[...])` takes `FunctionTool`s (e.g. from `@function_tool`) and the SDK's
  `MCPServerStdio`/`MCPServerStreamableHttp` objects as nested tools.
* A nested call waiting for approval stops the run with the SDK's own interruption; approving
  or rejecting it on the `RunState` and running again continues the same cell.

Layout: `_tools` (exec and wait as SDK tools, per-run context, approvals as interruptions),
`_nested` (SDK tools and MCP server objects as nested tools).
"""

import importlib.util

if importlib.util.find_spec("agents") is None:  # pragma: no cover - the extra is installed in development
    raise ImportError(
        'codemode.adapters.agents needs the OpenAI Agents SDK: pip install "codemode[agents]"'
    )

from codemode.adapters.agents._tools import CodeModeTools, ExecApi

__all__ = ["CodeModeTools", "ExecApi"]
