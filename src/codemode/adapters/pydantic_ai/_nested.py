"""pydantic-ai tools and toolsets as nested tools, each call made the way an agent run makes it.

A call goes through a `ToolManager` over the toolset, as pydantic-ai's own sandboxed dispatch
does: the toolset's argument validation, its `RunContext`, deferral handling and the tool's
return value. The toolset is entered (MCP servers started) when the session starts and exited
when it closes.

The `RunContext` (deps included) is that of the `CodeModeToolset` run whose exec or wait drives
the call's cell: the cell's `RunBinding` holds it, and that exec or wait sets `run_binding` (a
ContextVar, so concurrent runs never see each other's) before the cell runs each nested call in
a copy of its context. A binding also holds the tool managers made for its run, one per toolset.
Outside a run (a plain `CodeMode`), calls get a context without deps or model.

An `MCPToolset`'s call resolves with the `CallToolResult` as JSON (`{content, structuredContent?,
isError}`), as a `mcp_servers=` entry's does, not with pydantic-ai's mapping of it for a model:
the call goes to the toolset's client (through its `process_tool_call` hook, if it has one).

Deferred-tool approvals map onto code mode's: a tool with `requires_approval=True` requires
approval as a nested tool (and runs approved once code mode's policy or host approved it); a tool
that raises `ApprovalRequired` while running pauses that call for approval the same way, then
runs again approved. A rejection rejects the script's promise; the tool does not run.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
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
from codemode._describe.mcp_types import mcp_output_schema
from codemode.errors import ToolError
from codemode.tools import Tool as NestedTool, ToolSource

__all__ = ["NestedToolset", "RunBinding", "nested_tools", "run_binding"]


@dataclass
class RunBinding:
    """The run whose exec or wait drives a cell, and the tool managers its nested calls share."""

    context: RunContext[Any]
    managers: dict[NestedToolset, ToolManager[Any]] = field(default_factory=dict["NestedToolset", "ToolManager[Any]"])

    def rebind(self, context: RunContext[Any]) -> None:
        """Calls starting from now get `context` (the run now driving the cell)."""
        if context is not self.context:
            self.context = context
            self.managers = {}


run_binding: ContextVar[RunBinding | None] = ContextVar("codemode_pydantic_ai_run_binding", default=None)
"""The binding of the exec or wait driving the cell whose call runs now (or of the run starting
the session, while it lists the nested tools)."""


class NestedToolset(ToolSource):
    """A pydantic-ai toolset's tools as nested tools."""

    def __init__(self, toolset: AbstractToolset[Any]) -> None:
        self.toolset = toolset
        # For calls outside an agent run: no deps and no model (a tool that reads them needs a
        # CodeModeToolset run).
        self._unbound = RunBinding(RunContext(deps=None, model=cast(Any, None), usage=RunUsage()))

    async def start(self) -> list[NestedTool]:
        self._unbound.managers.clear()  # a manager from an earlier session knows that entry's tools
        await self.toolset.__aenter__()
        try:
            listed = await self.toolset.get_tools(self._binding().context)
        except BaseException:
            await self.toolset.__aexit__(None, None, None)
            raise
        mcp = _mcp_toolset(self.toolset) is not None
        return [
            NestedTool(
                name=name,
                description=tool.tool_def.description or "",
                handler=self._caller(name),
                input_schema=tool.tool_def.parameters_json_schema,
                output_schema=mcp_output_schema(tool.tool_def.return_schema) if mcp else tool.tool_def.return_schema,
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
        mcp_toolset = _mcp_toolset(self.toolset)
        if mcp_toolset is not None:
            return await self._mcp_call(mcp_toolset, name, arguments)
        manager = await self._manager()
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

    async def _mcp_call(self, toolset: Any, name: str, arguments: dict[str, Any]) -> Any:
        """The MCP `CallToolResult` of the call, as JSON."""
        from codemode.tools.mcp._connection import call_tool_result_json  # the MCP SDK, loaded already

        async def call(name: str, args: dict[str, Any], *, metadata: dict[str, Any] | None = None) -> Any:
            return call_tool_result_json(await toolset.client.call_tool_mcp(name, args, meta=metadata))

        if toolset.process_tool_call is None:
            return await call(name, arguments)
        context = replace(self._binding().context, tool_name=name)
        return pydantic_core.to_jsonable_python(await toolset.process_tool_call(context, call, name, arguments))

    async def _manager(self) -> ToolManager[Any]:
        """The driving exec or wait's tool manager for this toolset (made on its first call)."""
        binding = self._binding()
        manager = binding.managers.get(self)
        if manager is None:
            # A copy: preparing a manager points the context's `tool_manager` at it.
            manager = await ToolManager(toolset=self.toolset).for_run_step(replace(binding.context))
            binding.managers[self] = manager
        return manager

    def _binding(self) -> RunBinding:
        return run_binding.get() or self._unbound


def _mcp_toolset(toolset: AbstractToolset[Any]) -> Any:
    """`toolset` if it is a pydantic-ai `MCPToolset` (its module is loaded if one exists), else None."""
    cls = getattr(sys.modules.get("pydantic_ai.mcp"), "MCPToolset", None)
    return toolset if isinstance(cls, type) and isinstance(toolset, cls) else None


def nested_tools(obj: Tool[Any] | AbstractToolset[Any]) -> NestedToolset:
    """CodeMode's intake for a pydantic-ai `Tool` or toolset given outside `CodeModeToolset`."""
    return NestedToolset(FunctionToolset([obj]) if isinstance(obj, Tool) else obj)
