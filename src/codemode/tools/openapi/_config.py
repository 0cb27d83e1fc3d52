"""The `openapi=` mapping: `{name: {"spec": path_or_dict, "base_url": ..., "headers": {...}}}`.

Invariants:
* Every source is checked when the session is built, so a typo fails at once with the key
  that is wrong, not on the first call.
* Headers (credentials) live only here and in the HTTP client; nothing of them is described
  to the model or sent to the sandbox.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from codemode.errors import UsageError

__all__ = ["DEFAULT_TIMEOUT", "OpenApiSource", "load_openapi_sources"]

DEFAULT_TIMEOUT = 60.0  # seconds per request
_KEYS = frozenset({"spec", "base_url", "headers", "timeout"})


@dataclass(frozen=True)
class OpenApiSource:
    """One API: its parsed document, where to send requests, and what every request carries.

    Attributes:
        name: the namespace of its tools (`tools.<name>__<operation>`).
        document: the OpenAPI 3.x document.
        base_url: the server URL requests go to (default: the document's first server).
        headers: sent with every request (e.g. `Authorization`); never shown to the model.
        timeout: seconds per request.
    """

    name: str
    document: dict[str, Any]
    base_url: str
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    timeout: float = DEFAULT_TIMEOUT


def load_openapi_sources(config: Mapping[str, Any]) -> list[OpenApiSource]:
    """Parse and check the `openapi=` mapping.

    Raises:
        UsageError: a source is malformed, its spec cannot be read, or it has no base URL.
    """
    if not isinstance(config, Mapping):
        raise UsageError(
            '`openapi` must be a mapping like {"github": {"spec": "api.json", "base_url": "..."}}'
        )
    return [_source(str(name), entry) for name, entry in config.items()]


def _source(name: str, entry: Any) -> OpenApiSource:
    if not isinstance(entry, Mapping):
        raise UsageError(f"openapi source `{name}` must be a mapping with a `spec` key")
    entry = cast(Mapping[str, Any], entry)
    unknown = sorted(set(entry) - _KEYS)
    if unknown:
        raise UsageError(f"openapi source `{name}` has unknown keys {unknown}; allowed: {sorted(_KEYS)}")
    if "spec" not in entry:
        raise UsageError(
            f"openapi source `{name}` needs a `spec` (a path to a JSON file, or the parsed document)"
        )
    document = _document(name, entry["spec"])
    base_url = entry.get("base_url") or _first_server(document)
    if not isinstance(base_url, str) or not base_url:
        raise UsageError(f"openapi source `{name}` needs a `base_url`: its spec names no server")
    headers = entry.get("headers") or {}
    if not isinstance(headers, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        raise UsageError(f"openapi source `{name}`: `headers` must map strings to strings")
    timeout = entry.get("timeout", DEFAULT_TIMEOUT)
    if not isinstance(timeout, (int, float)) or timeout <= 0:
        raise UsageError(f"openapi source `{name}`: `timeout` must be a positive number of seconds")
    return OpenApiSource(
        name, document, base_url.rstrip("/"), dict(cast(Mapping[str, str], headers)), float(timeout)
    )


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
