"""The `codemode` command: run a script the way a model would, or serve code mode over MCP.

A thin adapter over the public API: it builds a `CodeMode` (its `Limits` and `Defaults` from
the flags, which carry the fields' names), calls `exec`/`wait`, and prints what the model would
receive. `codemode exec` and `codemode mcp` share one spelling per option. Everything past
argument parsing (the session, the MCP server stack) is imported by the command that needs it,
so `codemode --help` and a mistyped flag answer at once.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypedDict, Unpack, cast

import click

from codemode._protocol.config import (
    DEFAULT_MAX_SESSIONS,
    DEFAULT_SESSION_IDLE_TIMEOUT_S,
    Defaults,
    Limits,
)
from codemode.errors import ToolError, UsageError

if TYPE_CHECKING:
    from codemode._protocol.calls import ToolCall
    from codemode._protocol.types import ExecResult, OutputItem
    from codemode._session.options import CodeModeOptions
    from codemode.tools import Tool

    ToolEntry = Tool | Callable[..., Any]

_NEXT_RELEASE = "it goes away in the next release"


def load_tools(spec: str) -> list[ToolEntry]:
    """`package.module:attr` or `path/to/file.py:attr` -> the tools it names (a function, a
    Tool, or a list of them). Module paths resolve from the working directory too."""
    target, _, attr = spec.rpartition(":")
    if not target or not attr:
        raise click.BadParameter(f"expected MODULE:ATTR or FILE.py:ATTR, got {spec!r}", param_hint="--tools")
    module = _tools_module(target)
    try:
        value: object = getattr(module, attr)
    except AttributeError:
        raise click.BadParameter(f"{target!r} has no attribute {attr!r}", param_hint="--tools") from None
    if callable(value):
        return [value]
    if isinstance(value, Iterable) and not isinstance(value, str | bytes):
        return list(cast("Iterable[ToolEntry]", value))  # CodeMode refuses what is no tool
    raise click.BadParameter(f"{spec} is neither a tool nor a list of tools", param_hint="--tools")


def _tools_module(target: str) -> ModuleType:
    """The module `--tools` names: a file path (its directory importable, for its own imports),
    or a dotted module name."""
    if target.endswith(".py") or os.sep in target or "/" in target:
        path = Path(target).resolve()
        spec = importlib.util.spec_from_file_location(path.stem, path)
        if not path.is_file() or spec is None or spec.loader is None:
            raise click.BadParameter(f"no Python file at {target!r}", param_hint="--tools")
        sys.path.insert(0, str(path.parent))
        module = importlib.util.module_from_spec(spec)
        sys.modules[path.stem] = module
        spec.loader.exec_module(module)
        return module
    sys.path.insert(0, str(Path.cwd()))
    try:
        return importlib.import_module(target)
    except ImportError as exc:
        raise click.BadParameter(f"cannot import {target!r}: {exc}", param_hint="--tools") from exc


def render_items(items: Iterable[OutputItem]) -> str:
    """The model-facing items as terminal text (media shown as a one-line summary)."""
    from codemode._protocol.types import AudioItem, ImageItem, TextItem

    parts: list[str] = []
    for item in items:
        if isinstance(item, TextItem):
            parts.append(item.text)
        elif isinstance(item, ImageItem):
            parts.append(f"[image {media_summary(item.image_url)}, detail {item.detail}]")
        elif isinstance(item, AudioItem):
            parts.append(f"[audio {media_summary(item.audio_url)}]")
    return "\n".join(parts)


def media_summary(url: str) -> str:
    """`<image/png, 5.9 KB>` for a base64 `data:` URL (decoded size), else the URL's start."""
    from codemode.formats._data_url import parse_data_url

    parsed = parse_data_url(url)
    if parsed is None:
        return url[:40]
    size = len(parsed.data.rstrip("=")) * 3 // 4  # decoded bytes
    return f"<{parsed.mime_type}, {size / 1024:.1f} KB>"


