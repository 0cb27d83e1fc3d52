"""`exec` and `wait` as OpenAI Agents SDK tools, over a code-mode session of their own.

The SDK holds tool objects from the moment the agent is built, so the tools exist up front,
described with the nested tools ready by then; each time a session opens they take its own
descriptions (MCP servers and toolsets included). Script errors and bad arguments are tool
outputs the model reads, never exceptions that end the run; only a call outside an open session
raises.

Each exec or wait sets `_nested.run_context` to its own run's context before it drives a cell,
so nested SDK tools get the context of the run driving their cell, however many runs share the
session.

Approvals are the SDK's own: exec and wait run their cell in their `needs_approval` check (the
SDK's one hook before a call runs), hold the result, and ask for approval only when a nested
call waits for it (the `approve=` policy has decided first). The run then stops with the exec or
wait call in `result.interruptions`; approving it through the `RunState` approves the calls it
held and the resumed call waits on the same cell; rejecting it rejects them (seen when the
resumed run next consults `wait`, before any model turn) and the script goes on. A call that
begins to wait while an approved exec or wait runs on (the SDK invokes an approved call, so it
cannot stop there) is listed in that output; the model's next wait on the cell then returns at
once and becomes the interruption asking about it, rather than waiting out its yield time.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any, Literal, TypeAlias, Unpack

from agents import (
    Agent,
    CustomTool,
    FunctionTool,
    RunContextWrapper,
    Runner,
    RunResult,
    Tool as AgentTool,
    ToolOutputImage,
    ToolOutputText,
)
from agents.items import ToolApprovalItem, TResponseInputItem
from agents.tool_context import ToolContext

from codemode._describe.names import EXEC_TOOL_NAME, WAIT_TOOL_NAME
from codemode._output import model_items
from codemode._protocol.calls import PendingApproval
from codemode._protocol.config import DEFAULT_DEFAULTS
from codemode._protocol.types import AudioItem, ExecResult, ImageDetail, ImageItem, TextItem
from codemode._session.intake import intake_entry
from codemode._session.options import CodeModeOptions
from codemode._session.session import CodeMode
from codemode.adapters._arguments import checked_arguments
from codemode.adapters._shared_session import SharedSession
from codemode.adapters._text import text_output
from codemode.adapters.agents._nested import run_context
from codemode.errors import ToolError, UsageError
from codemode.formats import tool_specs
from codemode.formats._notes import omitted_note
from codemode.tools import Tool

__all__ = ["CodeModeTools", "ExecApi"]

ExecApi: TypeAlias = Literal["responses", "chat"]
FunctionOutput: TypeAlias = str | list[ToolOutputText | ToolOutputImage]

_CUSTOM_TOOL_TEXT_ONLY = "the Agents SDK returns custom tool output as text"
_NO_AUDIO = "Agents SDK tool outputs carry no audio"
# The SDK's image details; "original" (full resolution) is closest to its "high".
_SDK_IMAGE_DETAIL: dict[ImageDetail, Literal["low", "high", "auto"]] = {
    "low": "low",
    "high": "high",
    "auto": "auto",
    "original": "high",
}
# What the script's waiting calls are told when the SDK rejects the exec or wait holding them
# without a message of the user's own.
_REJECTED = "The user rejected this call; it was not run."

Observe: TypeAlias = Callable[[CodeMode], Awaitable[ExecResult]]


@dataclass(frozen=True)
class _Held:
    """An exec or wait that ran in the SDK's approval check, kept for the call it precedes."""

    tool_name: str
    call_id: str
    run: object  # the run's context object: concurrent runs may reuse a call id
    session: CodeMode
    result: ExecResult


