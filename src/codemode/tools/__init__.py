"""Nested tools: the `Tool` type, Python functions as tools, and (in `mcp`) MCP servers as tools."""

from codemode.tools._tool import Tool, ToolKind, as_tool

__all__ = ["Tool", "ToolKind", "as_tool"]
