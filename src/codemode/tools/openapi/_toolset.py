"""`OpenApiToolset`: each operation of each configured API as a `Tool`, called over HTTP.

Invariants:
* Lifecycle is `State` NEW -> OPEN -> CLOSING -> CLOSED, one way: `tools` exist from
  construction (reading the specs is all it takes), requests need `start()` (one pooled
  `httpx.AsyncClient` per API), `aclose()` closes the clients and is idempotent.
* A call resolves with the response body (parsed JSON, text, or null when empty) for a 2xx
  status, and rejects with the method, URL, status and body otherwise; transport errors reject
  naming the request. Headers from the config go out with every request and appear nowhere else.
* Every call is confined to its API as `_request` describes: path parameters cannot leave the
  operation's path or the `base_url`, configured headers and query parameters cannot be set by
  a script (those parameters are dropped from the tools), bodies are capped.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, cast

import httpx

from codemode._protocol.lifecycle import State, start_refusal
from codemode.errors import ToolError, UsageError
from codemode.tools._source import ToolSource
from codemode.tools._tool import Tool, schema_validator
from codemode.tools.openapi._config import OpenApiSource, load_openapi_sources
from codemode.tools.openapi._operations import Operation, operations
from codemode.tools.openapi._request import offered, send

__all__ = ["OpenApiToolset"]


class OpenApiToolset(ToolSource):
    """OpenAPI operations as nested tools: `await tools.<api>__<operation>(args)` in the script.

    Use it as an async context manager (or `start()` / `aclose()`)::

        async with OpenApiToolset({"github": {"spec": "api.github.com.json",
                                              "headers": {"Authorization": "Bearer ..."}}}) as api:
            async with CodeMode(tools=api.tools) as cm: ...

    (`CodeMode(openapi=...)` does the same for you.)

    Args:
        config: `{name: {"spec": path_or_dict, "base_url": str, "headers": {...}, "timeout": s,
            "max_response_bytes": n}}`; `base_url` defaults to the spec's first server, a
            `user:password@` in it becomes an `Authorization: Basic` header, its query parameters
            go with every request; `max_response_bytes` defaults to 4 MiB.

    Raises:
        UsageError: the config is invalid or a spec cannot be read.
    """

    def __init__(self, config: Mapping[str, Any]) -> None:
        self._sources = load_openapi_sources(config)
        self._clients: dict[str, httpx.AsyncClient] = {}
        self._state = State.NEW
        self._start_error: BaseException | None = None
        self._tools = [
            self._tool(source, operation) for source in self._sources for operation in operations(source.document)
        ]

    @property
    def state(self) -> State:
        """Where this toolset is in its lifecycle."""
        return self._state

    @property
    def tools(self) -> list[Tool]:
        """One tool per operation, in config order, then document order."""
        return list(self._tools)

    async def start(self) -> list[Tool]:
        """Open one HTTP client (connection pool) per API; return `tools`.

        Raises:
            UsageError: called twice, after a failed start, or after `aclose()`. If opening a
                client fails, the clients opened so far are closed, the toolset is FAILED and
                that error is raised.
        """
        refusal = start_refusal(self._state, "this OpenApiToolset", self._start_error)
        if refusal is not None:
            raise UsageError(refusal) from self._start_error
        self._state = State.STARTING
        try:
            for source in self._sources:
                # No base_url: `_request` builds and checks every URL itself. No redirects: the
                # configured headers must not follow one to another URL.
                self._clients[source.name] = httpx.AsyncClient(
                    headers=dict(source.headers), timeout=source.timeout, follow_redirects=False
                )
        except BaseException as exc:
            await self._close_clients()
            self._state, self._start_error = State.FAILED, exc
            raise
        self._state = State.OPEN
        return self.tools

    async def aclose(self) -> None:
        """Close every HTTP client; idempotent."""
        if self._state is State.CLOSED:
            return
        self._state = State.CLOSING
        await self._close_clients()
        self._state = State.CLOSED

    async def _close_clients(self) -> None:
        clients, self._clients = self._clients, {}
        for client in clients.values():
            await client.aclose()

    def _tool(self, source: OpenApiSource, operation: Operation) -> Tool:
        operation = offered(operation, source)

        async def handler(arguments: dict[str, Any]) -> Any:
            client = self._clients.get(source.name)
            if client is None:
                raise ToolError(f"the `{source.name}` API is not open (the session is starting or closed)")
            return await send(client, source, operation, arguments)

        return Tool(
            name=operation.name,
            description=operation.description,
            handler=handler,
            input_schema=operation.input_schema,
            output_schema=operation.output_schema,
            namespace=source.name,
            namespace_description=_api_description(source),
            _validator=_validator_on_first_call(f"{source.name}__{operation.name}", operation.input_schema),
        )


def _validator_on_first_call(tool_name: str, schema: dict[str, Any]) -> Callable[[Any], None]:
    """A schema validator compiled when the tool is first called: an API has a thousand
    operations and a script calls a few, so compiling them all up front would only slow the start."""
    compiled: Callable[[Any], None] | None = None

    def validate(arguments: Any) -> None:
        nonlocal compiled
        if compiled is None:
            compiled = schema_validator(tool_name, schema)
        compiled(arguments)

    return validate


def _api_description(source: OpenApiSource) -> str:
    info = cast(dict[str, Any], source.document.get("info") or {})
    title = str(info.get("title") or source.name).strip()
    return f"{title}: HTTP API operations, called by the host (credentials stay there)."
