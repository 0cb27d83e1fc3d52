"""LangChain tools as nested tools, called through `BaseTool.ainvoke` (LangChain's own path).

The tool's schema is the one LangChain sends to models (`convert_to_openai_tool`), so the
TypeScript declaration matches; `ainvoke` validates the arguments against the tool's
`args_schema`, runs its callbacks, and applies its `handle_tool_error` policy.
"""

from __future__ import annotations

from typing import Any

import pydantic
import pydantic_core
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool

from codemode.errors import ToolError
from codemode.tools import Tool

__all__ = ["nested_tools"]


def nested_tools(tool: BaseTool) -> Tool:
    """CodeMode's intake for a LangChain `BaseTool`."""
    function = convert_to_openai_tool(tool)["function"]

    async def invoke(arguments: dict[str, Any]) -> Any:
        try:
            output = await tool.ainvoke(arguments)
        except pydantic.ValidationError as exc:
            raise ToolError(f"tool `{tool.name}` got invalid arguments: {exc}") from None
        return pydantic_core.to_jsonable_python(output, bytes_mode="base64")

    return Tool(
        name=tool.name,
        description=function.get("description", ""),
        handler=invoke,
        input_schema=function.get("parameters"),
    )
