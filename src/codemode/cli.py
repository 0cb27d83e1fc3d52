"""The `codemode` command: run a script the way a model would, or serve code mode over MCP.

A thin adapter over the public API: it builds a `CodeMode`, calls `exec`/`wait`, and prints
what the model would receive.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from codemode._loop import run as run_loop
from codemode._output import model_items
from codemode._protocol.calls import ToolCall
from codemode._protocol.config import DEFAULT_LIMITS
from codemode._protocol.types import AudioItem, ExecResult, ImageItem, OutputItem, TextItem
from codemode._session.options import CodeModeOptions
from codemode._session.session import CodeMode
from codemode.errors import ToolError, UsageError
from codemode.formats import to_model
from codemode.formats._data_url import parse_data_url
from codemode.formats._text import wire_text
from codemode.mcp_server._http import DEFAULT_MAX_SESSIONS, DEFAULT_SESSION_IDLE_TIMEOUT_S
from codemode.tools import Tool
from codemode.tools.mcp import McpServerError


def load_tools(spec: str) -> list[Tool | Callable[..., Any]]:
    """`package.module:attr` -> the tools it names (a function, a Tool, or a list of them)."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise click.BadParameter(f"expected module:attr, got {spec!r}", param_hint="--tools")
    sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise click.BadParameter(f"cannot import {module_name!r}: {exc}", param_hint="--tools") from exc
    try:
        value = getattr(module, attr)
    except AttributeError:
        raise click.BadParameter(f"{module_name!r} has no attribute {attr!r}", param_hint="--tools") from None
    if isinstance(value, Tool) or callable(value):
        return [value]
    if isinstance(value, Iterable):
        return list(value)
    raise click.BadParameter(f"{spec} is neither a tool nor a list of tools", param_hint="--tools")


def render_items(items: Iterable[OutputItem]) -> str:
    """The model-facing items as terminal text (media shown as a one-line summary)."""
    parts = []
    for item in items:
        if isinstance(item, TextItem):
            parts.append(item.text)
        elif isinstance(item, ImageItem):
            parts.append(f"[image {_media_summary(item.image_url)}, detail {item.detail}]")
        elif isinstance(item, AudioItem):
            parts.append(f"[audio {_media_summary(item.audio_url)}]")
    return "\n".join(parts)


def _media_summary(url: str) -> str:
    parsed = parse_data_url(url)
    return url[:40] if parsed is None else f"{parsed.mime_type}, {len(parsed.data)} base64 chars"


