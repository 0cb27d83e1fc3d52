"""`exec` and `wait` as LangChain `StructuredTool`s over an open code-mode session.

LangChain fixes a tool's description when it is built, so the session must be started (the
`exec` description lists its nested tools). Each call hands its `RunnableConfig` on to the
session's nested LangChain tools. A failed script or bad arguments raise
`ToolException`, which the tools handle (`handle_tool_error=True`): the model gets a
`ToolMessage` with `status="error"`, and the run goes on.
"""

from __future__ import annotations

from typing import Any

from langchain_core.runnables import RunnableConfig
from langchain_core.tools import StructuredTool, ToolException

from codemode._describe.names import EXEC_TOOL_NAME
from codemode._output import model_items
from codemode._protocol.types import AudioItem, ExecResult, ImageItem, TextItem
from codemode._session.session import CodeMode
from codemode.adapters._arguments import checked_arguments
from codemode.adapters._text import text_output
from codemode.adapters.langchain._nested import NestedLangChainTool
from codemode.errors import ToolError
from codemode.formats._data_url import parse_data_url
from codemode.formats._notes import omitted_note

__all__ = ["code_mode_tools"]

_ERROR_TEXT_ONLY = "an error ToolMessage carries text only"


def code_mode_tools(session: CodeMode) -> list[StructuredTool]:
    """`exec` (taking `{"code": ...}`) and `wait`, bound to `session` (started, e.g. `async with`).

    Raises:
        UsageError: the session is not started.
    """
    nested = [
        handler_owner
        for entry in session.tools
        if isinstance(handler_owner := getattr(entry.tool.handler, "__self__", None), NestedLangChainTool)
    ]
    return [_structured_tool(session, spec["function"], nested) for spec in session.tool_specs("chat")]


def _structured_tool(
    session: CodeMode, function: dict[str, Any], nested: list[NestedLangChainTool]
) -> StructuredTool:
    name: str = function["name"]
    schema: dict[str, Any] = function["parameters"]

    async def run(*, config: RunnableConfig, **arguments: Any) -> str | list[dict[str, Any]]:
        for tool in nested:
            tool.run_config = config
        try:
            checked = checked_arguments(name, arguments, schema)
        except ToolError as exc:
            raise ToolException(str(exc)) from None
        result = await (session.exec(checked["code"]) if name == EXEC_TOOL_NAME else session.wait(**checked))
        if result.status in ("failed", "rejected"):
            raise ToolException(text_output(result, _ERROR_TEXT_ONLY))
        return _content(result)

    return StructuredTool.from_function(
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
