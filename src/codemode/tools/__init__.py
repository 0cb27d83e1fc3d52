"""Nested tools: the `Tool` type and Python functions as tools, `ToolSource` (tools that exist
once started), and the built-in sources: MCP servers (`mcp`) and OpenAPI documents (`openapi`).

Framework objects (agents, pydantic-ai, LangChain) are recognised by the session's intake,
never here: `tools` imports no adapter.
"""

from codemode.tools._source import ToolSource
from codemode.tools._tool import ApprovalRequirement, Tool, ToolKind, requires_approval

__all__ = ["ApprovalRequirement", "Tool", "ToolKind", "ToolSource", "requires_approval"]