def session_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """The options both commands take: the tools, the engine, and each `Limits` and `Defaults`
    field as `--field-name`."""
    int_or_none: dict[str, Any] = {"default": None, "type": click.IntRange(0)}
    options = [
        click.option(
            "--tools",
            "tool_specs",
            multiple=True,
            metavar="MODULE:ATTR",
            help="Python tools to expose: a module path or FILE.py, and the function, Tool or list in it.",
        ),
        click.option(
            "--mcp-config",
            type=click.Path(exists=True, dir_okay=False),
            help='Downstream MCP servers, a {"mcpServers": {...}} JSON file: their tools become '
            "tools.mcp__<server>__<tool>.",
        ),
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
            "--isolate-pool-size", **int_or_none, help="V8 isolates kept prepared (per worker, or in this process)."
        ),
        click.option("--cell-time-limit-ms", type=click.IntRange(1), default=None, help="Stop a cell after this long."),
        click.option("--heap-limit-bytes", **int_or_none, help="V8 heap limit per cell."),
        click.option("--max-concurrent-cells", type=click.IntRange(1), default=None, help="Open cells per session."),
        click.option("--exec-yield-time-ms", **int_or_none, help="How long exec waits before yielding."),
        click.option("--wait-yield-time-ms", **int_or_none, help="How long wait waits before yielding again."),
        click.option("--max-output-tokens", **int_or_none, help="Token budget of one exec's or wait's output."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


class SessionFlags(TypedDict):
    """The shared session options as click hands them to both commands (see `session_options`)."""

    mcp_config: str | None
    isolation: str
    engine_workers: int | None
    isolate_pool_size: int | None
    cell_time_limit_ms: int | None
    heap_limit_bytes: int | None
    max_concurrent_cells: int | None
    exec_yield_time_ms: int | None
    wait_yield_time_ms: int | None
    max_output_tokens: int | None


def codemode_options(
    *,
    mcp_config: str | None,
    isolation: str,
    engine_workers: int | None,
    isolate_pool_size: int | None,
    cell_time_limit_ms: int | None,
    heap_limit_bytes: int | None,
    max_concurrent_cells: int | None,
    exec_yield_time_ms: int | None,
    wait_yield_time_ms: int | None,
    max_output_tokens: int | None,
) -> CodeModeOptions:
    """`CodeMode` keyword arguments from the shared options: the engine, the MCP servers, and
    `Limits`/`Defaults` with the fields given (the others keep their defaults)."""
    from codemode import engines
    from codemode._session.options import CodeModeOptions

    options = CodeModeOptions(
        isolation="in-process" if isolation == "in-process" else "process",
        mcp_servers=_checked_mcp_config(mcp_config),
    )
    if isolation == "process" and (engine_workers is not None or isolate_pool_size is not None):
        sizes = {} if isolate_pool_size is None else {"isolate_pool_size": isolate_pool_size}
        options["engine"] = engines.ProcessEngine(engine_workers, **sizes)
    elif isolation == "in-process" and isolate_pool_size is not None:
        options["engine"] = engines.InProcessEngine(isolate_pool_size)
    elif engine_workers is not None:
        raise click.BadParameter("only --isolation process has engine workers", param_hint="--engine-workers")
    limits = _given(
        cell_time_limit_ms=cell_time_limit_ms,
        heap_limit_bytes=heap_limit_bytes,
        max_concurrent_cells=max_concurrent_cells,
    )
    defaults = _given(
        exec_yield_time_ms=exec_yield_time_ms,
        wait_yield_time_ms=wait_yield_time_ms,
        max_output_tokens=max_output_tokens,
    )
    try:
        options["limits"] = Limits(**limits)
        options["defaults"] = Defaults(**defaults)
    except UsageError as exc:
        raise click.UsageError(str(exc)) from None
    return options


def _given(**values: int | None) -> dict[str, int]:
    return {key: value for key, value in values.items() if value is not None}


def _checked_mcp_config(path: str | None) -> str | None:
    """The MCP config path, once it parses: a bad file is a usage error before anything starts."""
    if path is not None:
        from codemode.tools.mcp import load_mcp_config

        try:
            load_mcp_config(path)
        except UsageError as exc:
            raise click.BadParameter(str(exc), param_hint="--mcp-config") from None
    return path


def _tools(tool_specs: tuple[str, ...]) -> list[ToolEntry]:
    return [tool for spec in tool_specs for tool in load_tools(spec)]


@click.group()
@click.version_option(package_name="codemode")
def main() -> None:
    """Code mode for LLM agents: model-written JavaScript calling your tools in V8."""


@main.command("exec", short_help="Run a script as a model's exec call and print what the model would read.")
@click.argument("script", type=click.File("r", encoding="utf-8"))
@click.option("--json", "as_json", is_flag=True, help="Print each observation as Responses-API JSON.")
@session_options
@click.option(
    "--yield-time-ms",
    "yield_time_ms",
    type=click.IntRange(0),
    default=None,
    hidden=True,
    deprecated=f"Use --exec-yield-time-ms; {_NEXT_RELEASE}.",
)
def exec_command(
    script: Any, as_json: bool, tool_specs: tuple[str, ...], yield_time_ms: int | None, **options: Unpack[SessionFlags]
) -> None:
    """Run SCRIPT (a file, or - for stdin) like a model's exec call; waits through yields.

    Prints exactly what the model would receive for every observation, and `notify()` texts to
    stderr as they happen; exits 1 if the script failed or code mode could not start (e.g. a
    `required` MCP server failed).
    """
    from codemode._loop import run as run_loop
    from codemode._session.session import CodeMode
    from codemode.tools.mcp import McpServerError

    if yield_time_ms is not None and options["exec_yield_time_ms"] is None:
        options["exec_yield_time_ms"] = yield_time_ms
    tools = _tools(tool_specs)
    source: str = script.read()
    session = codemode_options(**options)
    session["approve"] = _no_one_to_ask
    session["on_notify"] = _print_notification

    async def run() -> ExecResult:
        async with CodeMode(tools, **session) as cm:
            result = await cm.exec(source)
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


def _print_notification(cell_id: str, text: str) -> None:
    """A `notify()` text, on stderr as it happens: stdout stays exactly what the model reads."""
    from codemode._protocol.text import safe_text

    click.echo(safe_text(f"notify: {text}"), err=True)


def _print(result: ExecResult, as_json: bool) -> None:
    from codemode._output import model_items
    from codemode._protocol.text import safe_text
    from codemode.formats import to_model

    if as_json:
        click.echo(safe_text(json.dumps(to_model(result, "responses"), ensure_ascii=False)))
    else:
        click.echo(safe_text(render_items(model_items(result))))


@main.command("mcp", short_help="Serve code mode (the tools exec and wait) over MCP, stdio or HTTP.")
@session_options
@click.option(
    "--config",
    "config",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    hidden=True,
    deprecated=f"Use --mcp-config; {_NEXT_RELEASE}.",
)
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
@click.option(
    "--store",
    metavar="URL",
    default=None,
    help="Keep sessions and their cells in this store (sqlite:///ABS/PATH or postgresql://...): cells "
    "survive a restart, and HTTP replicas sharing the store serve the same sessions.",
)
def mcp_command(
    tool_specs: tuple[str, ...],
    config: str | None,
    transport: str,
    host: str,
    port: int,
    auth_token_env: str | None,
    session_idle_timeout: float,
    max_sessions: int,
    store: str | None,
    **options: Unpack[SessionFlags],
) -> None:
    """Serve code mode over MCP: the tools `exec` and `wait`.

    Each client connection (stdio: the process; HTTP: an MCP session) gets its own code-mode
    session, closed with the connection; downstream MCP servers are started once and shared by
    all sessions (unless a server says "per_session": true). With `--transport http` the
    endpoint is http://HOST:PORT/mcp; its URL is printed to stderr once the server listens.
    """
    from codemode import mcp_server
    from codemode._gc import settle_for_serving
    from codemode._loop import run as run_loop

    if config is not None and options["mcp_config"] is None:
        options["mcp_config"] = config
    tools = _tools(tool_specs)
    session = codemode_options(**options)
    if store is not None:
        session["store"] = store
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
            run_loop(mcp_server.serve_stdio(tools, **session))
        else:
            serving = mcp_server.serve_http(
                tools,
                host=host,
                port=port,
                auth_token=auth_token,
                on_listening=announce,
                session_idle_timeout=session_idle_timeout,
                max_sessions=max_sessions,
                **session,
            )
            run_loop(serving)
    except UsageError as exc:
        raise click.ClickException(str(exc)) from None
