"""Agent-framework adapters, both directions, one subpackage per framework.

    agents/        OpenAI Agents SDK      (`pip install "codemode[agents]"`)
    pydantic_ai/   pydantic-ai            (`pip install "codemode[pydantic-ai]"`)
    langchain/     LangChain              (`pip install "codemode[langchain]"`)

Each subpackage offers code mode as that framework's tools (`exec` and `wait`) and turns the
framework's own tools into nested tools; `CodeMode(tools=[...])` accepts those directly, and
`as_tool(obj)` turns one of them into a `codemode.Tool`.

Invariant: only a framework's subpackage imports that framework. The session's tool intake
(`codemode._session.intake`) recognises a framework's objects through `sys.modules`, so importing
codemode never imports a framework, and a subpackage is imported only for an object of its
framework.
"""

from codemode._session.intake import as_tool

__all__ = ["as_tool"]
