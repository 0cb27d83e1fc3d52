"""MCP tool results as the model reads them: `CallToolResult<T>` and the shared type preamble.

Every MCP tool gets the same wrapper output schema (`mcp_output_schema`). A tool whose output
schema has that shape is typed `CallToolResult` (or `CallToolResult<T>` with T its structured
content type) instead of the wrapper's literal object type, and the exec description defines
`CallToolResult` and its content block types once, under `Shared MCP Types:` (spec 1.6.3).

Invariant: pure functions of their arguments.
"""

from __future__ import annotations

from typing import Any

from codemode._describe._json import as_object
from codemode._describe.typescript import UNKNOWN, render_schema

__all__ = [
    "MCP_TYPES_PREAMBLE",
    "is_mcp_output_schema",
    "mcp_output_schema",
    "mcp_result_type",
    "shared_mcp_types_section",
]

# Modelled on the MCP schema's CallToolResult and content block types.
MCP_TYPES_PREAMBLE = """\
type Role = "user" | "assistant";
type MetaObject = Record<string, unknown>;
type Annotations = {
  audience?: Role[];
  priority?: number;
  lastModified?: string;
};
type Icon = {
  src: string;
  mimeType?: string;
  sizes?: string[];
  theme?: "light" | "dark";
};
type TextResourceContents = {
  uri: string;
  mimeType?: string;
  _meta?: MetaObject;
  text: string;
};
type BlobResourceContents = {
  uri: string;
  mimeType?: string;
  _meta?: MetaObject;
  blob: string;
};
type TextContent = {
  type: "text";
  text: string;
  annotations?: Annotations;
  _meta?: MetaObject;
};
type ImageContent = {
  type: "image";
  data: string;
  mimeType: string;
  annotations?: Annotations;
  _meta?: MetaObject;
};
type AudioContent = {
  type: "audio";
  data: string;
  mimeType: string;
  annotations?: Annotations;
  _meta?: MetaObject;
};
type ResourceLink = {
  icons?: Icon[];
  name: string;
  title?: string;
  uri: string;
  description?: string;
  mimeType?: string;
  annotations?: Annotations;
  size?: number;
  _meta?: MetaObject;
  type: "resource_link";
};
type EmbeddedResource = {
  type: "resource";
  resource: TextResourceContents | BlobResourceContents;
  annotations?: Annotations;
  _meta?: MetaObject;
};
type ContentBlock =
  | TextContent
  | ImageContent
  | AudioContent
  | ResourceLink
  | EmbeddedResource;
type CallToolResult<TStructured = { [key: string]: unknown }> = {
  _meta?: MetaObject;
  content: ContentBlock[];
  isError?: boolean;
  structuredContent?: TStructured;
  [key: string]: unknown;
};"""


def shared_mcp_types_section() -> str:
    """The `Shared MCP Types:` section of the exec description."""
    return f"Shared MCP Types:\n```ts\n{MCP_TYPES_PREAMBLE}\n```"


def mcp_output_schema(structured_schema: dict[str, Any] | None) -> dict[str, Any]:
    """The output schema of an MCP tool: a `CallToolResult` whose `structuredContent` follows
    the tool's own `outputSchema` (anything, when it has none)."""
    return {
        "type": "object",
        "properties": {
            "content": {"type": "array", "items": {"type": "object"}},
            "structuredContent": structured_schema if structured_schema is not None else {},
            "isError": {"type": "boolean"},
            "_meta": {"type": "object"},
        },
        "required": ["content"],
        "additionalProperties": False,
    }


def is_mcp_output_schema(output_schema: object) -> bool:
    """Whether an output schema has the MCP `CallToolResult` wrapper shape."""
    return _mcp_properties(output_schema) is not None


def mcp_result_type(output_schema: object) -> str | None:
    """`CallToolResult` / `CallToolResult<T>` for an MCP-shaped output schema, else None.

    T is the structured content schema rendered on its own (its `$ref`s resolve against
    itself); it is left out when it renders as `unknown`.
    """
    properties = _mcp_properties(output_schema)
    if properties is None:
        return None
    rendered = render_schema(properties.get("structuredContent", True))
    return "CallToolResult" if rendered == UNKNOWN else f"CallToolResult<{rendered}>"


def _mcp_properties(output_schema: object) -> dict[str, object] | None:
    """The wrapper's `properties` when the schema is MCP-shaped: an array of objects as
    `content`, a boolean `isError` and an object `_meta`."""
    properties = as_object((as_object(output_schema) or {}).get("properties"))
    if properties is None:
        return None
    content = properties.get("content")
    items = (as_object(content) or {}).get("items")
    shaped = (
        _has_type(content, "array")
        and _has_type(items, "object")
        and _has_type(properties.get("isError"), "boolean")
        and _has_type(properties.get("_meta"), "object")
    )
    return properties if shaped else None


def _has_type(schema: object, type_name: str) -> bool:
    return (as_object(schema) or {}).get("type") == type_name
