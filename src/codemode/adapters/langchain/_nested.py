"""LangChain tools as nested tools, called through `BaseTool.ainvoke` (LangChain's own path).

The tool's schema is the one LangChain sends to models (`convert_to_openai_tool`), so the
TypeScript declaration matches; `ainvoke` validates the arguments against the tool's
`args_schema`, runs its callbacks, and applies its `handle_tool_error` policy.

A call gets the `RunnableConfig` (callbacks, `configurable`) of the `code_mode_tools` exec or
wait call that drives its cell: that call sets `run_config` (a ContextVar, so concurrent
invocations never see each other's), and the cell runs each nested call in the context of the
exec or wait driving it. Outside one, a call gets LangChain's default config.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

import pydantic
import pydantic_core
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool

from codemode.errors import ToolError
from codemode.tools import Tool

__all__ = ["nested_tools", "run_config"]

run_config: ContextVar[RunnableConfig | None] = ContextVar("codemode_langchain_run_config", default=None)
"""The config of the exec or wait invocation driving the cell whose call runs now."""


def nested_tools(tool: BaseTool) -> Tool:
    """CodeMode's intake for a LangChain `BaseTool`."""
    function = convert_to_openai_tool(tool)["function"]

    async def invoke(arguments: dict[str, Any]) -> Any:
        """Run the tool as LangChain runs it for a model's call, and return its output as JSON data."""
        try:
            output = await tool.ainvoke(arguments, config=run_config.get())
        except pydantic.ValidationError as exc:
            raise ToolError(f"tool `{tool.name}` got invalid arguments: {exc}") from None
        return pydantic_core.to_jsonable_python(output, bytes_mode="base64")

    return Tool(
        name=tool.name,
        description=function.get("description", ""),
        handler=invoke,
        input_schema=function.get("parameters"),
    )
