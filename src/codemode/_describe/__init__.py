"""Pure description layer: tool names, JSON Schema -> TypeScript, the exec/wait texts, and a
session's catalog of them (the budgeted description, BM25 search, describe, closest names).

Nothing here touches the engine or does I/O; everything is a function of the tools given.
"""

from codemode._describe.catalog import ToolCatalog
from codemode._describe.declaration import augmented_description, tool_declaration
from codemode._describe.descriptions import (
    DEFAULT_SEARCH_LIMIT,
    LISTING_BUDGET_TOKENS,
    ExecInput,
    all_tools_entries,
    exceeds_budget,
    exec_description,
    first_sentence,
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
    DESCRIBE_HELPER_NAME,
    EXEC_TOOL_NAME,
    SEARCH_HELPER_NAME,
    WAIT_TOOL_NAME,
    NestedTool,
    code_mode_name,
    nested_tool_table,
    normalize_identifier,
)
from codemode._describe.typescript import render_schema

__all__ = [
    "DEFAULT_SEARCH_LIMIT",
    "DESCRIBE_HELPER_NAME",
    "EXEC_TOOL_NAME",
    "LISTING_BUDGET_TOKENS",
    "MCP_TYPES_PREAMBLE",
    "SEARCH_HELPER_NAME",
    "WAIT_TOOL_NAME",
    "ExecInput",
    "NestedTool",
    "ToolCatalog",
    "all_tools_entries",
    "augmented_description",
    "code_mode_name",
    "exceeds_budget",
    "exec_description",
    "first_sentence",
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
