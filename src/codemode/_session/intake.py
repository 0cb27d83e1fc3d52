"""A session's tool intake: functions, `Tool`s, `ToolSource`s (MCP servers and OpenAPI documents
among them), and agent frameworks' tools and toolsets.

Framework objects are recognised here, not in `tools/`, by `isinstance` against the framework's
class as found in `sys.modules`: an object of a framework means the framework is imported
already, so this module never imports one, and imports an adapter's converter (named by import
path in `_FRAMEWORK_CONVERTERS`) only for an object of its framework.
"""

from __future__ import annotations

import asyncio
import importlib
import sys
from collections.abc import Callable, Iterable, Mapping
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from codemode.errors import UsageError
from codemode.tools import Tool, ToolSource

__all__ = ["ToolIntake", "as_tool", "intake_entry"]

# (module, class, converter module): instances of the class become nested tools through the
# converter module's `nested_tools(obj) -> Tool | ToolSource`.
_FRAMEWORK_CONVERTERS = (
    ("agents", "FunctionTool", "codemode.adapters.agents._nested"),
    ("agents.mcp", "MCPServerStdio", "codemode.adapters.agents._nested"),
    ("agents.mcp", "MCPServerStreamableHttp", "codemode.adapters.agents._nested"),
    ("pydantic_ai", "Tool", "codemode.adapters.pydantic_ai._nested"),
    ("pydantic_ai.toolsets", "AbstractToolset", "codemode.adapters.pydantic_ai._nested"),
    ("langchain_core.tools", "BaseTool", "codemode.adapters.langchain._nested"),
)


def _framework_tool(obj: object) -> Tool | ToolSource | None:
    """`obj` as nested tools if it is an agent framework's tool or toolset, else None."""
    for module_name, class_name, converter in _FRAMEWORK_CONVERTERS:
        cls = getattr(sys.modules.get(module_name), class_name, None)
        if isinstance(cls, type) and isinstance(obj, cls):
            converted: Tool | ToolSource = importlib.import_module(converter).nested_tools(obj)
            return converted
    return None


def intake_entry(obj: object) -> Tool | ToolSource:
    """`obj` as one of a session's own tools: a `Tool` or `ToolSource` as is, else converted."""
    if isinstance(obj, (Tool, ToolSource)):
        return obj
    converted = _framework_tool(obj)
    if converted is not None:
        return converted
    if callable(obj):
        return Tool.from_function(obj)
    raise UsageError(f"not a tool: {obj!r}; pass a function or a codemode.Tool")


def as_tool(obj: Tool | Callable[..., Any] | object) -> Tool:
    """One ready `Tool` from a `Tool`, a typed function, or an agent framework's tool.

    Raises:
        UsageError: `obj` is none of these, or a toolset that lists its tools only once started
            (pass that to `CodeMode(tools=[...])`).
    """
    entry = intake_entry(obj)
    if isinstance(entry, ToolSource):
        raise UsageError(
            f"{type(obj).__name__} gives its tools only once started: pass it to CodeMode(tools=[...])"
        )
    return entry


class ToolIntake:
    """A session's own tools in the order given, then its MCP servers, then its OpenAPI
    documents: ready tools at once, sources' tools once started."""

    def __init__(
        self,
        tools: Iterable[object],
        *,
        mcp_servers: Mapping[str, Any] | str | Path | None = None,
        openapi: Mapping[str, Any] | None = None,
    ) -> None:
        self._entries = [intake_entry(obj) for obj in tools]
        if mcp_servers is not None:
            self._entries.append(_BuiltAtStart(lambda: _mcp_toolset(mcp_servers), in_thread=False))
        if openapi is not None:
            self._entries.append(_BuiltAtStart(lambda: _openapi_toolset(openapi), in_thread=True))
        self._started: list[ToolSource] = []
        self._closer = AsyncExitStack()

    async def start(self) -> list[Tool]:
        """Start the sources in order and list every tool.

        A source whose start fails has released what it took; the sources started before it
        are left to `aclose`.
        """
        tools: list[Tool] = []
        for entry in self._entries:
            if isinstance(entry, Tool):
                tools.append(entry)
                continue
            tools.extend(await entry.start())
            self._started.append(entry)
            self._closer.push_async_callback(entry.aclose)
        return tools

    @property
    def notices(self) -> list[str]:
        """What the started sources tell the model about tools it will not find."""
        return [source.notice for source in self._started if source.notice]

    async def aclose(self) -> None:
        """Close the started sources, the last started first."""
        self._started.clear()
        await self._closer.aclose()


class _BuiltAtStart(ToolSource):
    """A built-in source made when the session starts, so its config errors surface there.

    OpenAPI documents (megabytes to read and check) are made in a worker thread; an MCP config
    (a few lines) on the loop, so a server opening many sessions at once does not grow the
    default executor's threads for it.
    """

    def __init__(self, build: Callable[[], ToolSource], *, in_thread: bool) -> None:
        self._build = build
        self._in_thread = in_thread
        self._source: ToolSource | None = None

    async def start(self) -> list[Tool]:
        self._source = await asyncio.to_thread(self._build) if self._in_thread else self._build()
        return list(await self._source.start())

    async def aclose(self) -> None:
        if self._source is not None:
            await self._source.aclose()

    @property
    def notice(self) -> str | None:
        return self._source.notice if self._source is not None else None


def _mcp_toolset(config: Mapping[str, Any] | str | Path) -> ToolSource:
    from codemode.tools.mcp import McpToolset  # the MCP SDK loads only for sessions that use it

    return McpToolset(config)


def _openapi_toolset(config: Mapping[str, Any]) -> ToolSource:
    from codemode.tools.openapi import OpenApiToolset  # httpx loads only for sessions that use it

    return OpenApiToolset(config)
