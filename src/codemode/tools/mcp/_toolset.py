"""`McpToolset`: the configured MCP servers of one session, their tools exposed as `Tool`s.

Invariants:
* Lifecycle is `State` NEW → STARTING → OPEN (or FAILED) → CLOSING → CLOSED, one way; `start()`
  runs once, `aclose()` is idempotent and returns only when every server this toolset alone used
  has been stopped. A failed start has released every server before it raises.
* Servers are shared with the other toolsets of the event loop (`_shared`), except those marked
  `per_session`, which this toolset starts and stops itself.
* Tools that only run as MCP tasks (`execution.taskSupport: "required"`) are left out and named
  in `notice`: a plain `tools/call` to them fails.
* A server that fails to start never takes the others down: its error is kept in `failures`,
  logged, and summarised for the model by `notice`; only a server marked `required` makes
  `start()` raise.
* Tool names are `mcp__<server>__<tool>` with the raw MCP tool name (the JS-name normaliser
  turns `get-sum` into `get_sum`); they carry no namespace (spec §1.7: already qualified).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass, replace
from typing import Any, cast

import mcp_types as types

from codemode._protocol.lifecycle import State, start_refusal, use_refusal
from codemode.errors import ToolError, UsageError
from codemode.tools._source import ToolSource
from codemode.tools._tool import Tool
from codemode.tools.mcp._config import McpConfig, McpServerConfig, load_mcp_config
from codemode.tools.mcp._connection import (
    Hooks,
    LogHook,
    McpServerError,
    ProgressHook,
    ServerConnection,
)
from codemode.tools.mcp._shared import ServerLease, shared_servers

__all__ = ["McpToolset", "mcp_tool_name", "shared_servers_running"]

_logger = logging.getLogger("codemode.tools.mcp")


def mcp_tool_name(server: str, tool: str) -> str:
    """The raw nested-tool name of MCP tool `tool` on server `server`: `mcp__<server>__<tool>`."""
    return f"mcp__{server}__{tool}"


class McpToolset(ToolSource):
    """MCP servers as nested tools: `await tools.mcp__<server>__<tool>(args)` in the script.

    Use it as an async context manager (or call `start()` and `aclose()` yourself)::

        async with McpToolset("mcp.json") as mcp, CodeMode(tools=[*my_tools, *mcp.tools]) as cm:
            ...

    (`CodeMode(mcp_servers=...)` does the same for you.)

    A call resolves with the MCP `CallToolResult` as JSON with the wire's camelCase names:
    `{content: [...], structuredContent?: ..., isError: bool}` (top-level `_meta` dropped); a
    result with `isError: true` resolves too. Timeouts, protocol errors and crashes reject with a
    message naming the server and the tool; a crashed server is restarted on the next call.
    Start, call and close it on one event loop. Toolsets on that loop that name the same server
    settings share one connection (one server process); it stops when the last one closes.

    Args:
        config: a path to a JSON config file, a mapping in the `{"mcpServers": {...}}` format,
            or an `McpConfig` (see `load_mcp_config`).
        on_progress: called (sync or async) with an `McpProgress` for each progress notification
            of a running call, in the context (contextvars) of the task that made the call, so
            a host can route it to the right cell. Progress is also logged at DEBUG.
        on_log: called with an `McpLogMessage` for each log message a server sends. Messages are
            also forwarded to the Python logger `codemode.tools.mcp.<server>` at the matching level.
        log_level: the lowest level servers are asked to send log messages at.

    Raises:
        UsageError: the config is invalid.
    """

    def __init__(
        self,
        config: McpConfig | Mapping[str, Any] | str | os.PathLike[str],
        *,
        on_progress: ProgressHook | None = None,
        on_log: LogHook | None = None,
        log_level: types.LoggingLevel = "info",
    ) -> None:
        self._config = load_mcp_config(config)
        self._hooks = Hooks(on_progress=on_progress, on_log=on_log, log_level=log_level)
        self._leases: list[ServerLease[_ServerTools]] = []
        self._own: list[ServerConnection] = []
        self._state = State.NEW
        self._start_error: BaseException | None = None
        self._tools: list[Tool] = []
        self._failures: dict[str, McpServerError] = {}
        self._task_only: list[str] = []

    @property
    def config(self) -> McpConfig:
        """The parsed configuration."""
        return self._config

    @property
    def state(self) -> State:
        """Where this toolset is in its lifecycle."""
        return self._state

    @property
    def tools(self) -> list[Tool]:
        """The tools of every server that started, in config order, then server order.

        Raises:
            UsageError: `start()` has not been called yet, or it failed.
        """
        if self._state in (State.NEW, State.STARTING):
            raise UsageError("McpToolset.tools is available after start() (or `async with McpToolset(...)`)")
        if self._state is State.FAILED:
            raise UsageError(use_refusal(self._state, "this McpToolset", self._start_error)) from self._start_error
        return list(self._tools)

    @property
    def failures(self) -> Mapping[str, McpServerError]:
        """Servers that failed to start, by name; their tools are missing from `tools`."""
        return dict(self._failures)

    @property
    def notice(self) -> str | None:
        """A short text for the model about missing tools (servers that failed to start, tools
        that only run as MCP tasks), or None if nothing is missing.

        Put it next to the tool list (e.g. at the end of the `exec` description) so the model
        knows why tools it may expect are missing instead of guessing names.
        """
        lines: list[str] = []
        if self._failures:
            lines.append("Some MCP servers failed to start, so their tools are not available:")
            for name, error in self._failures.items():
                lines.append(f"- `{name}`: {error.public_reason}")  # the model reads no host details
        if self._task_only:
            lines.append(
                "These MCP tools only run as MCP tasks, which code mode does not call yet, so they "
                "are not in `tools`: " + ", ".join(f"`{name}`" for name in self._task_only)
            )
        return "\n".join(lines) or None

    async def start(self) -> list[Tool]:
        """Start (or join) every enabled server concurrently; return their tools (`tools`).

        Servers are shared with the other toolsets of this event loop that name the same
        settings, unless marked `per_session`. Servers that fail are recorded in `failures` and
        logged as warnings; the others stay usable.

        Raises:
            UsageError: called twice, after a failed start, or after `aclose()`.
            McpServerError: a server marked `required` failed (all servers are released first;
                the toolset is then FAILED).
        """
        refusal = start_refusal(self._state, "this McpToolset", self._start_error)
        if refusal is not None:
            raise UsageError(refusal) from self._start_error
        self._state = State.STARTING
        try:
            await self._start_servers()
        except BaseException as exc:
            await self._release()
            if self._state is State.STARTING:  # (not closed meanwhile)
                self._state, self._start_error = State.FAILED, exc
            raise
        if self._state is not State.STARTING:  # closed while starting: what started goes too
            await self._release()
            raise UsageError(use_refusal(self._state, "this McpToolset"))
        self._state = State.OPEN
        return list(self._tools)

    async def _start_servers(self) -> None:
        names = list(self._config.enabled)
        outcomes = await asyncio.gather(*(self._open(name) for name in names), return_exceptions=True)
        unexpected: BaseException | None = None
        for name, outcome in zip(names, outcomes, strict=True):
            if isinstance(outcome, McpServerError):
                self._failures[name] = outcome
                if not self._config.servers[name].required:  # (a required one is raised instead)
                    _logger.warning("%s; its tools are left out", outcome.summary)
            elif isinstance(outcome, BaseException):
                unexpected = unexpected or outcome
            else:
                self._tools.extend(_with_approvals(name, self._config.servers[name], outcome.tools))
                self._task_only.extend(outcome.task_only)
        if unexpected is not None:
            raise unexpected
        required = [name for name in self._failures if self._config.servers[name].required]
        if required:
            raise self._failures[required[0]]

    async def _open(self, name: str) -> _ServerTools:
        config = self._config.servers[name]
        if not config.per_session:
            lease = await shared_servers().acquire(name, config, self._hooks, _server_tools)
            self._leases.append(lease)
            return lease.built
        connection = ServerConnection(name, config, self._hooks)
        self._own.append(connection)
        return _server_tools(connection, await connection.start())

    async def aclose(self) -> None:
        """Release every server; idempotent. A server this toolset alone used is stopped (a
        stdio process is terminated and reaped), and its calls still running are rejected with
        a "shut down" message.
        """
        if self._state is State.CLOSED:
            return
        self._state = State.CLOSING
        await self._release()
        self._state = State.CLOSED

    async def _release(self) -> None:
        leases, self._leases = self._leases, []
        own, self._own = self._own, []
        await asyncio.gather(
            *(lease.release() for lease in leases), *(connection.aclose() for connection in own)
        )

@contextlib.asynccontextmanager
async def shared_servers_running(
    config: McpConfig | Mapping[str, Any] | str | os.PathLike[str],
) -> AsyncGenerator[McpToolset]:
    """Start the shared servers of `config` now and keep them running until exit, used or not.

    A server process (`codemode mcp`) wants its downstream servers up before the first client
    comes, and kept between clients, not started and stopped with each one. Servers that fail
    are logged (and retried by the next session that needs them); none of them is required here.
    """
    parsed = load_mcp_config(config)
    shared = McpConfig(
        servers={
            name: server.model_copy(update={"required": False})
            for name, server in parsed.enabled.items()
            if not server.per_session
        }
    )
    async with McpToolset(shared) as toolset:
        yield toolset


@dataclass(frozen=True)
class _ServerTools:
    """A server's tools as `Tool`s, and those left out because they only run as MCP tasks."""

    tools: list[Tool]
    task_only: list[str]


