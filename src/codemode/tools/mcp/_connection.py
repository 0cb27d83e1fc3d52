"""One configured MCP server: start, call, notice a crash, restart, stop.

Invariants:
* Every connection attempt ("generation") is owned by one runner task that enters and exits the
  SDK `Client` itself, because anyio task groups and cancel scopes must be exited by the task
  that entered them. Calls may come from any task; they only use the live client.
* Runners are started with `TaskGroup.start` in the connection's task group, which one host task
  (in the connection's `TaskSet`) keeps open until `aclose()`: a start returns once the runner
  has the client and its tool list, raises `McpServerError` if it failed first, and takes the
  runner down with it if the starter is cancelled.
* At most one generation runs at a time: a new one starts only after the previous runner has
  finished (so no two server processes overlap), under `_lock`.
* A generation is usable while its client is connected and nobody asked it to stop. When the
  server closes the connection on its own (process exit, HTTP stream end) the runner notices
  at once, tears the transport down (reaping the process) and the next call starts a fresh
  generation. A timeout does not restart the server: the request is cancelled and the server
  keeps serving other calls.
* Every failure that reaches a script is a `ToolError` naming the server and the tool.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import logging
import sys
import textwrap
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import anyio
import anyio.abc
import anyio.lowlevel
import httpx2
import mcp_types as types
import pydantic
from mcp import Client
from mcp.client import Transport
from mcp.client._transport import ReadStream
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from codemode._tasks import TaskSet
from codemode.errors import CodeModeError, ToolError
from codemode.tools.mcp._config import McpHttpServer, McpServerConfig, McpStdioServer
from codemode.tools.mcp._stderr import StderrPipe, StderrTail, redacted, stderr_cause

__all__ = ["McpLogMessage", "McpProgress", "McpServerError", "ServerConnection"]

_logger = logging.getLogger("codemode.tools.mcp")

_T = TypeVar("_T")

# How long a failing call waits for the dead server's teardown, to quote its last stderr lines.
_CRASH_REPORT_WAIT = 5.0
# Upper bound for one generation's teardown (the SDK's own stdio shutdown is bounded at ~6.5 s).
_STOP_WAIT = 10.0
# tools/list pages followed before giving up on a paginator that never ends.
_MAX_TOOL_PAGES = 100
# How much of a start failure's stderr cause a model reads (the host's log has all of it).
_PUBLIC_CAUSE_CHARS = 300

_LOG_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "notice": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
    "alert": logging.CRITICAL,
    "emergency": logging.CRITICAL,
}


class McpServerError(CodeModeError):
    """An MCP server could not be started (or restarted).

    Attributes:
        server: the server's name in the config.
        reason: what went wrong, e.g. "exited before completing the MCP handshake".
        stderr_tail: the last lines the server wrote to stderr ("" for HTTP servers).
        stderr_cause: the lines of it that say why (`_stderr.stderr_cause`): error-like lines
            first, noise such as npm's log-file pointer left out.
        public_reason: the reason and a short cause with no host paths, user name or secrets
            (header values, secret-looking variables of the environment and of the server's
            `env`; its HOME and USER as well as this process's): what a
            model or a remote client may read.
    """

    def __init__(
        self,
        server: str,
        reason: str,
        stderr_tail: str = "",
        *,
        secrets: Iterable[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.server = server
        self.reason = reason
        self.stderr_tail = stderr_tail
        self.stderr_cause = stderr_cause(stderr_tail)
        cause = "; ".join(self.stderr_cause)
        public_cause = textwrap.shorten(cause, _PUBLIC_CAUSE_CHARS, placeholder=" …")
        self.public_reason = redacted(f"{reason} ({public_cause})" if cause else reason, secrets, env)
        message = f"MCP server `{server}` {reason}"
        if stderr_tail:
            if cause != stderr_tail.strip():
                message += f"; the cause, from its stderr: {cause}"
            message += "; its stderr ends with:\n" + textwrap.indent(stderr_tail, "  ")
        super().__init__(message)

    @property
    def summary(self) -> str:
        """The error in one line, for the host's log: the server, the reason and the cause
        its stderr names."""
        cause = "; ".join(self.stderr_cause)
        return f"MCP server `{self.server}` {self.reason}" + (f" (stderr: {cause})" if cause else "")

    @property
    def public_summary(self) -> str:
        """`summary` for a model or a remote client: `public_reason`, shortened and redacted."""
        return f"MCP server `{self.server}` {self.public_reason}"


@dataclass(frozen=True)
class McpProgress:
    """A progress notification for one running MCP tool call."""

    server: str
    tool: str
    progress: float
    total: float | None
    message: str | None


@dataclass(frozen=True)
class McpLogMessage:
    """A log message (`notifications/message`) sent by an MCP server."""

    server: str
    level: str
    logger: str | None
    data: Any


ProgressHook = Callable[[McpProgress], Awaitable[None] | None]
LogHook = Callable[[McpLogMessage], Awaitable[None] | None]


@dataclass(frozen=True)
class Hooks:
    """Callbacks shared by every server of a toolset."""

    on_progress: ProgressHook | None = None
    on_log: LogHook | None = None
    log_level: types.LoggingLevel = "info"


_Started = tuple[Client, list[types.Tool]]


@dataclass(eq=False)
class _Generation:
    number: int
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    ended: asyncio.Event = field(default_factory=asyncio.Event)  # its runner has finished
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)  # its runner's work
    client: Client | None = None
    lost: bool = False  # the server closed the connection on its own
    stopping: bool = False  # we asked the runner to stop

    @property
    def usable(self) -> bool:
        return self.client is not None and not self.lost and not self.stopping

    def mark_lost(self) -> None:
        self.lost = True
        self.wake.set()

    def stop(self) -> None:
        self.stopping = True
        self.wake.set()

    async def ended_within(self, seconds: float) -> bool:
        with anyio.move_on_after(seconds):
            await self.ended.wait()
        return self.ended.is_set()


class ServerConnection:
    """The live connection to one configured server (internal; see `McpToolset`)."""

    def __init__(self, name: str, config: McpServerConfig, hooks: Hooks) -> None:
        self.name = name
        self.config = config
        self._hooks = hooks
        self.logger = _logger.getChild(name)
        self._stderr = StderrTail(self.logger)
        self._current: _Generation | None = None
        self._generations = 0
        self._lock = asyncio.Lock()
        self._closed = False
        self._tasks = TaskSet(f"MCP server `{name}`")  # the runners' host, hooks run in a context
        self._runners: anyio.abc.TaskGroup | None = None
        self._closing = asyncio.Event()

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> list[types.Tool]:
        """Connect for the first time and list the server's tools.

        Raises:
            McpServerError: the server could not be started; the reason and stderr are quoted.
        """
        async with self._lock:
            _, tools = await self._connect()
        return tools

    async def aclose(self) -> None:
        """Stop the server for good; in-flight calls reject with a "shut down" message."""
        self._closed = True
        generation = self._current
        if generation is not None:
            await self._retire(generation)
        self._closing.set()

    async def _connect(self) -> _Started:
        if self._closed:
            raise McpServerError(self.name, "was shut down")
        runners = await self._runner_group()
        self._generations += 1
        generation = _Generation(self._generations)
        self._current = generation
        name = f"codemode-mcp-{self.name}-{generation.number}"
        started: _Started = await runners.start(self._run, generation, name=name)
        return started

    async def _runner_group(self) -> anyio.abc.TaskGroup:
        """The task group of this connection's runners, opened by its host task on first use."""
        if self._runners is None:
            opened = asyncio.Event()
            self._tasks.spawn(self._host_runners(opened), name=f"codemode-mcp-{self.name}")
            await opened.wait()
        assert self._runners is not None
        return self._runners

    async def _host_runners(self, opened: asyncio.Event) -> None:
        async with anyio.create_task_group() as runners:
            self._runners = runners
            opened.set()
            await self._closing.wait()
            runners.cancel_scope.cancel()  # a runner `_retire` gave up on

    async def _retire(self, generation: _Generation) -> None:
        """Ask a generation's runner to stop and wait until it has (bounded)."""
        generation.stop()
        if generation.ended.is_set():
            return
        if generation.client is None:
            # Still starting (maybe hung in the handshake): nothing to wind down gracefully.
            generation.scope.cancel()
        if not await generation.ended_within(_STOP_WAIT):
            self.logger.warning(
                "MCP server `%s` did not stop within %s s; cancelling it", self.name, _STOP_WAIT
            )
            generation.scope.cancel()
            await generation.ended_within(_STOP_WAIT)

    async def _run(self, generation: _Generation, *, task_status: anyio.abc.TaskStatus[_Started]) -> None:
        """Own one generation: open the transport and client, serve until woken, tear down.

        Raises:
            McpServerError: the generation ended before its client was ready (to the starter).
        """
        pipe: StderrPipe | None = None
        failure: BaseException | None = None
        started = False
        try:
            with generation.scope:
                try:
                    if isinstance(self.config, McpStdioServer) and sys.platform != "win32":
                        # (Windows: the server's stderr is passed through instead of captured.)
                        pipe = await StderrPipe.open(self._stderr)
                    async with contextlib.AsyncExitStack() as stack:
                        client, tools = await self._open(stack, generation, pipe)
                        generation.client = client
                        task_status.started((client, tools))
                        started = True
                        await generation.wake.wait()
                except Exception as exc:
                    failure = exc
                except asyncio.CancelledError as exc:
                    failure = exc
                    raise
        finally:
            generation.client = None
            try:
                if pipe is not None:
                    with anyio.CancelScope(shield=True):
                        await pipe.finish()  # first, so that messages quote the complete stderr
            finally:
                generation.ended.set()
                if not started:
                    raise self._startup_error(failure) from failure
                self._report_end(generation, failure)

    def _report_end(self, generation: _Generation, failure: BaseException | None) -> None:
        if failure is not None and not isinstance(failure, asyncio.CancelledError):
            self.logger.warning("MCP server `%s` connection failed: %s", self.name, _describe_exception(failure))
        elif generation.lost and not generation.stopping:
            tail = self._stderr.tail(800)
            self.logger.warning(
                "MCP server `%s` closed the connection; it will be restarted on the next call%s",
                self.name,
                f". Its stderr ends with:\n{textwrap.indent(tail, '  ')}" if tail else "",
            )

    async def _open(
        self, stack: contextlib.AsyncExitStack, generation: _Generation, pipe: StderrPipe | None
    ) -> tuple[Client, list[types.Tool]]:
        deadline = asyncio.timeout(self.config.startup_timeout)
        try:
            async with deadline:
                try:
                    transport = await self._transport(stack, pipe)
                    client = Client(
                        _watched(transport, generation.mark_lost),
                        logging_callback=self._on_log,
                        log_level=self._hooks.log_level,
                        message_handler=self._on_message,
                        cache=None,
                    )
                    await stack.enter_async_context(client)
                finally:
                    if pipe is not None:
                        pipe.close_writer()  # the child holds its own copy now
                tools = await _list_tools(client)
        except TimeoutError:
            if deadline.expired():
                raise _StartupTimeout(self.config.startup_timeout) from None
            raise
        return client, tools

    async def _transport(self, stack: contextlib.AsyncExitStack, pipe: StderrPipe | None) -> Transport:
        config = self.config
        if isinstance(config, McpStdioServer):
            params = StdioServerParameters(
                command=config.command, args=config.args, env=config.env, cwd=config.cwd
            )
            return stdio_client(params, errlog=pipe.writer if pipe is not None else sys.stderr)
        assert isinstance(config, McpHttpServer)
        # Same timeouts as the SDK's default client; per-call deadlines are enforced by the SDK.
        http = httpx2.AsyncClient(headers=config.headers, timeout=httpx2.Timeout(30.0, read=300.0))
        await stack.enter_async_context(http)
        return streamable_http_client(config.url, http_client=http)

    def _startup_error(self, failure: BaseException | None) -> McpServerError:
        if failure is None:
            reason = "stopped before it finished starting"
        elif isinstance(failure, asyncio.CancelledError):
            reason = "start was cancelled"
        else:
            reason = self._describe_startup_failure(failure)
        config = self.config
        if isinstance(config, McpStdioServer):
            return McpServerError(self.name, reason, self._stderr.tail(), env=config.env)
        return McpServerError(self.name, reason, secrets=config.headers.values())

    def _describe_startup_failure(self, failure: BaseException) -> str:
        leaf = _leaf_exception(failure)
        config = self.config
        if isinstance(leaf, _StartupTimeout):
            return f"did not finish starting (handshake and tools/list) within {leaf.seconds:g} s"
        if (
            isinstance(config, McpStdioServer)
            and isinstance(leaf, OSError)
            and not isinstance(leaf, ConnectionError)
        ):
            return f"could not be launched: {leaf.strerror or leaf}: {config.command!r}"
        if isinstance(leaf, MCPError) and leaf.code == types.CONNECTION_CLOSED:
            if isinstance(config, McpStdioServer):
                return "exited (or closed its stdout) before completing the MCP handshake"
            return "closed the connection before completing the MCP handshake"
        if isinstance(leaf, MCPError):
            return f"rejected the MCP handshake: {leaf.message} (MCP error {leaf.code})"
        if isinstance(leaf, httpx2.HTTPError) and isinstance(config, McpHttpServer):
            return f"could not be reached at {config.url}: {_describe_exception(leaf)}"
        return f"failed to start: {_describe_exception(leaf)}"

    # -- calls -------------------------------------------------------------------------------

    async def call(self, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """Call one tool and return its `CallToolResult` as camelCase JSON (see module doc).

        Raises:
            ToolError: timeout, protocol error, server crash, or server unavailable.
        """
        generation = await self._usable_generation(tool)
        client = generation.client
        assert client is not None
        timeout = self.config.timeout

        # Progress arrives on the connection's reader task; the hook runs in the caller's
        # context instead, so a host can tell (via its context variables) whose call it is.
        caller_context = contextvars.copy_context()

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            await self._on_progress(McpProgress(self.name, tool, progress, total, message), caller_context)

        label = f"MCP tool `{tool}` on server `{self.name}`"
        try:
            result = await client.call_tool(
                tool, arguments, read_timeout_seconds=timeout, progress_callback=on_progress
            )
        except MCPError as exc:
            if exc.code == types.REQUEST_TIMEOUT:
                raise ToolError(f"{label} timed out after {timeout:g} s; the call was cancelled") from None
            if exc.code == types.CONNECTION_CLOSED:
                raise ToolError(await self._connection_lost(generation, tool)) from None
            raise ToolError(f"{label} failed: {exc.message} (MCP error {exc.code})") from None
        except (pydantic.ValidationError, RuntimeError) as exc:
            # Malformed result, structured content breaking the tool's output schema, or a
            # request for input (elicitation/sampling) this client does not provide.
            raise ToolError(f"{label} returned an unusable result: {_describe_exception(exc)}") from None
        except Exception as exc:
            # A transport failure: the connection is in an unknown state, start afresh.
            self.logger.debug("MCP call failed", exc_info=True)
            raise ToolError(await self._connection_lost(generation, tool, exc)) from None
        return call_tool_result_json(result)

    async def _usable_generation(self, tool: str) -> _Generation:
        generation = self._current
        if generation is not None and generation.usable:
            return generation
        async with self._lock:
            generation = self._current
            if generation is not None and generation.usable:
                return generation
            if self._closed:
                raise ToolError(self._shut_down_message(tool))
            if generation is not None:
                await self._retire(generation)
            self.logger.info("restarting MCP server `%s`", self.name)
            try:
                await self._connect()
            except McpServerError as exc:
                if self._closed:
                    raise ToolError(self._shut_down_message(tool)) from None
                raise ToolError(f"{exc}\n(the call to `{tool}` was not made)") from None
            assert self._current is not None
            return self._current

    async def _connection_lost(self, generation: _Generation, tool: str, exc: Exception | None = None) -> str:
        if self._closed:
            return self._shut_down_message(tool)
        generation.mark_lost()  # (concurrent failed calls may have done so, or restarted it already)
        # Let the runner reap the server and drain its stderr, so the message can quote it.
        await generation.ended_within(_CRASH_REPORT_WAIT)
        stdio = isinstance(self.config, McpStdioServer)
        what = "closed the connection" if exc is None else f"failed ({_describe_exception(exc)})"
        why = " (its process probably exited)" if stdio and exc is None else ""
        message = (
            f"MCP server `{self.name}` {what} during the call to `{tool}`{why}; "
            "it will be restarted on the next call"
        )
        tail = self._stderr.tail(600, max_lines=5) if isinstance(self.config, McpStdioServer) else ""
        if tail:
            message += ". Its stderr ends with:\n" + textwrap.indent(tail, "  ")
        return message

    def _shut_down_message(self, tool: str) -> str:
        return f"MCP server `{self.name}` was shut down; the call to `{tool}` could not complete"

    # -- notifications -----------------------------------------------------------------------

    async def _on_progress(self, event: McpProgress, context: contextvars.Context) -> None:
        self.logger.debug(
            "progress %s/%s %s (tool `%s`)", event.progress, event.total, event.message or "", event.tool
        )
        await self._call_hook(self._hooks.on_progress, event, context)

    async def _on_log(self, params: types.LoggingMessageNotificationParams) -> None:
        level = _LOG_LEVELS.get(params.level, logging.INFO)
        source = f"{params.logger}: " if params.logger else ""
        self.logger.log(level, "%s%s", source, params.data)
        event = McpLogMessage(self.name, params.level, params.logger, params.data)
        await self._call_hook(self._hooks.on_log, event)

    async def _on_message(self, message: types.ServerNotification | Exception) -> None:
        if isinstance(message, Exception):
            self.logger.warning("MCP server `%s` sent something unreadable: %s", self.name, message)
        await anyio.lowlevel.checkpoint()

    async def _call_hook(
        self, hook: Callable[[_T], Awaitable[None] | None] | None, event: _T, context: contextvars.Context | None = None
    ) -> None:
        """Run a sync or async hook (in `context` if given); its exceptions are logged, not raised."""
        if hook is None:
            return
        try:
            outcome = hook(event) if context is None else context.run(hook, event)
            if inspect.isawaitable(outcome):
                if context is None:
                    await outcome
                else:  # its coroutine must run in `context` too: a task made in it runs it
                    await self._tasks.spawn(_logged(outcome, self.logger), context=context)
        except Exception:
            self.logger.exception("MCP notification hook raised")


def call_tool_result_json(result: types.CallToolResult) -> dict[str, Any]:
    """The JSON value a script sees: wire (camelCase) names, top-level `_meta` dropped.

    `content` is always present, `structuredContent` only when the server sent one, `isError`
    always (a boolean). Blocks keep their own `_meta` (it may carry e.g. an image detail hint).
    """
    out: dict[str, Any] = {
        "content": [
            block.model_dump(mode="json", by_alias=True, exclude_none=True) for block in result.content
        ]
    }
    if result.structured_content is not None:
        out["structuredContent"] = result.structured_content
    out["isError"] = bool(result.is_error)
    return out


async def _list_tools(client: Client) -> list[types.Tool]:
    tools: list[types.Tool] = []
    cursor: str | None = None
    for _ in range(_MAX_TOOL_PAGES):
        page = await client.list_tools(cursor=cursor)
        tools.extend(page.tools)
        cursor = page.next_cursor
        if cursor is None:
            break
    return tools


async def _logged(awaitable: Awaitable[None], logger: logging.Logger) -> None:
    try:
        await awaitable
    except Exception:
        logger.exception("MCP notification hook raised")


class _StartupTimeout(Exception):
    def __init__(self, seconds: float) -> None:
        super().__init__(f"start-up took longer than {seconds:g} s")
        self.seconds = seconds


def _leaf_exception(exc: BaseException) -> BaseException:
    """The first real error inside (possibly nested) exception groups."""
    leaf = exc
    while isinstance(leaf, BaseExceptionGroup):
        inner: tuple[BaseException, ...] = cast(BaseExceptionGroup[BaseException], leaf).exceptions
        if not inner:
            break
        leaf = inner[0]
    return cast(BaseException, leaf)


def _describe_exception(exc: BaseException) -> str:
    exc = _leaf_exception(exc)
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class _WatchedReadStream:
    """Delegates to a transport's read stream and reports when it ends (the server went away)."""

    def __init__(self, inner: ReadStream[Any], on_end: Callable[[], None]) -> None:
        self._inner = inner
        self._on_end = on_end

    async def receive(self) -> Any:
        try:
            return await self._inner.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._on_end()
            raise

    async def aclose(self) -> None:
        await self._inner.aclose()

    def __aiter__(self) -> _WatchedReadStream:
        return self

    async def __anext__(self) -> Any:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def __aenter__(self) -> _WatchedReadStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __getattr__(self, name: str) -> Any:
        # e.g. `last_context` of the HTTP transport's context-carrying stream.
        return getattr(self._inner, name)


@contextlib.asynccontextmanager
async def _watched(transport: Transport, on_end: Callable[[], None]) -> AsyncGenerator[Any, None]:
    async with transport as (read_stream, write_stream):
        yield _WatchedReadStream(read_stream, on_end), write_stream
