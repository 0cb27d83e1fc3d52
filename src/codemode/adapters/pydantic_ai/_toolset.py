"""`exec` and `wait` as a pydantic-ai toolset, over a code-mode session of its own.

The agent run enters the toolset (a fresh session opens; entering again while open shares it)
and exits it (the session closes with the last exit). A failed script or bad arguments reach the
model as a failed tool result (`ToolFailed`, `ModelRetry`), never as an exception ending the run.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Unpack, cast

import pydantic_core
from pydantic_ai import (
    AbstractToolset,
    BinaryContent,
    ModelRetry,
    RunContext,
    Tool,
    ToolDefinition,
    ToolFailed,
)
from pydantic_ai.toolsets import ToolsetTool
from pydantic_core import core_schema

from codemode._describe.names import EXEC_TOOL_NAME
from codemode._output import model_items
from codemode._protocol.types import AudioItem, ExecResult, ImageItem, TextItem
from codemode._session.options import CodeModeOptions
from codemode._session.session import CodeMode
from codemode.adapters._arguments import checked_arguments
from codemode.adapters._shared_session import SharedSession
from codemode.adapters._text import text_output
from codemode.adapters.pydantic_ai._nested import NestedToolset, nested_tools
from codemode.errors import ToolError, UsageError

__all__ = ["CodeModeToolset"]

_ANY_ARGUMENTS = pydantic_core.SchemaValidator(
    core_schema.dict_schema(core_schema.str_schema(), core_schema.any_schema())
)
_FAILED_TEXT_ONLY = "a failed tool result carries text only"


class CodeModeToolset(AbstractToolset[Any]):
    """`exec` and `wait` for a pydantic-ai `Agent`: `Agent(model, toolsets=[CodeModeToolset([...])])`.

    Args:
        tools: the nested tools: Python functions, `codemode.Tool`s, pydantic-ai `Tool`s and
            toolsets (an `MCPServer` toolset included), called with the run's `RunContext`.
        id: the toolset's id, unique among the agent's toolsets (needed for durable execution).
        max_retries: how often the model may retry after arguments that break the schema.
        **options: `CodeMode` keyword arguments (`mcp_servers`, `limits`, `defaults`, ...).

    Raises:
        UsageError: an option is no `CodeMode` keyword, or a tool is none of the kinds it takes.
    """

    def __init__(
        self,
        tools: Iterable[Any] = (),
        *,
        id: str | None = None,
        max_retries: int = 1,
        **options: Unpack[CodeModeOptions],
    ) -> None:
        self._nested: list[NestedToolset] = []
        self._own_tools = [self._nested_tool(obj) for obj in tools]
        self._id = id
        self._max_retries = max_retries
        self._shared = SharedSession(self._own_tools, options)

    @property
    def id(self) -> str | None:
        return self._id

    @property
    def session(self) -> CodeMode:
        """The open session (stored values, notifications, `exec`/`wait` for the host)."""
        if self._shared.current is None:
            raise UsageError("code mode is not open: run the agent, or `async with` the toolset or agent")
        return self._shared.current

    async def for_run(self, ctx: RunContext[Any]) -> CodeModeToolset:
        self._bind(ctx)  # before entering: nested toolsets list their tools with the run's context
        return self

    async def __aenter__(self) -> CodeModeToolset:
        await self._shared.enter()
        return self

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        await self._shared.leave()
        return None

    async def get_tools(self, ctx: RunContext[Any]) -> dict[str, ToolsetTool[Any]]:
        self._bind(ctx)
        tools: dict[str, ToolsetTool[Any]] = {}
        for spec in self.session.tool_specs("chat"):
            function = spec["function"]
            definition = ToolDefinition(
                name=function["name"],
                description=function["description"],
                parameters_json_schema=function["parameters"],
            )
            tools[definition.name] = ToolsetTool(
                toolset=self,
                tool_def=definition,
                max_retries=self._max_retries,
                args_validator=_ANY_ARGUMENTS,
            )
        return tools

    async def call_tool(
        self, name: str, tool_args: dict[str, Any], ctx: RunContext[Any], tool: ToolsetTool[Any]
    ) -> Any:
        session = self.session
        self._bind(ctx)
        try:
            arguments = checked_arguments(name, tool_args, tool.tool_def.parameters_json_schema)
        except ToolError as exc:
            raise ModelRetry(str(exc)) from None
        if name == EXEC_TOOL_NAME:
            result = await session.exec(arguments["code"])
        else:
            result = await session.wait(**arguments)
        if result.status in ("failed", "rejected"):
            raise ToolFailed(text_output(result, _FAILED_TEXT_ONLY))
        return _content(result)

    def _nested_tool(self, obj: object) -> object:
        if isinstance(obj, (Tool, AbstractToolset)):
            nested = nested_tools(cast("Tool[Any] | AbstractToolset[Any]", obj))
            self._nested.append(nested)
            return nested
        return obj

    def _bind(self, ctx: RunContext[Any]) -> None:
        """Hand `ctx` to the nested pydantic-ai tools that this step's calls may run."""
        for nested in self._nested:
            nested.run_context = ctx


def _content(result: ExecResult) -> str | list[str | BinaryContent]:
    """The tool's return: one string, or text and media (as `BinaryContent`) in order."""
    items = model_items(result)
    if len(items) == 1 and isinstance(items[0], TextItem):
        return items[0].text
    content: list[str | BinaryContent] = []
    for item in items:
        match item:
            case TextItem(text):
                content.append(text)
            case ImageItem(url) | AudioItem(url):
                content.append(BinaryContent.from_data_uri(url))
    return content
