"""pydantic-ai tools and toolsets as nested tools, each call made the way an agent run makes it.

A call goes through a `ToolManager` over the toolset, as pydantic-ai's own sandboxed dispatch
does: the toolset's argument validation, its `RunContext` (the calling run's, deps included, when
a `CodeModeToolset` run calls into code mode), deferral handling and the tool's return value.
The toolset is entered (MCP servers started) when the session starts and exited when it closes.

Deferred-tool approvals map onto code mode's: a tool with `requires_approval=True` requires
approval as a nested tool (and runs approved once code mode's policy or host approved it); a tool
that raises `ApprovalRequired` while running pauses that call for approval the same way, then
runs again approved. A rejection rejects the script's promise; the tool does not run.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, cast

import pydantic
import pydantic_core
from pydantic_ai import (
    AbstractToolset,
    ApprovalRequired,
    FunctionToolset,
    ModelRetry,
    RunContext,
    Tool,
    ToolDenied,
    ToolFailed,
    ToolReturn,
)
from pydantic_ai.messages import ToolCallPart
from pydantic_ai.tool_manager import ToolManager
from pydantic_ai.usage import RunUsage

from codemode import approve_running_call
from codemode.errors import ToolError
from codemode.tools import Tool as NestedTool, ToolSource

__all__ = ["NestedToolset", "nested_tools"]


class NestedToolset(ToolSource):
    """A pydantic-ai toolset's tools as nested tools; `run_context` is the run calling code mode."""

    def __init__(self, toolset: AbstractToolset[Any]) -> None:
        self.toolset = toolset
        self.run_context: RunContext[Any] | None = None
        self._manager: ToolManager[Any] | None = None
        self._manager_context: RunContext[Any] | None = None

    async def start(self) -> list[NestedTool]:
        self._manager = None  # a manager from an earlier session knows that entry's tools
        await self.toolset.__aenter__()
        try:
            listed = await self.toolset.get_tools(self._context())
        except BaseException:
            await self.toolset.__aexit__(None, None, None)
            raise
        return [
            NestedTool(
                name=name,
                description=tool.tool_def.description or "",
                handler=self._caller(name),
                input_schema=tool.tool_def.parameters_json_schema,
                output_schema=tool.tool_def.return_schema,
                requires_approval=tool.tool_def.kind == "unapproved",
            )
            for name, tool in listed.items()
        ]

    async def aclose(self) -> None:
        await self.toolset.__aexit__(None, None, None)

    def _caller(self, name: str) -> Callable[[dict[str, Any]], Awaitable[Any]]:
        async def call(arguments: dict[str, Any]) -> Any:
            return await self._call(name, arguments)

        return call

    async def _call(self, name: str, arguments: dict[str, Any]) -> Any:
        manager = await self._step_manager()
        part = ToolCallPart(tool_name=name, args=arguments, tool_call_id=f"codemode_{uuid.uuid4().hex}")
        # A nested call runs only once code mode allowed it, so one of an "unapproved" tool is approved.
        tool_def = manager.get_tool_def(name)
        approved = tool_def is not None and tool_def.kind == "unapproved"
        try:
            try:
                result = await manager.handle_call(part, approved=approved, wrap_validation_errors=False)
            except ApprovalRequired:
                await approve_running_call()
                result = await manager.handle_call(part, approved=True, wrap_validation_errors=False)
        except pydantic.ValidationError as exc:
            raise ToolError(f"tool `{name}` got invalid arguments: {exc}") from None
        except (ModelRetry, ToolFailed) as exc:
            raise ToolError(exc.message) from None
        if isinstance(result, ToolDenied):
            raise ToolError(result.message)
        if isinstance(result, ToolReturn):
            result = result.return_value
        return pydantic_core.to_jsonable_python(result, bytes_mode="base64")

    async def _step_manager(self) -> ToolManager[Any]:
        """A tool manager for the calling run's current step (rebuilt when the step changes)."""
        context = self._context()
        if self._manager is None or self._manager_context is not context:
            # A copy: preparing a manager points the context's `tool_manager` at it.
            self._manager = await ToolManager(toolset=self.toolset).for_run_step(replace(context))
            self._manager_context = context
        return self._manager

    def _context(self) -> RunContext[Any]:
        if self.run_context is None:
            # Outside an agent run: no deps and no model (a tool that reads them needs a
            # CodeModeToolset run).
            self.run_context = RunContext(deps=None, model=cast(Any, None), usage=RunUsage())
        return self.run_context


def nested_tools(obj: Tool[Any] | AbstractToolset[Any]) -> NestedToolset:
    """CodeMode's intake for a pydantic-ai `Tool` or toolset given outside `CodeModeToolset`."""
    return NestedToolset(FunctionToolset([obj]) if isinstance(obj, Tool) else obj)