class CodeModeTools:
    """`exec` and `wait` for an Agents SDK `Agent`, bound to a code-mode session.

    `Agent(tools=code_mode.tools)`; then either `async with code_mode:` around your runs (one
    session for all of them) or `await code_mode.run(agent, input)` (a session for that run).
    Entering while open shares the session; it closes with the last exit.

    Args:
        tools: the nested tools: anything `CodeMode(tools=...)` takes; Agents SDK
            `FunctionTool`s are called with the context of the run driving their cell, and
            `MCPServerStdio`/`MCPServerStreamableHttp` objects become shared MCP servers.
        api: "responses" (OpenAI Responses models): `exec` is a `CustomTool` whose input is the
            raw script, constrained by the Lark grammar. "chat" (any other model): `exec` is a
            `FunctionTool` taking `{"code": ...}`.
        **options: `CodeMode` keyword arguments (`mcp_servers`, `limits`, `defaults`, ...).

    Raises:
        UsageError: `api` is neither, a tool is none of the kinds `CodeMode` takes, or an
            option is no `CodeMode` keyword.
    """

    def __init__(
        self, tools: Iterable[Any] = (), *, api: ExecApi = "responses", **options: Unpack[CodeModeOptions]
    ) -> None:
        if api not in ("responses", "chat"):
            raise UsageError(f'`api` must be "responses" or "chat", got {api!r}')
        self._api: ExecApi = api
        self._held: list[_Held] = []
        own_tools = [intake_entry(obj) for obj in tools]
        self._shared = SharedSession(own_tools, options)
        ready = [tool for tool in own_tools if isinstance(tool, Tool)]
        defaults = options.get("defaults", DEFAULT_DEFAULTS)
        self._exec_tool, self._wait_tool = self._sdk_tools(
            tool_specs(ready, api, code_mode_only=True, defaults=defaults)
        )
        self.tools: list[AgentTool] = [self._exec_tool, self._wait_tool]
        """`exec` and `wait`, for `Agent(tools=[*code_mode.tools, ...])`."""

    @property
    def session(self) -> CodeMode:
        """The open session (stored values, notifications, `exec`/`wait` for the host)."""
        if self._shared.current is None:
            raise UsageError("code mode is not open: `async with code_mode:` or `await code_mode.run(...)`")
        return self._shared.current

    async def __aenter__(self) -> CodeModeTools:
        session, opened = await self._shared.enter()
        if opened:
            self._adopt_descriptions(session.tool_specs(self._api))
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._shared.leave()
        if self._shared.current is None:
            self._held.clear()  # their cells ended with the session

    async def run(
        self, agent: Agent[Any], input: str | list[TResponseInputItem], **runner_options: Any
    ) -> RunResult:
        """`Runner.run(agent, input, **runner_options)` inside a session that lasts for the run."""
        async with self:
            return await Runner.run(agent, input, **runner_options)

    def pending_approvals(self, interruption: ToolApprovalItem) -> list[PendingApproval]:
        """The nested calls an exec or wait interruption asks about (tool, arguments), to show
        the user before `state.approve(interruption)` or `state.reject(interruption)`."""
        return [
            pending
            for held in self._held
            if held.call_id == interruption.call_id and held.tool_name == interruption.tool_name
            for pending in held.result.pending_approvals
        ]

    # -- the SDK tools ----------------------------------------------------------------------
    def _sdk_tools(self, specs: list[dict[str, Any]]) -> tuple[FunctionTool | CustomTool, FunctionTool]:
        exec_spec, wait_spec = (_fields(spec) for spec in specs)
        self._wait_schema: dict[str, Any] = wait_spec["parameters"]
        wait_tool = FunctionTool(
            name=WAIT_TOOL_NAME,
            description=wait_spec["description"],
            params_json_schema=self._wait_schema,
            on_invoke_tool=self._wait,
            strict_json_schema=False,
            needs_approval=self._wait_needs_approval,
            is_enabled=self._settle_rejections,
        )
        if self._api == "chat":
            self._exec_schema: dict[str, Any] = exec_spec["parameters"]
            exec_function = FunctionTool(
                name=EXEC_TOOL_NAME,
                description=exec_spec["description"],
                params_json_schema=self._exec_schema,
                on_invoke_tool=self._exec_function,
                strict_json_schema=False,
                needs_approval=self._exec_function_needs_approval,
            )
            return exec_function, wait_tool
        exec_tool = CustomTool(
            name=EXEC_TOOL_NAME,
            description=exec_spec["description"],
            on_invoke_tool=self._exec_custom,
            format=exec_spec["format"],
            needs_approval=self._exec_custom_needs_approval,
        )
        return exec_tool, wait_tool

    def _adopt_descriptions(self, specs: list[dict[str, Any]]) -> None:
        """Describe the tools as the open session does (the agent holds these very objects)."""
        exec_spec, wait_spec = (_fields(spec) for spec in specs)
        self._wait_tool.description = wait_spec["description"]
        self._exec_tool.description = exec_spec["description"]
        if isinstance(self._exec_tool, CustomTool):
            self._exec_tool.tool_config["description"] = exec_spec["description"]

    # The SDK asks `needs_approval` right before it invokes a call; the answer is whether the
    # cell, run now, has a nested call waiting for approval.
    async def _exec_custom_needs_approval(
        self, context: RunContextWrapper[Any], source: str, call_id: str
    ) -> bool:
        return await self._hold(EXEC_TOOL_NAME, context, call_id, lambda session: session.exec(source))

    async def _exec_function_needs_approval(
        self, context: RunContextWrapper[Any], arguments: dict[str, Any], call_id: str
    ) -> bool:
        try:
            code = checked_arguments(EXEC_TOOL_NAME, arguments, self._exec_schema)["code"]
        except ToolError:
            return False  # the call itself reports it
        return await self._hold(EXEC_TOOL_NAME, context, call_id, lambda session: session.exec(code))

    async def _wait_needs_approval(
        self, context: RunContextWrapper[Any], arguments: dict[str, Any], call_id: str
    ) -> bool:
        try:
            checked = checked_arguments(WAIT_TOOL_NAME, arguments, self._wait_schema)
        except ToolError:
            return False
        return await self._hold(WAIT_TOOL_NAME, context, call_id, lambda session: self._held_wait(session, checked))

    async def _exec_custom(self, context: ToolContext[Any], source: str) -> str:
        result = await self._observe(self.session, EXEC_TOOL_NAME, context, lambda session: session.exec(source))
        return text_output(result, _CUSTOM_TOOL_TEXT_ONLY)

    async def _exec_function(self, context: ToolContext[Any], arguments_json: str) -> FunctionOutput:
        session = self.session  # outside an open session this raises, before the arguments
        try:
            code = checked_arguments(EXEC_TOOL_NAME, arguments_json, self._exec_schema)["code"]
        except ToolError as exc:
            return str(exc)
        return _function_output(await self._observe(session, EXEC_TOOL_NAME, context, lambda session: session.exec(code)))

    async def _wait(self, context: ToolContext[Any], arguments_json: str) -> FunctionOutput:
        session = self.session  # outside an open session this raises, before the arguments
        try:
            arguments = checked_arguments(WAIT_TOOL_NAME, arguments_json, self._wait_schema)
        except ToolError as exc:
            return str(exc)
        return _function_output(
            await self._observe(session, WAIT_TOOL_NAME, context, lambda session: session.wait(**arguments))
        )

    async def _hold(
        self, tool_name: str, context: RunContextWrapper[Any], call_id: str, observe: Observe
    ) -> bool:
        """Run the exec or wait now, keep its result for the call, and say whether it waits."""
        session = self._shared.current
        if session is None:
            return False  # the call raises; an error here would read as "needs approval"
        await self._settle_rejections(context)
        result = await _driven(session, context, observe)
        self._held.append(_Held(tool_name, call_id, context.context, session, result))
        return bool(result.pending_approvals)

    async def _observe(
        self, session: CodeMode, tool_name: str, context: ToolContext[Any], observe: Observe
    ) -> ExecResult:
        """The held result of this call (its waiting calls approved: the SDK invokes only an
        approved call, then on to the same cell), or the exec or wait run now."""
        held = self._take(tool_name, context.tool_call_id, context.context)
        if held is None or held.session is not session:
            return await _driven(session, context, observe)
        if not held.result.pending_approvals:
            return held.result
        for pending in held.result.pending_approvals:
            try:
                await session.approve(pending.cell_id, pending.call_id)
            except UsageError:
                pass  # answered meanwhile (a timeout, the cell ended): the cell says how it went
        assert held.result.cell_id is not None
        cell_id = held.result.cell_id
        later = await _driven(session, context, lambda session: session.wait(cell_id))
        return replace(
            later,
            items=held.result.items + later.items,
            tool_calls=held.result.tool_calls + later.tool_calls,
            wall_time_s=held.result.wall_time_s + later.wall_time_s,
        )

    async def _held_wait(self, session: CodeMode, arguments: dict[str, Any]) -> ExecResult:
        """The wait run in its approval check: at once when the cell has a call waiting for
        approval that no interruption asked about yet, so that call becomes this wait's.

        Such a call began to wait while an approved exec or wait ran (the SDK invokes an approved
        call whatever its cell does next): the model read it in that output, but the cell
        announced it then, so an observation would not return for it before the yield time.
        """
        if not arguments.get("terminate") and self._unasked(session, str(arguments["cell_id"])):
            arguments = {**arguments, "yield_time_ms": 0}
        return await session.wait(**arguments)

    def _unasked(self, session: CodeMode, cell_id: str) -> bool:
        """Whether a call of the cell waits for approval that no held exec or wait holds."""
        try:
            waiting = session.pending_approvals(cell_id)
        except UsageError:
            return False  # no such cell, or it ended: the wait says so
        asked = {
            (pending.cell_id, pending.call_id)
            for held in self._held
            if held.session is session
            for pending in held.result.pending_approvals
        }
        return any((pending.cell_id, pending.call_id) not in asked for pending in waiting)

    def _take(self, tool_name: str, call_id: str, run: object) -> _Held | None:
        for held in self._held:
            if (held.tool_name, held.call_id) == (tool_name, call_id) and held.run is run:
                self._held.remove(held)
                return held
        return None

    async def _settle_rejections(self, context: RunContextWrapper[Any], *_: object) -> bool:
        """Reject the waiting calls of this run's held execs and waits that the user rejected.

        The SDK never invokes a rejected call, so this runs where the resumed run consults the
        tools (`wait`'s `is_enabled`) and before every exec or wait; it always says "enabled".
        """
        for held in list(self._held):
            if held.run is not context.context or context.is_tool_approved(held.tool_name, held.call_id) is not False:
                continue
            self._held.remove(held)
            reason = context.get_rejection_message(held.tool_name, held.call_id) or _REJECTED
            for pending in held.result.pending_approvals:
                try:
                    await held.session.reject(pending.cell_id, pending.call_id, reason=reason)
                except UsageError:
                    pass  # answered meanwhile, or the cell or session ended
        return True


async def _driven(session: CodeMode, context: RunContextWrapper[Any], observe: Observe) -> ExecResult:
    """`observe(session)` with `context` as the run driving the cell's nested calls."""
    token = run_context.set(context)
    try:
        return await observe(session)
    finally:
        run_context.reset(token)


def _fields(spec: dict[str, Any]) -> dict[str, Any]:
    """A spec's name, description and parameters (Chat Completions nests them in `function`)."""
    function: dict[str, Any] = spec.get("function", spec)
    return function


def _function_output(result: ExecResult) -> FunctionOutput:
    """A function tool's output: one string, or text and image outputs in order."""
    items = model_items(result)
    if len(items) == 1 and isinstance(items[0], TextItem):
        return items[0].text
    outputs: list[ToolOutputText | ToolOutputImage] = []
    for item in items:
        match item:
            case TextItem(text):
                outputs.append(ToolOutputText(text=text))
            case ImageItem(image_url, detail):
                outputs.append(
                    ToolOutputImage(
                        image_url=image_url, detail=None if detail is None else _SDK_IMAGE_DETAIL[detail]
                    )
                )
            case AudioItem():
                outputs.append(ToolOutputText(text=omitted_note("audio", _NO_AUDIO)))
    return outputs
