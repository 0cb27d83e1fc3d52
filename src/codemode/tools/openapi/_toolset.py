"""`OpenApiToolset`: each operation of each configured API as a `Tool`, called over HTTP.

Invariants:
* Lifecycle is UNOPENED -> OPEN -> CLOSED, one way: `tools` exist from construction (reading
  the specs is all it takes), requests need `start()` (one pooled `httpx.AsyncClient` per API),
  `aclose()` closes the clients and is idempotent.
* A call resolves with the response body (parsed JSON, text, or null when empty) for a 2xx
  status, and rejects with the method, URL, status and body otherwise; transport errors reject
  naming the request. Headers from the config go out with every request and appear nowhere else.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Mapping
from typing import Any, cast
from urllib.parse import quote

import httpx

from codemode.errors import ToolError, UsageError
from codemode.tools._tool import Tool, _schema_validator
from codemode.tools.openapi._config import OpenApiSource, load_openapi_sources
from codemode.tools.openapi._operations import Operation, _is_json, operations

__all__ = ["MAX_ERROR_BODY_CHARS", "OpenApiToolset"]

MAX_ERROR_BODY_CHARS = 8_000  # of an error response's body quoted in the rejection


class _State(enum.Enum):
    UNOPENED = "unopened"
    OPEN = "open"
    CLOSED = "closed"


class OpenApiToolset:
    """OpenAPI operations as nested tools: `await tools.<api>__<operation>(args)` in the script.

    Use it as an async context manager (or `start()` / `aclose()`)::

        async with OpenApiToolset({"github": {"spec": "api.github.com.json",
                                              "headers": {"Authorization": "Bearer ..."}}}) as api:
            async with CodeMode(tools=api.tools) as cm: ...

    (`CodeMode(openapi=...)` does the same for you.)

    Args:
        config: `{name: {"spec": path_or_dict, "base_url": str, "headers": {...}, "timeout": s}}`;
            `base_url` defaults to the spec's first server.

    Raises:
        UsageError: the config is invalid or a spec cannot be read.
    """

    def __init__(self, config: Mapping[str, Any]) -> None:
        self._sources = load_openapi_sources(config)
        self._clients: dict[str, httpx.AsyncClient] = {}
        self._state = _State.UNOPENED
        self._tools = [
            self._tool(source, operation)
            for source in self._sources
            for operation in operations(source.document)
        ]

    @property
    def tools(self) -> list[Tool]:
        """One tool per operation, in config order, then document order."""
        return list(self._tools)

    async def start(self) -> None:
        """Open one HTTP client (connection pool) per API.

        Raises:
            UsageError: called twice, or after `aclose()`.
        """
        if self._state is not _State.UNOPENED:
            raise UsageError("OpenApiToolset.start() can be called only once, before aclose()")
        self._state = _State.OPEN
        for source in self._sources:
            self._clients[source.name] = httpx.AsyncClient(
                base_url=source.base_url, headers=dict(source.headers), timeout=source.timeout
            )

    async def aclose(self) -> None:
        """Close every HTTP client; idempotent."""
        self._state = _State.CLOSED
        clients, self._clients = self._clients, {}
        for client in clients.values():
            await client.aclose()

    async def __aenter__(self) -> OpenApiToolset:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def _tool(self, source: OpenApiSource, operation: Operation) -> Tool:
        async def handler(arguments: dict[str, Any]) -> Any:
            client = self._clients.get(source.name)
            if client is None:
                raise ToolError(f"the `{source.name}` API is not open (the session is starting or closed)")
            return await _send(client, operation, arguments)

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


async def _send(client: httpx.AsyncClient, operation: Operation, arguments: dict[str, Any]) -> Any:
    path = operation.path
    query: list[tuple[str, str | int | float | bool | None]] = []
    headers: dict[str, str] = {}
    cookies: list[str] = []
    for parameter in operation.parameters:
        if parameter.name not in arguments:
            continue
        value = arguments[parameter.name]
        match parameter.location:
            case "path":
                path = path.replace("{" + parameter.name + "}", quote(_text(value), safe=""))
            case "query":
                values = value if isinstance(value, list) else [value]
                query.extend((parameter.name, _text(item)) for item in values)
            case "header":
                headers[parameter.name] = _text(value)
            case "cookie":
                cookies.append(f"{parameter.name}={quote(_text(value), safe='')}")
    if cookies:
        headers["Cookie"] = "; ".join(cookies)
    body = _body(operation, arguments)
    headers.update(body.pop("headers", {}))
    request = client.build_request(operation.method, path, params=query, headers=headers, **body)
    try:
        response = await client.send(request)
    except httpx.HTTPError as exc:
        raise ToolError(f"{operation.method} {request.url} failed: {type(exc).__name__}: {exc}") from None
    if response.is_success:
        return _payload(response)
    answer = response.text
    if len(answer) > MAX_ERROR_BODY_CHARS:
        answer = answer[:MAX_ERROR_BODY_CHARS] + f"… ({len(answer) - MAX_ERROR_BODY_CHARS} more characters)"
    status = f"HTTP {response.status_code} {response.reason_phrase}"
    raise ToolError(f"{operation.method} {request.url} answered {status}: {answer}")


def _body(operation: Operation, arguments: dict[str, Any]) -> dict[str, Any]:
    """The request's body keywords for httpx, shaped by the operation's media type."""
    match operation.body_shape:
        case "none":
            return {}
        case "flat":
            value: Any = {name: arguments[name] for name in operation.body_fields if name in arguments}
        case "whole":
            if operation.body_argument not in arguments:
                return {}
            value = arguments[operation.body_argument]
    content_type = operation.content_type or "application/json"
    if content_type.split(";", 1)[0].strip().lower() == "application/x-www-form-urlencoded" and isinstance(
        value, dict
    ):
        return {"data": {key: _text(item) for key, item in cast(dict[str, Any], value).items()}}
    if isinstance(value, str) and not content_type.endswith("json"):
        return {"content": value, "headers": {"Content-Type": content_type}}
    return {"content": json.dumps(value, ensure_ascii=False), "headers": {"Content-Type": content_type}}


def _validator_on_first_call(tool_name: str, schema: dict[str, Any]) -> Callable[[Any], None]:
    """A schema validator compiled when the tool is first called: an API has a thousand
    operations and a script calls a few, so compiling them all up front would only slow the start."""
    compiled: Callable[[Any], None] | None = None

    def validate(arguments: Any) -> None:
        nonlocal compiled
        if compiled is None:
            compiled = _schema_validator(tool_name, schema)
        compiled(arguments)

    return validate


def _payload(response: httpx.Response) -> Any:
    if not response.content:
        return None
    if _is_json(response.headers.get("content-type", "")):
        try:
            return response.json()
        except ValueError:
            return response.text
    return response.text


def _text(value: Any) -> str:
    """A parameter value as the request carries it: JSON spelling for everything but strings."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _api_description(source: OpenApiSource) -> str:
    info = cast(dict[str, Any], source.document.get("info") or {})
    title = str(info.get("title") or source.name).strip()
    return f"{title}: HTTP API operations, called by the host (credentials stay there)."
