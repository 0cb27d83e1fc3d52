"""The `openapi=` mapping: `{name: {"spec": path_or_dict, "base_url": ..., "headers": {...}}}`.

Invariants:
* Every source is checked when the session is built, so a typo fails at once with the key
  that is wrong, not on the first call.
* Headers (credentials) live only here and in the HTTP client; nothing of them is described
  to the model or sent to the sandbox.
* `base_url` is split into what requests are confined to (an http(s) origin and a path prefix,
  `base_url`) and what is configured like a header (`base_query`, its query parameters). Its
  credentials (`https://user:secret@host`) become an `Authorization: Basic` header and are
  kept nowhere else, so no URL a script or the trace sees can carry them.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import httpx

from codemode.errors import UsageError

__all__ = ["DEFAULT_MAX_RESPONSE_BYTES", "DEFAULT_TIMEOUT", "OpenApiSource", "load_openapi_sources"]

DEFAULT_TIMEOUT = 60.0  # seconds per request
DEFAULT_MAX_RESPONSE_BYTES = 4 << 20  # of one response body, decoded: the host reads no more
_KEYS = frozenset({"spec", "base_url", "headers", "timeout", "max_response_bytes"})


@dataclass(frozen=True)
class OpenApiSource:
    """One API: its parsed document, where to send requests, and what every request carries.

    Attributes:
        name: the namespace of its tools (`tools.<name>__<operation>`).
        document: the OpenAPI 3.x document.
        base_url: the origin and path prefix every request stays under (default: the document's
            first server), without credentials, query or trailing `/`.
        headers: sent with every request (e.g. `Authorization`); never shown to the model.
        timeout: seconds per request.
        base_query: the configured `base_url`'s query parameters, sent first with every request
            and, like headers, shown nowhere.
        max_response_bytes: the most of a response body (decoded) the host reads; a larger
            answer rejects the call.
    """

    name: str
    document: dict[str, Any]
    base_url: str
    headers: Mapping[str, str] = field(default_factory=dict[str, str], repr=False)
    timeout: float = DEFAULT_TIMEOUT
    base_query: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES


def load_openapi_sources(config: Mapping[str, Any]) -> list[OpenApiSource]:
    """Parse and check the `openapi=` mapping.

    Raises:
        UsageError: a source is malformed, its spec cannot be read, or it has no base URL.
    """
    if not isinstance(config, Mapping):
        raise UsageError('`openapi` must be a mapping like {"github": {"spec": "api.json", "base_url": "..."}}')
    return [_source(str(name), entry) for name, entry in config.items()]


def _source(name: str, entry: Any) -> OpenApiSource:
    if not isinstance(entry, Mapping):
        raise UsageError(f"openapi source `{name}` must be a mapping with a `spec` key")
    entry = cast(Mapping[str, Any], entry)
    unknown = sorted(set(entry) - _KEYS)
    if unknown:
        raise UsageError(f"openapi source `{name}` has unknown keys {unknown}; allowed: {sorted(_KEYS)}")
    if "spec" not in entry:
        raise UsageError(f"openapi source `{name}` needs a `spec` (a path to a JSON file, or the parsed document)")
    document = _document(name, entry["spec"])
    base_url = entry.get("base_url") or _first_server(document)
    if not isinstance(base_url, str) or not base_url:
        raise UsageError(f"openapi source `{name}` needs a `base_url`: its spec names no server")
    configured: object = entry.get("headers") or {}
    if not isinstance(configured, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in cast(Mapping[object, object], configured).items()
    ):
        raise UsageError(f"openapi source `{name}`: `headers` must map strings to strings")
    headers = dict(cast(Mapping[str, str], configured))
    timeout = entry.get("timeout", DEFAULT_TIMEOUT)
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout <= 0:
        raise UsageError(f"openapi source `{name}`: `timeout` must be a positive number of seconds")
    max_response_bytes = entry.get("max_response_bytes", DEFAULT_MAX_RESPONSE_BYTES)
    if not isinstance(max_response_bytes, int) or isinstance(max_response_bytes, bool) or max_response_bytes <= 0:
        raise UsageError(f"openapi source `{name}`: `max_response_bytes` must be a positive integer")
    url = _base_url(name, base_url)
    if url.userinfo:
        headers = _with_basic_auth(name, headers, url)
    prefix = httpx.URL(scheme=url.scheme, host=url.host, port=url.port, raw_path=_raw_path(url).rstrip(b"/"))
    return OpenApiSource(
        name,
        document,
        str(prefix),
        headers,
        float(timeout),
        tuple(url.params.multi_items()),
        max_response_bytes,
    )


def _base_url(name: str, base_url: str) -> httpx.URL:
    """`base_url` parsed and checked; error texts never quote it (it may hold a password)."""
    try:
        url = httpx.URL(base_url)
    except httpx.InvalidURL as exc:
        raise UsageError(f"openapi source `{name}`: `base_url` is not a valid URL ({exc})") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise UsageError(f"openapi source `{name}`: `base_url` must be an absolute http:// or https:// URL")
    if url.fragment:
        raise UsageError(f"openapi source `{name}`: `base_url` must not have a `#fragment`")
    return url


def _raw_path(url: httpx.URL) -> bytes:
    return url.raw_path.split(b"?", 1)[0]


def _with_basic_auth(name: str, headers: dict[str, str], url: httpx.URL) -> dict[str, str]:
    """`headers` plus the `base_url`'s `user:password` as HTTP Basic credentials."""
    if any(key.lower() == "authorization" for key in headers):
        raise UsageError(
            f"openapi source `{name}`: `base_url` has credentials (`user:password@`) and `headers` "
            "has an `Authorization`; keep one"
        )
    token = base64.b64encode(f"{url.username}:{url.password}".encode()).decode("ascii")
    return {**headers, "Authorization": f"Basic {token}"}


def _document(name: str, spec: Any) -> dict[str, Any]:
    if isinstance(spec, (str, os.PathLike)):
        path = Path(cast(str, spec))
        try:
            spec = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UsageError(f"openapi source `{name}`: cannot read the JSON spec {path}: {exc}") from exc
    if not isinstance(spec, dict) or not str(cast(dict[str, Any], spec).get("openapi", "")).startswith("3."):
        raise UsageError(
            f"openapi source `{name}`: the spec must be an OpenAPI 3.x document (an `openapi: 3.x` object)"
        )
    return cast(dict[str, Any], spec)


def _first_server(document: dict[str, Any]) -> str | None:
    servers = document.get("servers")
    if isinstance(servers, list) and servers and isinstance(servers[0], dict):
        url = cast(dict[str, Any], servers[0]).get("url")
        return url if isinstance(url, str) and "://" in url else None
    return None
