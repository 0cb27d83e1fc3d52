"""`exec` and `wait` as OpenAI Agents SDK tools, over a code-mode session of their own.

The SDK holds tool objects from the moment the agent is built, so the tools exist up front,
described with the nested tools ready by then; each time a session opens they take its own
descriptions (MCP servers and toolsets included). Script errors and bad arguments are tool
outputs the model reads, never exceptions that end the run; only a call outside an open session
raises.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal, TypeAlias, Unpack

from agents import (
    Agent,
    CustomTool,
    FunctionTool,
    RunContextWrapper,
    Runner,
    RunResult,
    ToolOutputImage,
    ToolOutputText,
)
from agents import Tool as AgentTool
from agents.items import TResponseInputItem
from agents.tool_context import ToolContext

from codemode._describe.names import EXEC_TOOL_NAME, WAIT_TOOL_NAME
from codemode._output import model_items
from codemode._protocol.config import DEFAULT_DEFAULTS
from codemode._protocol.types import AudioItem, ExecResult, ImageDetail, ImageItem, TextItem
from codemode._session.intake import intake_entry
from codemode._session.options import CodeModeOptions
from codemode._session.session import CodeMode
from codemode.adapters._arguments import checked_arguments
from codemode.adapters._shared_session import SharedSession
from codemode.adapters._text import text_output
from codemode.adapters.agents._nested import NestedFunctionTool
from codemode.errors import ToolError, UsageError
from codemode.formats import tool_specs
from codemode.formats._notes import omitted_note
from codemode.tools import Tool, ToolSource

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


class CodeModeTools:
    """`exec` and `wait` for an Agents SDK `Agent`, bound to a code-mode session.

    `Agent(tools=code_mode.tools)`; then either `async with code_mode:` around your runs (one
    session for all of them) or `await code_mode.run(agent, input)` (a session for that run).
    Entering while open shares the session; it closes with the last exit.

    Args:
        tools: the nested tools: anything `CodeMode(tools=...)` takes; Agents SDK
            `FunctionTool`s are called with the calling run's context object.
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
        self._nested: list[NestedFunctionTool] = []
        self._own_tools = [self._nested_tool(obj) for obj in tools]
        self._shared = SharedSession(self._own_tools, options)
        ready = [tool for tool in self._own_tools if isinstance(tool, Tool)]
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

    async def run(
        self, agent: Agent[Any], input: str | list[TResponseInputItem], **runner_options: Any
    ) -> RunResult:
        """`Runner.run(agent, input, **runner_options)` inside a session that lasts for the run."""
        async with self:
            return await Runner.run(agent, input, **runner_options)

    # -- the SDK tools ----------------------------------------------------------------------
    def _nested_tool(self, obj: object) -> Tool | ToolSource:
        if isinstance(obj, FunctionTool):
            nested = NestedFunctionTool(obj)
            self._nested.append(nested)
            return nested.tool
        return intake_entry(obj)

    def _sdk_tools(self, specs: list[dict[str, Any]]) -> tuple[FunctionTool | CustomTool, FunctionTool]:
        exec_spec, wait_spec = (_fields(spec) for spec in specs)
        self._wait_schema: dict[str, Any] = wait_spec["parameters"]
        wait_tool = _function_tool(WAIT_TOOL_NAME, wait_spec["description"], self._wait_schema, self._wait)
        if self._api == "chat":
            self._exec_schema: dict[str, Any] = exec_spec["parameters"]
            exec_function = _function_tool(
                EXEC_TOOL_NAME, exec_spec["description"], self._exec_schema, self._exec_function
            )
            return exec_function, wait_tool
        exec_tool = CustomTool(
            name=EXEC_TOOL_NAME,
            description=exec_spec["description"],
            on_invoke_tool=self._exec_custom,
            format=exec_spec["format"],
        )
        return exec_tool, wait_tool

    def _adopt_descriptions(self, specs: list[dict[str, Any]]) -> None:
        """Describe the tools as the open session does (the agent holds these very objects)."""
        exec_spec, wait_spec = (_fields(spec) for spec in specs)
        self._wait_tool.description = wait_spec["description"]
        self._exec_tool.description = exec_spec["description"]
        if isinstance(self._exec_tool, CustomTool):
            self._exec_tool.tool_config["description"] = exec_spec["description"]

    async def _exec_custom(self, context: ToolContext[Any], source: str) -> str:
        result = await self._bound(context).exec(source)
        return text_output(result, _CUSTOM_TOOL_TEXT_ONLY)

    async def _exec_function(self, context: ToolContext[Any], arguments_json: str) -> FunctionOutput:
        session = self._bound(context)
        try:
            arguments = checked_arguments(EXEC_TOOL_NAME, arguments_json, self._exec_schema)
        except ToolError as exc:
            return str(exc)
        return _function_output(await session.exec(arguments["code"]))

    async def _wait(self, context: ToolContext[Any], arguments_json: str) -> FunctionOutput:
        session = self._bound(context)
        try:
            arguments = checked_arguments(WAIT_TOOL_NAME, arguments_json, self._wait_schema)
        except ToolError as exc:
            return str(exc)
        return _function_output(await session.wait(**arguments))

    def _bound(self, context: RunContextWrapper[Any]) -> CodeMode:
        """The open session, with `context` handed to the nested SDK tools this call may run."""
        session = self.session
        for nested in self._nested:
            nested.run_context = context
        return session


def _fields(spec: dict[str, Any]) -> dict[str, Any]:
    """A spec's name, description and parameters (Chat Completions nests them in `function`)."""
    function: dict[str, Any] = spec.get("function", spec)
    return function


def _function_tool(name: str, description: str, parameters: dict[str, Any], invoke: Any) -> FunctionTool:
    return FunctionTool(
        name=name,
        description=description,
        params_json_schema=parameters,
        on_invoke_tool=invoke,
        strict_json_schema=False,
    )


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
