"""MCP servers as nested tools: `McpToolset` starts the servers of an `mcpServers` config and
exposes each of their tools as a `Tool` named `mcp__<server>__<tool>`.

Layout: `_config` parses and validates the config; `_connection` owns one server (start,
call, crash detection, restart, stop; stderr capture lives in `_stderr`); `_toolset` starts
them all and builds the `Tool`s.
"""

from codemode.tools.mcp._config import (
    DEFAULT_STARTUP_TIMEOUT,
    DEFAULT_TOOL_TIMEOUT,
    McpConfig,
    McpHttpServer,
    McpServerConfig,
    McpStdioServer,
    load_mcp_config,
)
from codemode.tools.mcp._connection import McpLogMessage, McpProgress, McpServerError, call_tool_result_json
from codemode.tools.mcp._toolset import McpToolset, mcp_tool_name

__all__ = [
    "DEFAULT_STARTUP_TIMEOUT",
    "DEFAULT_TOOL_TIMEOUT",
    "McpConfig",
    "McpHttpServer",
    "McpLogMessage",
    "McpProgress",
    "McpServerConfig",
    "McpServerError",
    "McpStdioServer",
    "McpToolset",
    "call_tool_result_json",
    "load_mcp_config",
    "mcp_tool_name",
]
