"""`exec` and `wait` as a pydantic-ai toolset, over a code-mode session of its own.

The agent run enters the toolset (a fresh session opens; entering again while open shares it)
and exits it (the session closes with the last exit). A failed script or bad arguments reach the
model as a failed tool result (`ToolFailed`, `ModelRetry`), never as an exception ending the run.

Per-run context: each cell has one `RunBinding`, made by the exec that starts it and pointed at
the run of every exec or wait that drives it since (`_nested.py` says how it reaches the calls),
so concurrent runs on one agent never see each other's `RunContext`.

Approvals are pydantic-ai's own: when a nested call waits for approval (code mode's `approve=`
policy answered "ask", or there is none), the exec or wait call raises `ApprovalRequired`, so the
run ends with `DeferredToolRequests` (the agent's `output_type` must include it) whose metadata
names the waiting calls. The cell runs on meanwhile. A run resumed with `DeferredToolResults`
approving that exec or wait call approves the waiting calls and waits on the SAME cell (keep the
session open between the runs: `async with agent:`); a `ToolDenied` rejects them with its message
(seen when the resumed run lists its tools). `deferred_approvals=False` leaves the waiting calls
to `toolset.session.approve`/`reject`, while the model reads "Waiting for approval" lines.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any, Unpack, cast

import pydantic_core
from pydantic_ai import (
    AbstractToolset,
    ApprovalRequired,
    BinaryContent,
    ModelRetry,
    RunContext,
    Tool,
    ToolDefinition,
    ToolFailed,
)
from pydantic_ai.messages import ToolReturnPart
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
from codemode.adapters.pydantic_ai._nested import RunBinding, nested_tools, run_binding
from codemode.errors import ToolError, UsageError

__all__ = ["CodeModeToolset"]

_ANY_ARGUMENTS = pydantic_core.SchemaValidator(
    core_schema.dict_schema(core_schema.str_schema(), core_schema.any_schema())
)
_FAILED_TEXT_ONLY = "a failed tool result carries text only"


@dataclass(frozen=True)
class _Deferral:
    """An exec or wait call that ended in `ApprovalRequired`: the observation the model has not
    read yet, whose `pending_approvals` the resumed call approves or rejects."""

    observation: ExecResult


class CodeModeToolset(AbstractToolset[Any]):
    """`exec` and `wait` for a pydantic-ai `Agent`: `Agent(model, toolsets=[CodeModeToolset([...])])`.

    Args:
        tools: the nested tools: Python functions, `codemode.Tool`s, pydantic-ai `Tool`s and
            toolsets (an `MCPToolset` included), called with the `RunContext` of the run whose
            exec or wait drives their cell.
        id: the toolset's id, unique among the agent's toolsets (needed for durable execution).
        max_retries: how often the model may retry after arguments that break the schema.
        deferred_approvals: nested calls waiting for approval end the run with
            `DeferredToolRequests` (True, the default), or wait for `session.approve`/`reject`.
        **options: `CodeMode` keyword arguments (`mcp_servers`, `limits`, `defaults`, `approve`, ...).

    Raises:
        UsageError: an option is no `CodeMode` keyword, or a tool is none of the kinds it takes.
    """

    def __init__(
        self,
        tools: Iterable[Any] = (),
        *,
        id: str | None = None,
        max_retries: int = 1,
        deferred_approvals: bool = True,
        **options: Unpack[CodeModeOptions],
    ) -> None:
        self._own_tools = [_nested_tool(obj) for obj in tools]
        self._id = id
        self._max_retries = max_retries
        self._deferred_approvals = deferred_approvals
        self._shared = SharedSession(self._own_tools, options)
        self._bindings: dict[str, RunBinding] = {}  # by cell id, while the cell may run
        self._deferrals: dict[str, _Deferral] = {}  # by the deferred exec or wait's tool call id

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
        # Before entering, in the run's task: nested toolsets list their tools with its context.
        run_binding.set(RunBinding(ctx))
        return self

    async def __aenter__(self) -> CodeModeToolset:
        await self._shared.enter()
        return self

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        await self._shared.leave()
        if self._shared.current is None:  # closed: its cells are gone
            self._bindings.clear()
            self._deferrals.clear()
        return None

    async def get_tools(self, ctx: RunContext[Any]) -> dict[str, ToolsetTool[Any]]:
        await self._reject_denied(ctx)
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
        try:
            arguments = checked_arguments(name, tool_args, tool.tool_def.parameters_json_schema)
        except ToolError as exc:
            raise ModelRetry(str(exc)) from None
        deferral = self._deferrals.pop(ctx.tool_call_id or "", None) if ctx.tool_call_approved else None
        if deferral is not None:
            result = await self._resume(session, deferral, ctx)
        elif name == EXEC_TOOL_NAME:
            binding = RunBinding(ctx)
            token = run_binding.set(binding)  # the new cell's calls run in a copy of this context
            try:
                result = await session.exec(arguments["code"])
            finally:
                run_binding.reset(token)
            if result.cell_id is not None:
                self._bindings[result.cell_id] = binding
        else:
            result = await self._drive(session, ctx, arguments["cell_id"], lambda: session.wait(**arguments))
        if result.status != "running":
            self._bindings.pop(result.cell_id or "", None)
        elif result.pending_approvals and self._deferred_approvals and ctx.tool_call_id:
            self._deferrals[ctx.tool_call_id] = _Deferral(result)
            raise ApprovalRequired(metadata=_approval_metadata(result))
        if result.status in ("failed", "rejected"):
            raise ToolFailed(text_output(result, _FAILED_TEXT_ONLY))
        return _content(result)

    async def _drive(self, session: CodeMode, ctx: RunContext[Any], cell_id: str, observe: Any) -> ExecResult:
        """Point the cell's binding at the run of `ctx`, then observe it with `observe()`."""
        binding = self._bindings.get(cell_id)
        if binding is None:  # not started here (or ended): calls the wait drives still get `ctx`
            binding = RunBinding(ctx)
        else:
            binding.rebind(ctx)
        token = run_binding.set(binding)
        try:
            return cast(ExecResult, await observe())
        finally:
            run_binding.reset(token)

    async def _resume(self, session: CodeMode, deferral: _Deferral, ctx: RunContext[Any]) -> ExecResult:
        """Approve the deferred call's waiting calls and wait on its cell, for the resumed run."""
        earlier = deferral.observation
        cell_id = cast(str, earlier.cell_id)

        async def approve_then_wait() -> ExecResult:
            for pending in earlier.pending_approvals:
                try:
                    await session.approve(pending.cell_id, pending.call_id)
                except UsageError:
                    pass  # it timed out or its cell ended meanwhile: the script got that rejection
            return await session.wait(cell_id)

        later = await self._drive(session, ctx, cell_id, approve_then_wait)
        return replace(
            later,
            items=earlier.items + later.items,
            tool_calls=earlier.tool_calls + later.tool_calls,
            wall_time_s=earlier.wall_time_s + later.wall_time_s,
        )

    async def _reject_denied(self, ctx: RunContext[Any]) -> None:
        """Reject the waiting calls of deferred exec or wait calls the resumed run denied."""
        if not self._deferrals:
            return
        for message in ctx.messages:
            for part in message.parts:
                if isinstance(part, ToolReturnPart) and part.outcome == "denied":
                    deferral = self._deferrals.pop(part.tool_call_id, None)
                    if deferral is not None:
                        await self._reject(deferral, str(part.content))

    async def _reject(self, deferral: _Deferral, reason: str) -> None:
        for pending in deferral.observation.pending_approvals:
            try:
                await self.session.reject(pending.cell_id, pending.call_id, reason)
            except UsageError:
                pass  # it timed out or its cell ended meanwhile


def _nested_tool(obj: object) -> object:
    if isinstance(obj, (Tool, AbstractToolset)):
        return nested_tools(cast("Tool[Any] | AbstractToolset[Any]", obj))
    return obj


def _approval_metadata(result: ExecResult) -> dict[str, Any]:
    """What `DeferredToolRequests.metadata` says of a deferred exec or wait call."""
    return {
        "cell_id": result.cell_id,
        "calls": [
            {"call_id": pending.call_id, "tool_name": pending.tool_name, "arguments": pending.arguments}
            for pending in result.pending_approvals
        ],
    }


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
