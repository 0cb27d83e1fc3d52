"""One OpenAPI call as one HTTP exchange, confined to its API: the request built from a
script's arguments, and the response read within its size cap.

Invariants:
* Each path parameter fills exactly one segment of its operation's path: the value is
  percent-encoded whole (`/`, `?`, `#`, `%`, CR/LF included), may not be empty, `.` or `..`, and
  no built path has a `.` or `..` segment. A URL outside the `base_url`'s origin and path prefix
  is never sent: the call rejects saying so.
* A script cannot set what the configuration sets: header parameters named like a configured
  header, `Host`, `Cookie`, a hop-by-hop or framing header; query parameters named like one of
  the `base_url`'s; cookie parameters named like a configured cookie. `offered` drops them from
  the operation, so the model is never offered them and the strict schema refuses them.
* Texts a script sees (rejections) name the URL without the configured query parameters.
* Redirects are not followed (a 3xx rejects like any non-2xx), so configured headers never
  travel to another URL.
* Response bodies are read streaming and never beyond `max_response_bytes` (decoded): a 2xx
  answer that declares or turns out larger rejects naming the cap; an error answer is quoted
  from what was read.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any, cast
from urllib.parse import quote

import httpx

from codemode.errors import ToolError
from codemode.tools.openapi._config import OpenApiSource
from codemode.tools.openapi._operations import Operation, Parameter, is_json

__all__ = ["MAX_ERROR_BODY_CHARS", "RESERVED_HEADERS", "offered", "send"]

MAX_ERROR_BODY_CHARS = 8_000  # of an error response's body quoted in the rejection
RESERVED_HEADERS = frozenset(
    {
        "host",
        "cookie",
        "content-length",
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
"""Header parameters no script may set, whatever the spec declares (lower case)."""

_DOT_SEGMENTS = frozenset({".", ".."})


def offered(operation: Operation, source: OpenApiSource) -> Operation:
    """`operation` without the parameters the configuration of `source` sets (see the module)."""
    reserved = _reserved(source)
    dropped = {parameter.name for parameter in operation.parameters if reserved(parameter)}
    if not dropped:
        return operation
    schema = operation.input_schema
    properties = {name: value for name, value in schema["properties"].items() if name not in dropped}
    input_schema: dict[str, Any] = {**schema, "properties": properties}
    required = [name for name in schema.get("required", []) if name not in dropped]
    if required:
        input_schema["required"] = required
    else:
        input_schema.pop("required", None)
    return dataclasses.replace(
        operation,
        parameters=tuple(parameter for parameter in operation.parameters if parameter.name not in dropped),
        input_schema=input_schema,
    )


def _reserved(source: OpenApiSource) -> Callable[[Parameter], bool]:
    headers = RESERVED_HEADERS | {name.lower() for name in source.headers}
    query = {name for name, _ in source.base_query}
    cookies = {
        part.split("=", 1)[0].strip()
        for name, value in source.headers.items()
        if name.lower() == "cookie"
        for part in value.split(";")
    }

    def reserved(parameter: Parameter) -> bool:
        match parameter.location:
            case "header":
                return parameter.name.lower() in headers
            case "query":
                return parameter.name in query
            case "cookie":
                return parameter.name in cookies
            case "path":
                return False

    return reserved


async def send(
    client: httpx.AsyncClient, source: OpenApiSource, operation: Operation, arguments: dict[str, Any]
) -> Any:
    """Call `operation` with `arguments`; the response body for a 2xx answer.

    Raises:
        ToolError: the request would leave the API, a parameter cannot be sent as given, the
            request failed, the answer is not 2xx, or a 2xx body exceeds `max_response_bytes`.
    """
    request, shown = _request(client, source, operation, arguments)
    where = f"{operation.method} {shown}"
    try:
        response = await client.send(request, stream=True)
    except httpx.HTTPError as exc:
        raise ToolError(f"{where} failed: {_transport_error(exc, request, shown)}") from None
    try:
        limit = source.max_response_bytes
        if response.is_success and _declared_size(response) > limit:
            raise ToolError(_too_large(where, limit, "declares"))
        try:
            body, complete = await _read(response, limit)
        except httpx.HTTPError as exc:
            raise ToolError(f"{where} failed: {_transport_error(exc, request, shown)}") from None
    finally:
        await response.aclose()
    if response.is_success:
        if not complete:
            raise ToolError(_too_large(where, limit, "has"))
        return _payload(response, body)
    answer = _decoded(response, body)
    if len(answer) > MAX_ERROR_BODY_CHARS:
        answer = answer[:MAX_ERROR_BODY_CHARS] + f"… ({len(answer) - MAX_ERROR_BODY_CHARS} more characters)"
    elif not complete:
        answer += f"… (cut at max_response_bytes, {limit} bytes)"
    raise ToolError(f"{where} answered HTTP {response.status_code} {response.reason_phrase}: {answer}")


def _request(
    client: httpx.AsyncClient, source: OpenApiSource, operation: Operation, arguments: dict[str, Any]
) -> tuple[httpx.Request, str]:
    """The request to send, and its URL as a script may see it (no configured query)."""
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
                path = path.replace("{" + parameter.name + "}", _segment(parameter.name, value))
            case "query":
                values = cast(list[Any], value) if isinstance(value, list) else [value]
                query.extend((parameter.name, _text(item)) for item in values)
            case "header":
                headers[parameter.name] = _header_value(parameter.name, _text(value))
            case "cookie":
                cookies.append(f"{parameter.name}={quote(_text(value), safe='')}")
    url = _confined_url(source, operation, path)
    if cookies:
        configured = [value for name, value in source.headers.items() if name.lower() == "cookie"]
        headers["Cookie"] = "; ".join([*configured, *cookies])
    body = _body(operation, arguments)
    headers.update(body.pop("headers", {}))
    sent = url.copy_merge_params(httpx.QueryParams([*source.base_query, *query]))
    request = client.build_request(operation.method, sent, headers=headers, **body)
    return request, str(url.copy_merge_params(httpx.QueryParams(query)))


def _segment(name: str, value: Any) -> str:
    text = _text(value)
    if text in _DOT_SEGMENTS or not text:
        raise ToolError(
            f"path parameter `{name}` cannot be {text!r}: each path parameter is one path segment; "
            "the request was not sent"
        )
    return quote(text, safe="")


def _confined_url(source: OpenApiSource, operation: Operation, path: str) -> httpx.URL:
    """`path` under `source.base_url`, or a ToolError when it would not stay under it."""
    refusal = f"{operation.method} {path} would leave the API's base URL {source.base_url}; the request was not sent"
    if any(segment in _DOT_SEGMENTS for segment in path.split("?", 1)[0].split("/")):
        raise ToolError(refusal)
    try:
        url = httpx.URL(source.base_url + path)
    except httpx.InvalidURL:
        raise ToolError(refusal) from None
    base = httpx.URL(source.base_url)
    prefix = base.raw_path.rstrip(b"/")
    raw_path = url.raw_path.split(b"?", 1)[0]
    same_origin = (url.scheme, url.host, url.port) == (base.scheme, base.host, base.port)
    if not same_origin or not (raw_path == prefix or raw_path.startswith(prefix + b"/")):
        raise ToolError(refusal)
    return url


def _header_value(name: str, value: str) -> str:
    if not all(" " <= char <= "~" or char == "\t" for char in value):
        raise ToolError(f"header parameter `{name}` must be printable ASCII on one line; the request was not sent")
    return value


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
    if content_type.split(";", 1)[0].strip().lower() == "application/x-www-form-urlencoded" and isinstance(value, dict):
        return {"data": {key: _text(item) for key, item in cast(dict[str, Any], value).items()}}
    if isinstance(value, str) and not content_type.endswith("json"):
        return {"content": value, "headers": {"Content-Type": content_type}}
    return {"content": json.dumps(value, ensure_ascii=False), "headers": {"Content-Type": content_type}}


def _declared_size(response: httpx.Response) -> int:
    """The body size the response announces (0 when unknown, or compressed: then only the
    decoded bytes read count)."""
    length = response.headers.get("content-length", "")
    if "content-encoding" in response.headers or not length.isdigit():
        return 0
    return int(length)


async def _read(response: httpx.Response, limit: int) -> tuple[bytes, bool]:
    """At most `limit` decoded bytes of the body, and whether that was all of it."""
    body = bytearray()
    async for chunk in response.aiter_bytes():
        if len(body) + len(chunk) > limit:
            body += chunk[: limit - len(body)]
            return bytes(body), False
        body += chunk
    return bytes(body), True


def _too_large(where: str, limit: int, verb: str) -> str:
    return (
        f"{where}: the answer {verb} more than max_response_bytes ({limit} bytes), so the host read "
        "no more of it; ask for less (e.g. a smaller page)"
    )


def _transport_error(exc: httpx.HTTPError, request: httpx.Request, shown: str) -> str:
    return f"{type(exc).__name__}: {str(exc).replace(str(request.url), shown)}"


def _payload(response: httpx.Response, body: bytes) -> Any:
    if not body:
        return None
    if is_json(response.headers.get("content-type", "")):
        try:
            return json.loads(body)
        except ValueError:
            return _decoded(response, body)
    return _decoded(response, body)


def _decoded(response: httpx.Response, body: bytes) -> str:
    try:
        return body.decode(response.charset_encoding or "utf-8", errors="replace")
    except LookupError:  # a charset Python does not know
        return body.decode("utf-8", errors="replace")


def _text(value: Any) -> str:
    """A parameter value as the request carries it: JSON spelling for everything but strings."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
