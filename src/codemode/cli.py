"""The `codemode` command: run a script the way a model would, or serve code mode over MCP.

A thin adapter over the public API: it builds a `CodeMode`, calls `exec`/`wait`, and prints
what the model would receive.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import click

from codemode._result import ExecResult
from codemode._session.session import CodeMode
from codemode._types import AudioItem, ImageItem, OutputItem, TextItem
from codemode.formats._data_url import parse_data_url
from codemode.formats._text import wire_text
from codemode.tools import Tool


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


isolation_option = click.option(
    "--isolation",
    type=click.Choice(["process", "in-process"]),
    default="process",
    show_default=True,
    help="Run V8 in supervised engine processes, or inside this process.",
)


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
@isolation_option
def exec_command(
    script: Any,
    tool_specs: tuple[str, ...],
    mcp_config: str | None,
    yield_time_ms: int | None,
    max_output_tokens: int | None,
    as_json: bool,
    isolation: Any,
) -> None:
    """Run SCRIPT (a file, or - for stdin) like a model's exec call; waits through yields.

    Prints exactly what the model would receive for every observation; exits 1 if the script
    failed.
    """
    tools: list[Tool | Callable[..., Any]] = []
    for spec in tool_specs:
        tools.extend(load_tools(spec))
    source = script.read()

    async def run() -> ExecResult:
        async with CodeMode(tools, mcp_servers=mcp_config, isolation=isolation) as cm:
            result = await cm.exec(source, yield_time_ms=yield_time_ms, max_output_tokens=max_output_tokens)
            _print(result, as_json)
            while result.status == "running" and result.cell_id is not None:
                result = await cm.wait(result.cell_id)
                _print(result, as_json)
            return result

    result = asyncio.run(run())
    sys.exit(0 if result.success else 1)


def _print(result: ExecResult, as_json: bool) -> None:
    if as_json:
        click.echo(wire_text(json.dumps(result.to_model("responses"), ensure_ascii=False)))
    else:
        click.echo(wire_text(render_items(result.model_items())))


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
@isolation_option
def mcp_command(
    mcp_config: str | None, tool_specs: tuple[str, ...], transport: str, host: str, port: int, isolation: Any
) -> None:
    """Serve code mode over MCP: the tools `exec` and `wait`.

    Each client connection (stdio: the process; HTTP: an MCP session) gets its own code-mode
    session, closed with the connection. With `--transport http` the endpoint is
    http://HOST:PORT/mcp; its URL is printed to stderr once the server listens.
    """
    from codemode import mcp_server
    from codemode.errors import UsageError

    tools: list[Tool | Callable[..., Any]] = []
    for spec in tool_specs:
        tools.extend(load_tools(spec))

    def announce(url: str) -> None:
        click.echo(f"codemode MCP server listening on {url}", err=True)

    try:
        if transport == "stdio":
            asyncio.run(mcp_server.serve_stdio(tools, mcp_servers=mcp_config, isolation=isolation))
        else:
            asyncio.run(
                mcp_server.serve_http(
                    tools, mcp_servers=mcp_config, host=host, port=port, on_listening=announce, isolation=isolation
                )
            )
    except UsageError as exc:
        raise click.ClickException(str(exc)) from None
