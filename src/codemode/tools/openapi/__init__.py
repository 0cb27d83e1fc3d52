"""OpenAPI documents as nested tools: `OpenApiToolset` turns each operation of each configured
API into a `Tool` named `<api>__<operation>`, called over HTTP by the host.

Layout: `_config` parses the `openapi=` mapping; `_schema` resolves `$ref`s and turns OpenAPI
schemas into JSON Schema; `_operations` builds each operation's argument object and result
type; `_request` builds each request confined to its API and reads the answer within its cap
(httpx); `_toolset` makes the `Tool`s and owns the HTTP clients.
"""

from codemode.tools.openapi._config import (
    DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULT_TIMEOUT,
    OpenApiSource,
    load_openapi_sources,
)
from codemode.tools.openapi._operations import Operation, Parameter, operations
from codemode.tools.openapi._request import MAX_ERROR_BODY_CHARS, RESERVED_HEADERS
from codemode.tools.openapi._toolset import OpenApiToolset

__all__ = [
    "DEFAULT_MAX_RESPONSE_BYTES",
    "DEFAULT_TIMEOUT",
    "MAX_ERROR_BODY_CHARS",
    "RESERVED_HEADERS",
    "OpenApiSource",
    "OpenApiToolset",
    "Operation",
    "Parameter",
    "load_openapi_sources",
    "operations",
]
