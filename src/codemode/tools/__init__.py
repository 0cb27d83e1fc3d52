"""Nested tools: the `Tool` type, Python functions as tools, and (in `mcp`) MCP servers as tools."""

from codemode.tools._tool import ApprovalRequirement, Tool, ToolKind, as_tool, requires_approval

__all__ = ["ApprovalRequirement", "Tool", "ToolKind", "as_tool", "requires_approval"]
