"""MCP servers as nested tools: `McpToolset` starts the servers of an `mcpServers` config and
exposes each of their tools as a `Tool` named `mcp__<server>__<tool>`.

Layout: `_config` parses and validates the config; `_connection` owns one server (start,
call, crash detection, restart, stop; stderr capture lives in `_stderr`); `_shared` lends one
connection per server to every toolset of an event loop; `_toolset` starts (or joins) a
config's servers and builds the `Tool`s.
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
from codemode.tools.mcp._toolset import McpToolset, mcp_tool_name, shared_servers_running

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
    "shared_servers_running",
]
