"""Code mode for LangChain (`pip install "codemode[langchain]"`).

* `code_mode_tools(session)`: `exec` and `wait` as `StructuredTool`s over an open session
  (`ainvoke`, and `invoke` from threads other than the session loop's).
* `CodeMode(tools=[...])` takes LangChain `BaseTool`s (e.g. from `@tool`) as nested tools,
  called with the `RunnableConfig` of the exec or wait call that runs them.

Layout: `_tools` (exec and wait as LangChain tools), `_nested` (LangChain tools as nested tools).
"""

import importlib.util

if importlib.util.find_spec("langchain_core") is None:  # pragma: no cover - the extra is installed in development
    raise ImportError('codemode.adapters.langchain needs langchain-core: pip install "codemode[langchain]"')

from codemode.adapters.langchain._tools import code_mode_tools

__all__ = ["code_mode_tools"]