def _server_tools(connection: ServerConnection, listed: list[types.Tool]) -> _ServerTools:
    """Built once per connection: shared servers share their `Tool`s (schema checks are costly)."""
    tools: list[Tool] = []
    task_only: list[str] = []
    for mcp_tool in listed:
        if mcp_tool.execution is not None and mcp_tool.execution.task_support == "required":
            task_only.append(mcp_tool_name(connection.name, mcp_tool.name))
            continue
        tool = _make_tool(connection, mcp_tool)
        if tool is not None:
            tools.append(tool)
    return _ServerTools(tools, task_only)


def _make_tool(connection: ServerConnection, mcp_tool: types.Tool) -> Tool | None:
    remote_name = mcp_tool.name
    name = mcp_tool_name(connection.name, remote_name)

    async def handler(arguments: Any) -> dict[str, Any]:
        if arguments is None:
            arguments = {}
        if not isinstance(arguments, dict):
            raise ToolError(f"tool `{name}` expects a JSON object for arguments")
        return await connection.call(remote_name, cast(dict[str, Any], arguments))

    description = mcp_tool.description or mcp_tool.title or ""
    output_schema = _output_schema(mcp_tool.output_schema)
    def build(**extra: Any) -> Tool:
        return Tool(
            name=name,
            description=description,
            handler=handler,
            input_schema=mcp_tool.input_schema,
            output_schema=output_schema,
            **extra,
        )

    try:
        return build()
    except UsageError as exc:
        # A server with one malformed schema should not lose its other tools; the server
        # validates arguments itself, so skip local validation for this tool.
        connection.logger.warning("%s; arguments of `%s` will not be checked locally", exc, name)
        return build(_validator=_no_validation)


def _with_approvals(server: str, config: McpServerConfig, tools: list[Tool]) -> list[Tool]:
    """The server's tools, marked as the config's `requires_approval` says (per toolset: shared
    connections share their tools unmarked)."""
    setting = config.requires_approval
    if setting is False:
        return tools
    prefix = mcp_tool_name(server, "")
    if setting is True:
        return [replace(tool, requires_approval=True) for tool in tools]
    named = set(setting)
    marked = [
        replace(tool, requires_approval=True) if tool.name.removeprefix(prefix) in named else tool
        for tool in tools
    ]
    unknown = sorted(named - {tool.name.removeprefix(prefix) for tool in tools})
    if unknown:
        _logger.warning(
            "MCP server `%s` has no tool named %s (listed in `requires_approval`)", server, ", ".join(unknown)
        )
    return marked


def _no_validation(arguments: Any) -> None:
    return None


def _output_schema(structured: dict[str, Any] | None) -> dict[str, Any]:
    # Imported here: `_describe` renders tools, so it must not be a load-time dependency of them.
    from codemode._describe.mcp_types import mcp_output_schema

    return mcp_output_schema(structured)
