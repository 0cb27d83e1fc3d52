"""`exec` and `wait` as LangChain `StructuredTool`s over an open code-mode session.

LangChain fixes a tool's description when it is built, so the session must be started (the
`exec` description lists its nested tools). Each call sets its `RunnableConfig` as the nested
LangChain tools' `run_config` for the cell it drives (per invocation, so concurrent `ainvoke`s
never mix their configs). A failed script or bad arguments raise `ToolException`, which the tools
handle (`handle_tool_error=True`): the model gets a `ToolMessage` with `status="error"`, and the
run goes on.

`invoke` (sync) runs the call on the session's event loop with `asyncio.run_coroutine_threadsafe`
and blocks until it ends: from a thread with no loop, or a worker thread of the session's loop
(`run_in_executor`, `asyncio.to_thread`); on the loop's own thread it would deadlock, so it raises.
"""

from __future__ import annotations

import asyncio
from typing import Any

from langchain_core.runnables import RunnableConfig
from langchain_core.tools import StructuredTool, ToolException

from codemode._describe.names import EXEC_TOOL_NAME
from codemode._output import model_items
from codemode._protocol.types import AudioItem, ExecResult, ImageItem, TextItem
from codemode._session.session import CodeMode
from codemode.adapters._arguments import checked_arguments
from codemode.adapters._text import text_output
from codemode.adapters.langchain._nested import run_config
from codemode.errors import ToolError, UsageError
from codemode.formats._data_url import parse_data_url
from codemode.formats._notes import omitted_note

__all__ = ["code_mode_tools"]

_ERROR_TEXT_ONLY = "an error ToolMessage carries text only"


def code_mode_tools(session: CodeMode) -> list[StructuredTool]:
    """`exec` (taking `{"code": ...}`) and `wait`, bound to `session` (started, e.g. `async with`).

    Call it on the session's event loop: sync `invoke` runs calls there.

    Raises:
        UsageError: the session is not started.
    """
    specs = session.tool_specs("chat")
    try:
        loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    return [_structured_tool(session, spec["function"], loop) for spec in specs]


def _structured_tool(
    session: CodeMode, function: dict[str, Any], loop: asyncio.AbstractEventLoop | None
) -> StructuredTool:
    name: str = function["name"]
    schema: dict[str, Any] = function["parameters"]

    async def run(*, config: RunnableConfig, **arguments: Any) -> str | list[dict[str, Any]]:
        try:
            checked = checked_arguments(name, arguments, schema)
        except ToolError as exc:
            raise ToolException(str(exc)) from None
        token = run_config.set(config)  # this task's: the cell's calls run in a copy of its context
        try:
            result = await (session.exec(checked["code"]) if name == EXEC_TOOL_NAME else session.wait(**checked))
        finally:
            run_config.reset(token)
        if result.status in ("failed", "rejected"):
            raise ToolException(text_output(result, _ERROR_TEXT_ONLY))
        return _content(result)

    def run_blocking(*, config: RunnableConfig, **arguments: Any) -> str | list[dict[str, Any]]:
        if loop is None or loop.is_closed():
            raise UsageError(f"`{name}`.invoke needs the session's event loop: call code_mode_tools(session) on it")
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            raise UsageError(f"`{name}`.invoke on the session's event loop thread would block that loop: use ainvoke")
        return asyncio.run_coroutine_threadsafe(run(config=config, **arguments), loop).result()

    return StructuredTool.from_function(
        func=run_blocking,
        coroutine=run,
        name=name,
        description=function["description"],
        args_schema=schema,
        handle_tool_error=True,
    )


def _content(result: ExecResult) -> str | list[dict[str, Any]]:
    """The `ToolMessage` content: one string, or standard text, image and audio blocks in order."""
    items = model_items(result)
    if len(items) == 1 and isinstance(items[0], TextItem):
        return items[0].text
    blocks: list[dict[str, str]] = []
    for item in items:
        match item:
            case TextItem(text):
                blocks.append({"type": "text", "text": text})
            case ImageItem(url) | AudioItem(url):
                kind = "image" if isinstance(item, ImageItem) else "audio"
                parsed = parse_data_url(url)
                if parsed is None:
                    blocks.append({"type": "text", "text": omitted_note(kind, "not a readable data URL")})
                else:
                    blocks.append({"type": kind, "base64": parsed.data, "mime_type": parsed.mime_type})
    return blocks
