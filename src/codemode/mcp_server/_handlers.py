"""The MCP protocol handlers of code mode: `exec`, `wait` and `logging/setLevel`, over the
`CodeMode` session of the request's client, and where that session's `notify(...)` texts go.

`notify(...)` texts reach the connection that ran the cell as `notifications/message` (level
info, logger `codemode`, the cell id in `_meta["codemode/cellId"]`), as they happen: on the
stream of the exec/wait call observing the cell while there is one, otherwise on the
connection's own channel (handshake era). At 2026-07-28 a log entry may only ride a call that
opted in, so one sent while nothing observes the cell goes out with the next such call.

A nested call waiting for approval is asked of the client's user with MCP elicitation (a form with
one `approve` checkbox): only an accepted form with `approve` checked runs it. On a handshake-era
connection (2025-11-25 and older) the question is an `elicitation/create` request on the stream
of the exec/wait call observing its cell (or the connection's own channel). At 2026-07-28 a
server may not send requests of its own, so the call is left waiting and the exec/wait call
observing the cell answers with an input-required result (SEP-2322) asking about every waiting
call; the client retries that call with the answers and the sealed `requestState` (cell and
call ids), which answers the calls and observes the cell again, without re-running the code.
The output observed before the question is carried over into that retry's result. A client
that cannot be asked (no elicitation capability, no channel to ask on) gets the call rejected
with a text saying approvals are not available; it never runs unasked.

A session that cannot start tells the client why with the failed MCP server's
`public_summary` (no host paths, user names or secrets: the client may be remote, or a model);
the server's log has the whole cause.

Everything these handlers send (results, tool listings, log data, approval questions, start
errors) passes `safe_text`: a lone surrogate a script wrote (in a text, a data URL, a nested
call's arguments) would make the SDK's UTF-8 writer raise, which ends a stdio server and leaves
an HTTP request unanswered.
"""

from __future__ import annotations

import inspect
import logging
import math
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from importlib.metadata import version
from typing import Any, Protocol, get_args

import anyio
import mcp_types as types
import pydantic
from mcp.server.connection import allowed_log_levels
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.request_state import RequestStateBoundary, RequestStateSecurity
from mcp.server.session import ServerSession
from mcp.shared.exceptions import MCPError
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from codemode._describe.names import EXEC_TOOL_NAME, WAIT_TOOL_NAME
from codemode._protocol.calls import ApprovalDecision, ApprovalPolicy, PendingApproval, ToolCall
from codemode._protocol.text import safe_data, safe_text
from codemode._protocol.types import ExecResult
from codemode._session.session import CodeMode
from codemode.errors import ToolError, UsageError
from codemode.formats import to_model
from codemode.tools.mcp import McpServerError

__all__ = [
    "CELL_ID_META_KEY",
    "LOGGER_NAME",
    "AskClient",
    "Clients",
    "ConnectionSession",
    "NewSession",
    "OneClient",
    "ask_client_after",
    "build_server",
    "handshake_only",
]

LOGGER_NAME = "codemode"
"""The `logger` of the `notifications/message` that carry `notify(...)` texts."""

CELL_ID_META_KEY = "codemode/cellId"
"""The `_meta` key naming the cell a `notify(...)` text came from."""

SERVER_NAME = "codemode"
INSTRUCTIONS = (
    "Run JavaScript with `exec`; it calls the nested tools listed in exec's description as "
    "`await tools.<name>(args)`. Resume a script that yielded with `wait`."
)
MAX_HELD_NOTIFICATIONS = 1000
REQUEST_STATE_TTL_S = 24 * 3600.0
"""How long an input-required answer may take to come back: the approval timeout is what
bounds a waiting call; this only bounds how long a sealed `requestState` can be replayed."""

NotifyCallback = Callable[[str, str], Awaitable[None]]
AskClient = Callable[[ToolCall], Awaitable[ApprovalDecision]]
NewSession = Callable[[NotifyCallback, AskClient, str | None], CodeMode]
"""Makes a connection's `CodeMode`: its notify target, its approver, and the id of the stored
session it serves (None: a session of its own, kept nowhere)."""

_LOG_LEVELS: tuple[types.LoggingLevel, ...] = get_args(types.LoggingLevel)

logger = logging.getLogger("codemode.mcp_server")


class Clients(Protocol):
    """What a server's lifespan yields: the code-mode session of a request's connection."""

    async def client_for(self, ctx: ServerRequestContext[Any]) -> ConnectionSession: ...


