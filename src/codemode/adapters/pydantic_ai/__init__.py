"""Code mode for pydantic-ai (`pip install "codemode[pydantic-ai]"`).

* `CodeModeToolset`: an `AbstractToolset` exposing `exec` and `wait`, for `Agent(toolsets=[...])`;
  its session opens and closes with the agent run (or `async with agent:`); nested calls waiting
  for approval end the run with `DeferredToolRequests`, resumed with `DeferredToolResults`.
* `CodeMode(tools=[...])` takes pydantic-ai `Tool`s and toolsets (MCP server toolsets included)
  as nested tools, called through pydantic-ai's own tool manager.

Layout: `_toolset` (exec and wait as a toolset), `_nested` (pydantic-ai tools as nested tools).
"""

import importlib.util

if importlib.util.find_spec("pydantic_ai") is None:  # pragma: no cover - the extra is installed in development
    raise ImportError('codemode.adapters.pydantic_ai needs pydantic-ai: pip install "codemode[pydantic-ai]"')

from codemode.adapters.pydantic_ai._toolset import CodeModeToolset

__all__ = ["CodeModeToolset"]
