"""Agent-framework adapters, both directions, one subpackage per framework.

    agents/        OpenAI Agents SDK      (`pip install "codemode[agents]"`)
    pydantic_ai/   pydantic-ai            (`pip install "codemode[pydantic-ai]"`)
    langchain/     LangChain              (`pip install "codemode[langchain]"`)

Each subpackage offers code mode as that framework's tools (`exec` and `wait`) and turns the
framework's own tools into nested tools; `CodeMode(tools=[...])` accepts those directly.

Invariant: only a framework's subpackage imports that framework. `_intake` (CodeMode's tool
intake) recognises a framework's objects through `sys.modules`, so importing codemode never
imports a framework, and a subpackage is imported only for an object of its framework.
"""