def build_server(lifespan: Callable[[Server[Any]], Any]) -> Server[Any]:
    async def list_tools(
        ctx: ServerRequestContext[Clients], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        client = await ctx.lifespan_context.client_for(ctx)
        specs = safe_data(client.cm.tool_specs("mcp"))
        return types.ListToolsResult(tools=[types.Tool.model_validate(spec) for spec in specs])

    async def call_tool(
        ctx: ServerRequestContext[Clients], params: types.CallToolRequestParams
    ) -> types.CallToolResult | types.InputRequiredResult:
        if params.name not in (EXEC_TOOL_NAME, WAIT_TOOL_NAME):
            raise MCPError(code=types.INVALID_PARAMS, message=f"Unknown tool: {params.name}")
        client = await ctx.lifespan_context.client_for(ctx)
        arguments = params.arguments or {}
        try:
            if params.name == EXEC_TOOL_NAME:
                parsed = _exec_arguments(arguments)
            else:
                parsed = _wait_arguments(arguments)
        except _BadArguments as exc:
            text = safe_text(f"failed to parse function arguments: {exc}")
            return types.CallToolResult(content=[types.TextContent(text=text)], is_error=True)
        if params.request_state is not None:  # the retry of an input-required answer
            result = await client.resume(ctx, params.request_state, params.input_responses or {}, parsed["yield_time_ms"])
        elif params.name == EXEC_TOOL_NAME:
            result = await client.exec(ctx, **parsed)
        else:
            result = await client.wait(ctx, **parsed)
        if not isinstance(result, types.InputRequiredResult):
            result = types.CallToolResult.model_validate(safe_data(to_model(result, "mcp")))
        if client.result_meta:
            result.meta = {**(result.meta or {}), **client.result_meta}
        return result

    async def set_logging_level(
        ctx: ServerRequestContext[Clients], params: types.SetLevelRequestParams
    ) -> types.EmptyResult:
        client = await ctx.lifespan_context.client_for(ctx)
        client.min_level = params.level
        return types.EmptyResult()

    server: Server[Any] = Server(
        SERVER_NAME,
        version=version("codemode"),
        instructions=INSTRUCTIONS,
        lifespan=lifespan,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
    )
    # Declares the `logging` capability (the notify channel) and honours `logging/setLevel`;
    # registered directly because the constructor argument warns that 2026-07-28 dropped it.
    server.add_request_handler("logging/setLevel", types.SetLevelRequestParams, set_logging_level)
    # The client echoes `requestState` back: sealed on the way out (bound to the call, its
    # arguments and an expiry) and verified on the way in, so a client cannot forge call ids.
    security = RequestStateSecurity.ephemeral(ttl=REQUEST_STATE_TTL_S)
    server.middleware.append(RequestStateBoundary(security, default_audience=SERVER_NAME))
    return server


async def handshake_only(
    ctx: ServerRequestContext[Any], params: types.RequestParams
) -> types.DiscoverResult:
    raise MCPError(code=types.METHOD_NOT_FOUND, message="Method not found", data="server/discover")


class _BadArguments(Exception):
    """A tool call's arguments do not match the tool's input schema."""


def _exec_arguments(arguments: Mapping[str, Any]) -> dict[str, Any]:
    _reject_unknown(arguments, ("code", "yield_time_ms", "max_output_tokens"))
    code = arguments.get("code")
    if not isinstance(code, str):
        raise _BadArguments("missing field `code`" if code is None else "`code` must be a string")
    return {
        "code": code,
        "yield_time_ms": _count(arguments, "yield_time_ms", integer=True),
        "max_output_tokens": _count(arguments, "max_output_tokens", integer=True),
    }


def _wait_arguments(arguments: Mapping[str, Any]) -> dict[str, Any]:
    _reject_unknown(arguments, ("cell_id", "yield_time_ms", "max_tokens", "terminate"))
    cell_id = arguments.get("cell_id")
    if cell_id is None:
        raise _BadArguments("missing field `cell_id`")
    if isinstance(cell_id, int) and not isinstance(cell_id, bool):
        cell_id = str(cell_id)  # models sometimes send the id as a number
    if not isinstance(cell_id, str):
        raise _BadArguments("`cell_id` must be a string")
    terminate = arguments.get("terminate")
    if terminate is not None and not isinstance(terminate, bool):
        raise _BadArguments("`terminate` must be a boolean")
    return {
        "cell_id": cell_id,
        "yield_time_ms": _count(arguments, "yield_time_ms", integer=False),
        "max_tokens": _count(arguments, "max_tokens", integer=False),
        "terminate": bool(terminate),
    }


def _reject_unknown(arguments: Mapping[str, Any], known: tuple[str, ...]) -> None:
    for key in arguments:
        if key not in known:
            expected = ", ".join(f"`{name}`" for name in known)
            raise _BadArguments(f"unknown field `{key}`, expected one of {expected}")


def _count(arguments: Mapping[str, Any], key: str, *, integer: bool) -> int | None:
    value = arguments.get(key)
    if value is None:
        return None
    kind = "integer" if integer else "number"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _BadArguments(f"`{key}` must be a non-negative {kind}")
    if value < 0 or not math.isfinite(value) or (integer and value != int(value)):
        raise _BadArguments(f"`{key}` must be a non-negative {kind}")
    return int(value)


# -- one client connection -------------------------------------------------------------------
@dataclass(frozen=True)
class _Observer:
    """An exec or wait call in flight, and the log levels its stream may carry."""

    session: ServerSession
    request_id: types.RequestId | None
    levels: frozenset[types.LoggingLevel]


class ConnectionSession:
    """One client connection's `CodeMode`, and where its notifications go."""

    def __init__(self, new_session: NewSession, session_id: str | None = None) -> None:
        self.min_level: types.LoggingLevel | None = None
        self.result_meta: dict[str, str] = {}
        """Added to the `_meta` of every exec/wait result (a sessionless client's session handle)."""
        self._execs: list[_Observer] = []
        self._waits: dict[str, list[_Observer]] = {}
        self._channel: ServerSession | None = None
        self._latest: ServerSession | None = None
        self._carried: dict[str, ExecResult] = {}
        self._held: deque[tuple[str, str]] = deque(maxlen=MAX_HELD_NOTIFICATIONS)
        self._start_lock = anyio.Lock()
        self._start_error: BaseException | None = None
        self._started = False
        self.cm = new_session(self._on_notify, self._ask_client, session_id)

    @property
    def busy(self) -> bool:
        """Whether an exec or wait call is in flight on this session."""
        return bool(self._execs or self._waits)

    async def start(self) -> None:
        """Start the session once, or tell the client why it cannot (a bad MCP config).

        Every request calls this; once started it returns at once (no lock, no engine check).
        """
        if self._started:
            return
        async with self._start_lock:
            if self._start_error is None:
                try:
                    await self.cm.start()
                    self._started = True
                    return
                except Exception as exc:
                    summary = exc.summary if isinstance(exc, McpServerError) else str(exc)
                    logger.error("code mode failed to start: %s", summary)
                    self._start_error = exc
            error = self._start_error
            # The client may be remote, or a model: it gets no host paths or secrets (the log has them).
            why = error.public_summary if isinstance(error, McpServerError) else str(error)
            message = safe_text(f"code mode failed to start: {why}")
            raise MCPError(code=types.INTERNAL_ERROR, message=message) from error

    async def aclose(self) -> None:
        await self.cm.aclose()

    async def exec(
        self,
        ctx: ServerRequestContext[Any],
        code: str,
        yield_time_ms: int | None,
        max_output_tokens: int | None,
    ) -> ExecResult | types.InputRequiredResult:
        observer = await self._observe(ctx)
        self._execs.append(observer)
        try:
            result = await self.cm.exec(code, yield_time_ms=yield_time_ms, max_output_tokens=max_output_tokens)
        finally:
            self._execs.remove(observer)
        return self._answer(ctx, result)

    async def wait(
        self,
        ctx: ServerRequestContext[Any],
        cell_id: str,
        yield_time_ms: int | None,
        max_tokens: int | None,
        terminate: bool,
    ) -> ExecResult | types.InputRequiredResult:
        observer = await self._observe(ctx)
        observers = self._waits.setdefault(cell_id, [])
        observers.append(observer)
        try:
            result = await self.cm.wait(
                cell_id, yield_time_ms=yield_time_ms, max_tokens=max_tokens, terminate=terminate
            )
        finally:
            observers.remove(observer)
            if not observers:
                del self._waits[cell_id]
        return self._answer(ctx, result)

    async def resume(
        self,
        ctx: ServerRequestContext[Any],
        request_state: str,
        answers: Mapping[str, types.InputResponse],
        yield_time_ms: int | None,
    ) -> ExecResult | types.InputRequiredResult:
        """The retry of an exec/wait that asked about waiting calls: answer them, then observe
        the cell again (the code is not run again)."""
        cell_id, asked = _read_request_state(request_state)
        for call_id, tool_name in asked.items():
            answer = answers.get(call_id)
            if answer is None:
                continue
            refusal = _refusal(answer, tool_name)
            try:
                if refusal is None:
                    await self.cm.approve(cell_id, call_id)
                else:
                    await self.cm.reject(cell_id, call_id, reason=refusal)
            except UsageError:
                pass  # timed out or ended meanwhile: the observation's call records say so
        try:
            unanswered = self.cm.pending_approvals(cell_id)
        except UsageError:
            unanswered = []  # the cell ended: the observation below reports it
        if unanswered:  # asked again at once, rather than after a whole yield time
            return self._ask(cell_id, unanswered)
        return await self.wait(ctx, cell_id, yield_time_ms, None, terminate=False)

    def _answer(self, ctx: ServerRequestContext[Any], result: ExecResult) -> ExecResult | types.InputRequiredResult:
        """The observation as the client gets it: with what earlier input-required answers held
        back, or (at 2026-07-28, calls waiting) as a question about the waiting calls."""
        cell_id = result.cell_id
        if cell_id is None:
            return result
        carried = self._carried.pop(cell_id, None)
        if carried is not None:
            result = replace(
                result,
                items=carried.items + result.items,
                tool_calls=carried.tool_calls + result.tool_calls,
                wall_time_s=carried.wall_time_s + result.wall_time_s,
                max_output_tokens=carried.max_output_tokens,
            )
        if not result.pending_approvals or ctx.protocol_version not in MODERN_PROTOCOL_VERSIONS:
            return result
        running = set(self.cm.running_cells)
        for ended in [held for held in self._carried if held not in running]:
            del self._carried[ended]  # asked, never retried, and ended since
        self._carried[cell_id] = result
        return self._ask(cell_id, result.pending_approvals)

    @staticmethod
    def _ask(cell_id: str, pending: Sequence[PendingApproval]) -> types.InputRequiredResult:
        questions: types.InputRequests = {
            approval.call_id: types.ElicitRequest(
                params=types.ElicitRequestFormParams(
                    message=_approval_question(approval), requested_schema=_APPROVAL_FORM
                )
            )
            for approval in pending
        }
        state = _Asked(cell_id=cell_id, calls={approval.call_id: approval.tool_name for approval in pending})
        return types.InputRequiredResult(input_requests=questions, request_state=state.model_dump_json())

    async def _observe(self, ctx: ServerRequestContext[Any]) -> _Observer:
        observer = _Observer(ctx.session, ctx.request_id, allowed_log_levels(ctx.protocol_version, ctx.meta))
        self._latest = ctx.session
        if ctx.protocol_version not in MODERN_PROTOCOL_VERSIONS:
            # Handshake era: the connection has a channel of its own for server notifications.
            self._channel = ctx.session
        while self._held and self._delivers(observer.levels):
            cell_id, text = self._held.popleft()
            await _send_log(observer.session, cell_id, text, observer.request_id)
        return observer

    def _observer_of(self, cell_id: str) -> _Observer | None:
        """The call in flight a cell's notifications and approval questions ride: the newest
        wait on the cell, else the newest exec (an exec call does not know its cell id before
        it returns; what it carries names its cell)."""
        waits = self._waits.get(cell_id)
        return waits[-1] if waits else (self._execs[-1] if self._execs else None)

    async def _on_notify(self, cell_id: str, text: str) -> None:
        observer = self._observer_of(cell_id)
        if observer is not None:
            if self._delivers(observer.levels):
                await _send_log(observer.session, cell_id, text, observer.request_id)
        elif self._channel is not None:
            if self._delivers(_ALL_LEVELS):
                await _send_log(self._channel, cell_id, text, None)
        else:
            self._held.append((cell_id, text))

    async def _ask_client(self, call: ToolCall) -> ApprovalDecision:
        """Ask the client's user whether a nested call may run (MCP elicitation); at 2026-07-28
        leave it waiting, for the observing call to ask in its input-required result."""
        observer = self._observer_of(call.cell_id)
        session, related = (observer.session, observer.request_id) if observer else (self._channel, None)
        if session is None and self._latest is not None and self._latest.protocol_version in MODERN_PROTOCOL_VERSIONS:
            session = self._latest  # nothing observes the cell now: the next exec/wait asks
        if session is None or not session.check_client_capability(_ELICITATION):
            raise ToolError(_approvals_unavailable(call, "the MCP client does not support elicitation"))
        if session.protocol_version in MODERN_PROTOCOL_VERSIONS:
            return "ask"
        if not session.can_send_request:
            why = f"protocol {session.protocol_version} gives the server no channel to ask the client on"
            raise ToolError(_approvals_unavailable(call, why))
        pending = PendingApproval(call.cell_id, call.call_id, call.tool_name, call.arguments)
        try:
            answer = await session.elicit_form(_approval_question(pending), _APPROVAL_FORM, related_request_id=related)
        except MCPError as exc:
            raise ToolError(_approvals_unavailable(call, f"asking the MCP client failed: {exc}")) from None
        if _approves(answer):
            return True
        raise ToolError(_user_refused(call.tool_name, answer.action))

    def _delivers(self, levels: frozenset[types.LoggingLevel]) -> bool:
        if "info" not in levels:
            return False
        return self.min_level is None or _LOG_LEVELS.index(self.min_level) <= _LOG_LEVELS.index("info")


_ALL_LEVELS: frozenset[types.LoggingLevel] = frozenset(_LOG_LEVELS)
_REFUSALS = {
    "accept": "they left Approve unchecked",
    "decline": "they declined it",
    "cancel": "they dismissed the question",
}
"""How each elicitation answer that is no approval reads in the script's rejection."""
_ELICITATION = types.ClientCapabilities(elicitation=types.ElicitationCapability())
_APPROVAL_FORM: types.ElicitRequestedSchema = {
    "type": "object",
    "properties": {"approve": {"type": "boolean", "title": "Approve", "description": "Run this tool call"}},
    "required": ["approve"],
}


def ask_client_after(policy: ApprovalPolicy | None, ask_client: AskClient) -> ApprovalPolicy:
    """The host's policy first (if any); what it leaves to "ask" is asked of the client."""
    if policy is None:
        return ask_client

    async def decide(call: ToolCall) -> ApprovalDecision:
        decision = policy(call)
        if inspect.isawaitable(decision):
            decision = await decision
        return await ask_client(call) if decision == "ask" else decision

    return decide


def _approval_question(pending: PendingApproval) -> str:
    return safe_text(f"Code mode wants to run {pending.describe()} (exec cell {pending.cell_id}). Approve it?")


def _approves(answer: types.ElicitResult) -> bool:
    return answer.action == "accept" and (answer.content or {}).get("approve") is True


def _user_refused(tool_name: str, action: str) -> str:
    return f"The user did not approve this call to tools.{tool_name} ({_REFUSALS[action]}); it was not run."


def _refusal(answer: types.InputResponse, tool_name: str) -> str | None:
    """None if an input-required answer approves the call, else the script's rejection text."""
    if not isinstance(answer, types.ElicitResult):
        return f"The MCP client answered the approval of this call to tools.{tool_name} with no form; it was not run."
    return None if _approves(answer) else _user_refused(tool_name, answer.action)


def _read_request_state(state: str) -> tuple[str, dict[str, str]]:
    """The cell, and the calls (id: tool name), an input-required result asked about.

    Minted by `_ask` and sealed by the SDK's `RequestStateBoundary`, so only a state of this
    server's making gets here; the shape is checked all the same."""
    try:
        asked = _Asked.model_validate_json(state)
    except pydantic.ValidationError:
        raise MCPError(code=types.INVALID_PARAMS, message="Invalid or expired requestState") from None
    return asked.cell_id, asked.calls


class _Asked(pydantic.BaseModel):
    """The `requestState` of an input-required result: the cell, and its calls asked about."""

    model_config = pydantic.ConfigDict(frozen=True, strict=True)

    cell_id: str
    calls: dict[str, str]


def _approvals_unavailable(call: ToolCall, why: str) -> str:
    return (
        f"Approvals are not available over this MCP connection ({why}), so this call to "
        f"tools.{call.tool_name}, which needs approval, was not run."
    )


async def _send_log(session: ServerSession, cell_id: str, text: str, related: types.RequestId | None) -> None:
    notification = types.LoggingMessageNotification(
        params=types.LoggingMessageNotificationParams(
            level="info", logger=LOGGER_NAME, data=safe_text(text), _meta={CELL_ID_META_KEY: cell_id}
        )
    )
    try:
        await session.send_notification(notification, related_request_id=related)
    except Exception:  # notifications are best-effort; the script never sees this
        logger.debug("could not deliver a notify() text of cell %s", cell_id, exc_info=True)


class OneClient:
    """A stream connection's one session, whatever the request."""

    def __init__(self, client: ConnectionSession) -> None:
        self._client = client

    async def client_for(self, ctx: ServerRequestContext[Any]) -> ConnectionSession:
        await self._client.start()  # started by the lifespan; this re-raises why it could not
        return self._client
