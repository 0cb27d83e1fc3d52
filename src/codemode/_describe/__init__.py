"""Pure description layer: tool names, JSON Schema -> TypeScript, and the exec/wait texts.

Nothing here touches the engine or does I/O; everything is a function of the tools given.
"""

from codemode._describe.declaration import augmented_description, tool_declaration
from codemode._describe.descriptions import (
    DEFAULT_WAIT_YIELD_TIME_MS,
    ExecInput,
    all_tools_entries,
    exec_description,
    wait_description,
    wait_parameters,
)
from codemode._describe.mcp_types import (
    MCP_TYPES_PREAMBLE,
    is_mcp_output_schema,
    mcp_output_schema,
    mcp_result_type,
)
from codemode._describe.names import (
    EXEC_TOOL_NAME,
    WAIT_TOOL_NAME,
    NestedTool,
    code_mode_name,
    nested_tool_table,
    normalize_identifier,
)
from codemode._describe.typescript import render_schema

__all__ = [
    "DEFAULT_WAIT_YIELD_TIME_MS",
    "EXEC_TOOL_NAME",
    "MCP_TYPES_PREAMBLE",
    "WAIT_TOOL_NAME",
    "ExecInput",
    "NestedTool",
    "all_tools_entries",
    "augmented_description",
    "code_mode_name",
    "exec_description",
    "is_mcp_output_schema",
    "mcp_output_schema",
    "mcp_result_type",
    "nested_tool_table",
    "normalize_identifier",
    "render_schema",
    "tool_declaration",
    "wait_description",
    "wait_parameters",
]
