"""The `{"mcpServers": {...}}` configuration: parsing and validation, nothing else.

Invariants: every public model is frozen and validated once; every problem a user can make in a
config file surfaces as one `UsageError` whose message names the server and the field. Nothing
here touches the network or spawns a process.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, TypeAlias, cast

import pydantic
from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from codemode.errors import UsageError

__all__ = [
    "DEFAULT_STARTUP_TIMEOUT",
    "DEFAULT_TOOL_TIMEOUT",
    "McpConfig",
    "McpHttpServer",
    "McpServerConfig",
    "McpStdioServer",
    "load_mcp_config",
]

DEFAULT_TOOL_TIMEOUT = 60.0
"""Seconds one tool call may take before it is cancelled and rejected."""

DEFAULT_STARTUP_TIMEOUT = 30.0
"""Seconds a server may take to start, initialize and list its tools."""

# Server names become part of JS identifiers (`mcp__<server>__<tool>`); Codex allows the same set.
_SERVER_NAME = re.compile(r"^[A-Za-z0-9_-]+$")

_Seconds = Annotated[float, Field(gt=0)]


class _ServerBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    timeout: _Seconds = DEFAULT_TOOL_TIMEOUT
    """Per-call timeout in seconds."""
    startup_timeout: _Seconds = Field(
        default=DEFAULT_STARTUP_TIMEOUT,
        validation_alias=AliasChoices("startup_timeout", "startupTimeout"),
    )
    """Seconds allowed for start-up (spawn or connect, initialize, list tools)."""
    required: bool = False
    """If true, `McpToolset.start()` fails when this server fails; else it is skipped."""
    disabled: bool = False
    """If true, the server is neither started nor listed."""
    per_session: bool = Field(default=False, validation_alias=AliasChoices("per_session", "perSession"))
    """If true, every session starts its own copy instead of sharing one with the other sessions
    of the process: for stateful servers whose state must not leak between sessions."""
    requires_approval: bool | list[str] = Field(
        default=False, validation_alias=AliasChoices("requires_approval", "requiresApproval")
    )
    """True: every call of the server's tools waits for approval (`CodeMode(approve=...)`); a list:
    the calls of the tools so named (as the server names them)."""


class McpStdioServer(_ServerBase):
    """A server run as a subprocess speaking MCP over stdin/stdout.

    `env` is merged over a small safe default environment (HOME, PATH, USER, ...), not over the
    whole parent environment. `cwd` defaults to the current directory.
    """

    type: Literal["stdio"] = "stdio"
    command: str = Field(min_length=1)
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None


class McpHttpServer(_ServerBase):
    """A server reached over the streamable-HTTP transport at `url`, with extra `headers`."""

    type: Literal["http", "streamable-http", "streamableHttp", "streamable_http"] = "http"
    url: str = Field(min_length=1)
    headers: dict[str, str] = Field(default_factory=dict)


McpServerConfig: TypeAlias = McpStdioServer | McpHttpServer


class McpConfig(BaseModel):
    """A parsed `{"mcpServers": {name: {...}}}` config; servers keep the file's order."""

    model_config = ConfigDict(frozen=True)

    servers: dict[str, McpServerConfig] = Field(default_factory=dict)

    @property
    def enabled(self) -> dict[str, McpServerConfig]:
        """The servers that are not `disabled`, in config order."""
        return {name: server for name, server in self.servers.items() if not server.disabled}


def load_mcp_config(source: McpConfig | Mapping[str, Any] | str | os.PathLike[str]) -> McpConfig:
    """Parse an MCP servers config from a JSON file path or an already-loaded mapping.

    The format is the common one: `{"mcpServers": {"<name>": {...}}}`, where a server has either
    `command` (+ `args`, `env`, `cwd`: a stdio subprocess) or `url` (+ `headers`: streamable
    HTTP), and optionally `timeout` (seconds per call, default 60), `startup_timeout`
    (default 30), `required`, `disabled`, `per_session` (a copy of the server per session
    instead of one shared by all sessions of the process) and `requires_approval` (true, or the
    names of the tools whose calls wait for approval).

    Args:
        source: a path to a JSON file, a mapping as loaded from one, or a ready `McpConfig`.

    Raises:
        UsageError: the file cannot be read or parsed, or a server entry is invalid; the
            message names the server and the field.
    """
    if isinstance(source, McpConfig):
        return source
    data: object
    if isinstance(source, (str, os.PathLike)):
        data = _read_json(Path(source))
        origin = f"MCP config {os.fspath(source)!r}"
    else:
        data = cast(object, source)
        origin = "MCP config"
    if not isinstance(data, Mapping):
        raise UsageError(
            f"{origin}: expected a JSON object with an `mcpServers` key, not {type(data).__name__}"
        )
    top = cast(Mapping[object, object], data)
    if "mcpServers" not in top:
        raise UsageError(
            f"{origin}: missing the `mcpServers` key; expected "
            '{"mcpServers": {"<name>": {"command": ...} or {"url": ...}}}'
        )
    unknown = sorted(str(key) for key in top if key != "mcpServers")
    if unknown:
        raise UsageError(
            f"{origin}: unknown top-level key(s) {', '.join(unknown)}; only `mcpServers` is read"
        )
    raw_servers = top["mcpServers"]
    if not isinstance(raw_servers, Mapping):
        raise UsageError(f"{origin}: `mcpServers` must be an object mapping server names to settings")
    servers: dict[str, McpServerConfig] = {}
    for name, raw in cast(Mapping[object, object], raw_servers).items():
        servers[str(name)] = _parse_server(origin, name, raw)
    return McpConfig(servers=servers)


def _read_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read MCP config {str(path)!r}: {exc.strerror or exc}") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(
            f"MCP config {str(path)!r} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from exc


def _parse_server(origin: str, name: object, raw: object) -> McpServerConfig:
    if not isinstance(name, str) or not _SERVER_NAME.match(name):
        raise UsageError(
            f"{origin}: invalid server name {name!r}; use letters, digits, `_` and `-` only "
            "(the name becomes part of the tool names `mcp__<server>__<tool>`)"
        )
    where = f"{origin}: server `{name}`"
    if not isinstance(raw, Mapping):
        raise UsageError(f"{where} must be an object with `command` or `url`")
    raw = cast(Mapping[str, object], raw)
    kind = raw.get("type")
    if kind in ("sse",):
        raise UsageError(
            f"{where}: the SSE transport is not supported; use a streamable-HTTP `url` or a stdio `command`"
        )
    has_command, has_url = "command" in raw, "url" in raw
    if has_command and has_url:
        raise UsageError(f"{where} has both `command` and `url`; keep `command` for stdio or `url` for HTTP")
    if not has_command and not has_url:
        raise UsageError(f"{where} needs `command` (a stdio server) or `url` (a streamable-HTTP server)")
    model: type[McpStdioServer] | type[McpHttpServer] = McpStdioServer if has_command else McpHttpServer
    try:
        return model.model_validate(dict(raw))
    except pydantic.ValidationError as exc:
        raise UsageError(f"{where}: {_describe(exc, model)}") from None


def _describe(exc: pydantic.ValidationError, model: type[BaseModel]) -> str:
    problems: list[str] = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "settings"
        if error["type"] == "extra_forbidden":
            allowed = ", ".join(f"`{key}`" for key in model.model_fields)
            problems.append(f"unknown key `{where}` (allowed: {allowed})")
        elif error["type"] == "literal_error" and where == "type":
            problems.append(f"`type` {error.get('input')!r} does not match the other keys ({error['msg']})")
        else:
            problems.append(f"`{where}`: {error['msg']}")
    return "; ".join(problems)