def engine_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """The options that pick and size the JavaScript engine and bound each cell (`CodeMode`'s
    keywords, and the engine's own)."""
    options = [
        click.option(
            "--isolation",
            type=click.Choice(["process", "in-process"]),
            default="process",
            show_default=True,
            help="Run V8 in supervised engine processes, or inside this process.",
        ),
        click.option(
            "--engine-workers",
            type=click.IntRange(1),
            default=None,
            help="Engine worker processes (--isolation process; default: max(4, cores)).",
        ),
        click.option(
            "--isolate-pool-size",
            type=click.IntRange(0),
            default=None,
            help="V8 isolates kept prepared (per worker, or in this process).",
        ),
        click.option("--cell-time-limit-ms", type=click.IntRange(1), default=None, help="Stop a cell after this long."),
        click.option("--heap-limit-bytes", type=click.IntRange(1), default=None, help="V8 heap limit per cell."),
        click.option("--max-concurrent-cells", type=click.IntRange(1), default=None, help="Open cells per session."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def session_options(
    isolation: str,
    engine_workers: int | None,
    isolate_pool_size: int | None,
    cell_time_limit_ms: int | None,
    heap_limit_bytes: int | None,
    max_concurrent_cells: int | None,
) -> CodeModeOptions:
    """`CodeMode` keyword arguments from the engine options: the engine, and `Limits` with the
    limits given (the others keep their defaults)."""
    from codemode import engines

    options = CodeModeOptions(isolation="in-process" if isolation == "in-process" else "process")
    if isolation == "process" and (engine_workers is not None or isolate_pool_size is not None):
        sizes = {} if isolate_pool_size is None else {"isolate_pool_size": isolate_pool_size}
        options["engine"] = engines.ProcessEngine(engine_workers, **sizes)
    elif isolation == "in-process" and isolate_pool_size is not None:
        options["engine"] = engines.InProcessEngine(isolate_pool_size)
    elif engine_workers is not None:
        raise click.BadParameter("only --isolation process has engine workers", param_hint="--engine-workers")
    given = {
        "cell_time_limit_ms": cell_time_limit_ms,
        "heap_limit_bytes": heap_limit_bytes,
        "max_concurrent_cells": max_concurrent_cells,
    }
    limits = {key: value for key, value in given.items() if value is not None}
    if limits:
        options["limits"] = replace(DEFAULT_LIMITS, **limits)
    return options


def checked_config(path: str | None) -> str | None:
    """The MCP config path, once it parses: a bad file is a usage error before anything starts."""
    if path is not None:
        from codemode.tools.mcp import load_mcp_config

        try:
            load_mcp_config(path)
        except UsageError as exc:
            raise click.BadParameter(str(exc), param_hint="--mcp-config") from None
    return path


@click.group()
@click.version_option(package_name="codemode")
def main() -> None:
    """Code mode for LLM agents: model-written JavaScript calling your tools in V8."""


@main.command("exec")
@click.argument("script", type=click.File("r", encoding="utf-8"))
@click.option("--tools", "tool_specs", multiple=True, metavar="MODULE:ATTR", help="Python tools to expose.")
@click.option("--mcp-config", type=click.Path(exists=True, dir_okay=False), help="MCP servers JSON file.")
@click.option("--yield-time-ms", type=int, default=None, help="Yield to print progress after this long.")
@click.option("--max-output-tokens", type=int, default=None)
@click.option("--json", "as_json", is_flag=True, help="Print each observation as Responses-API JSON.")
@engine_options
def exec_command(
    script: Any,
    tool_specs: tuple[str, ...],
    mcp_config: str | None,
    yield_time_ms: int | None,
    max_output_tokens: int | None,
    as_json: bool,
    **engine: Any,
) -> None:
    """Run SCRIPT (a file, or - for stdin) like a model's exec call; waits through yields.

    Prints exactly what the model would receive for every observation; exits 1 if the script
    failed or code mode could not start (e.g. a `required` MCP server failed).
    """
    tools: list[Tool | Callable[..., Any]] = []
    for spec in tool_specs:
        tools.extend(load_tools(spec))
    source = script.read()
    options = session_options(**engine) | CodeModeOptions(
        mcp_servers=checked_config(mcp_config), approve=_no_one_to_ask
    )

    async def run() -> ExecResult:
        async with CodeMode(tools, **options) as cm:
            result = await cm.exec(source, yield_time_ms=yield_time_ms, max_output_tokens=max_output_tokens)
            _print(result, as_json)
            while result.status == "running" and result.cell_id is not None:
                result = await cm.wait(result.cell_id)
                _print(result, as_json)
            return result

    try:
        result = run_loop(run())
    except McpServerError as exc:
        raise click.ClickException(f"code mode failed to start: {exc.summary}") from None
    except UsageError as exc:
        raise click.ClickException(str(exc)) from None
    sys.exit(0 if result.status not in ("failed", "rejected") else 1)


def _no_one_to_ask(call: ToolCall) -> bool:
    """`codemode exec` runs unattended: a call that needs approval is refused, not left waiting."""
    raise ToolError(
        f"tools.{call.tool_name} needs approval, and `codemode exec` has no one to ask; the call was not run"
    )


def _print(result: ExecResult, as_json: bool) -> None:
    if as_json:
        click.echo(wire_text(json.dumps(to_model(result, "responses"), ensure_ascii=False)))
    else:
        click.echo(wire_text(render_items(model_items(result))))


@main.command("mcp")
@click.option(
    "--config",
    "--mcp-config",
    "mcp_config",
    type=click.Path(exists=True, dir_okay=False),
    help='Downstream MCP servers, a {"mcpServers": {...}} JSON file: their tools become '
    "tools.mcp__<server>__<tool>.",
)
@click.option("--tools", "tool_specs", multiple=True, metavar="MODULE:ATTR", help="Python tools to expose.")
@click.option("--transport", type=click.Choice(["stdio", "http"]), default="stdio", show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True, help="HTTP: the address to listen on.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="HTTP: the port (0: any free one)."
)
@click.option(
    "--auth-token-env",
    metavar="NAME",
    default=None,
    help="HTTP: require `Authorization: Bearer <token>`, the token read from environment variable "
    "NAME (needed to listen on anything but loopback).",
)
@click.option(
    "--session-idle-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=DEFAULT_SESSION_IDLE_TIMEOUT_S,
    show_default=True,
    help="HTTP: end a session (terminating its cells) after this many seconds without requests.",
)
@click.option(
    "--max-sessions",
    type=click.IntRange(1),
    default=DEFAULT_MAX_SESSIONS,
    show_default=True,
    help="HTTP: open MCP sessions before new ones are refused.",
)
@engine_options
def mcp_command(
    mcp_config: str | None,
    tool_specs: tuple[str, ...],
    transport: str,
    host: str,
    port: int,
    auth_token_env: str | None,
    session_idle_timeout: float,
    max_sessions: int,
    **engine: Any,
) -> None:
    """Serve code mode over MCP: the tools `exec` and `wait`.

    Each client connection (stdio: the process; HTTP: an MCP session) gets its own code-mode
    session, closed with the connection; downstream MCP servers are started once and shared by
    all sessions (unless a server says "per_session": true). With `--transport http` the
    endpoint is http://HOST:PORT/mcp; its URL is printed to stderr once the server listens.
    """
    from codemode import mcp_server
    from codemode._gc import settle_for_serving

    tools: list[Tool | Callable[..., Any]] = []
    for spec in tool_specs:
        tools.extend(load_tools(spec))
    options = session_options(**engine) | CodeModeOptions(mcp_servers=checked_config(mcp_config))
    auth_token = None
    if auth_token_env is not None:
        auth_token = os.environ.get(auth_token_env)
        if not auth_token:
            raise click.BadParameter(f"environment variable {auth_token_env} is not set", param_hint="--auth-token-env")

    def announce(url: str) -> None:
        click.echo(f"codemode MCP server listening on {url}", err=True)

    settle_for_serving()  # this process serves until it is stopped
    try:
        if transport == "stdio":
            run_loop(mcp_server.serve_stdio(tools, **options))
        else:
            serving = mcp_server.serve_http(
                tools,
                host=host,
                port=port,
                auth_token=auth_token,
                on_listening=announce,
                session_idle_timeout=session_idle_timeout,
                max_sessions=max_sessions,
                **options,
            )
            run_loop(serving)
    except UsageError as exc:
        raise click.ClickException(str(exc)) from None
