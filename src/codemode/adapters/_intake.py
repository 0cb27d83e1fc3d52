"""CodeMode's tool intake: functions, `Tool`s, and agent frameworks' tools and toolsets.

A framework object is recognised by `isinstance` against the framework's class as found in
`sys.modules`: an object of a framework means the framework is imported already, so this module
never imports one, and imports an adapter subpackage only for an object of its framework.

Some tools are known only once started (a pydantic-ai toolset, which may run MCP servers): those
are `ToolSource`s, started in the order given when the session starts and closed with it.
"""

from __future__ import annotations

import importlib
import sys
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from contextlib import AsyncExitStack
from typing import Any

from codemode.errors import UsageError
from codemode.tools._tool import Tool, as_tool

__all__ = ["ToolIntake", "ToolSource", "framework_tool", "intake_entry", "single_tool"]

# (module, class, adapter module): instances of the class become nested tools through the adapter.
_FRAMEWORK_CLASSES = (
    ("agents", "FunctionTool", "codemode.adapters.agents._nested"),
    ("pydantic_ai", "Tool", "codemode.adapters.pydantic_ai._nested"),
    ("pydantic_ai.toolsets", "AbstractToolset", "codemode.adapters.pydantic_ai._nested"),
    ("langchain_core.tools", "BaseTool", "codemode.adapters.langchain._nested"),
)


class ToolSource(ABC):
    """Nested tools that exist only once started, e.g. a toolset whose MCP servers must run."""

    @abstractmethod
    async def start(self) -> Sequence[Tool]:
        """Start (enter) the source and return its tools; called once, at session start."""

    @abstractmethod
    async def aclose(self) -> None:
        """Stop what `start` started; called once, when the session closes."""


def framework_tool(obj: object) -> Tool | ToolSource | None:
    """`obj` as nested tools if it is an agent framework's tool or toolset, else None."""
    for module_name, class_name, adapter in _FRAMEWORK_CLASSES:
        cls = getattr(sys.modules.get(module_name), class_name, None)
        if isinstance(cls, type) and isinstance(obj, cls):
            converted: Tool | ToolSource = importlib.import_module(adapter).nested_tools(obj)
            return converted
    return None


def intake_entry(obj: object) -> Tool | ToolSource:
    """`obj` as one of a session's own tools: a `Tool` or `ToolSource` as is, else converted."""
    if isinstance(obj, (Tool, ToolSource)):
        return obj
    return framework_tool(obj) or as_tool(obj)


class ToolIntake:
    """A session's own tools in the order given: ready ones at once, sources' once started."""

    def __init__(self, tools: Iterable[Any]) -> None:
        self._entries = [intake_entry(obj) for obj in tools]
        self._started = AsyncExitStack()

    async def start(self) -> list[Tool]:
        """Start the sources (a failed start leaves the others to `aclose`) and list every tool."""
        tools: list[Tool] = []
        for entry in self._entries:
            if isinstance(entry, Tool):
                tools.append(entry)
            else:
                tools.extend(await entry.start())
                self._started.push_async_callback(entry.aclose)
        return tools

    async def aclose(self) -> None:
        """Close the started sources, the last started first."""
        await self._started.aclose()


def single_tool(obj: object) -> Tool | None:
    """`framework_tool` for callers that need one ready `Tool` (not a source), else None."""
    converted = framework_tool(obj)
    if isinstance(converted, ToolSource):
        raise UsageError(
            f"{type(obj).__name__} gives its tools only once started: pass it to CodeMode(tools=[...])"
        )
    return converted
