"""LangChain tools as nested tools, called through `BaseTool.ainvoke` (LangChain's own path).

The tool's schema is the one LangChain sends to models (`convert_to_openai_tool`), so the
TypeScript declaration matches; `ainvoke` validates the arguments against the tool's
`args_schema`, runs its callbacks, and applies its `handle_tool_error` policy. A call made while
a `code_mode_tools` exec or wait runs gets that call's `RunnableConfig` (callbacks, `configurable`).
"""

from __future__ import annotations

from typing import Any

import pydantic
import pydantic_core
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool

from codemode.errors import ToolError
from codemode.tools import Tool

__all__ = ["NestedLangChainTool", "nested_tools"]


class NestedLangChainTool:
    """One LangChain tool as a nested tool; `run_config` is the config of the call running code."""

    def __init__(self, base_tool: BaseTool) -> None:
        self.base_tool = base_tool
        self.run_config: RunnableConfig | None = None
        function = convert_to_openai_tool(base_tool)["function"]
        self.tool = Tool(
            name=base_tool.name,
            description=function.get("description", ""),
            handler=self.invoke,
            input_schema=function.get("parameters"),
        )

    async def invoke(self, arguments: dict[str, Any]) -> Any:
        """Run the tool as LangChain runs it for a model's call, and return its output as JSON data."""
        try:
            output = await self.base_tool.ainvoke(arguments, config=self.run_config)
        except pydantic.ValidationError as exc:
            raise ToolError(f"tool `{self.base_tool.name}` got invalid arguments: {exc}") from None
        return pydantic_core.to_jsonable_python(output, bytes_mode="base64")


def nested_tools(tool: BaseTool) -> Tool:
    """CodeMode's intake for a LangChain `BaseTool`."""
    return NestedLangChainTool(tool).tool
