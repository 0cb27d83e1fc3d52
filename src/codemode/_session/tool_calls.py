"""Running one nested tool call: arguments in as JSON text, result out as JSON text.

Everything that goes wrong here becomes a `ToolCallFailed` (or, for a call that was not
approved, a `ToolCallRejected`) whose message is what the script's promise rejects with; the
model never sees a Python traceback. A tool that requires approval is asked for it after its
arguments are validated (so the policy and the host see valid arguments) and before it runs; a
handler that learns only while running that its call needs approval awaits `approve_running_call()`.
"""

from __future__ import annotations

import inspect
import json
import math
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from functools import partial
from typing import Any, cast

from codemode._session.approvals import ToolCallRejected
from codemode._threads import run_sync
from codemode.errors import ToolError, UsageError
from codemode.tools import Tool


class ToolCallFailed(Exception):
    """The call failed; `str(exc)` is the rejection message for the script."""


# The running nested call's way to its approval (each call runs in a task of its own).
_running_call_approval: ContextVar[Callable[[], Awaitable[None]] | None] = ContextVar(
    "codemode_running_call_approval", default=None
)


async def approve_running_call() -> None:
    """From inside a tool handler: pause this call until it is approved, as if its tool required
    approval (for tools that decide so while running, e.g. a framework's deferred approvals).

    Raises:
        ToolCallRejected: the call was not approved; let it propagate (the script gets its text).
        UsageError: not called from a nested call's handler.
    """
    seek = _running_call_approval.get()
    if seek is None:
        raise UsageError("approve_running_call() works only inside a nested tool call's handler")
    await seek()


async def call_tool(tool: Tool, script_name: str, arguments_json: str | None,
                    seek_approval: Callable[[Any], Awaitable[None]] | None = None) -> str:
    """Validate the arguments, seek approval if the tool requires it, run the handler (sync
    ones off the event loop), encode the result."""
    arguments = _arguments(tool, script_name, arguments_json)
    try:
        tool.validate(arguments)
    except Exception as exc:
        raise ToolCallFailed(str(exc) or type(exc).__name__) from None
    if seek_approval is not None:
        if await tool.needs_approval(arguments):
            await seek_approval(arguments)
        _running_call_approval.set(partial(seek_approval, arguments))
    try:
        if inspect.iscoroutinefunction(tool.handler):
            result = await tool.handler(arguments)
        else:
            result = await run_sync(tool.handler, arguments)
            if inspect.isawaitable(result):
                result = await result
    except ToolCallRejected:
        raise
    except ToolError as exc:
        raise ToolCallFailed(str(exc)) from None
    except Exception as exc:
        raise ToolCallFailed(str(exc) or type(exc).__name__) from None
    return encode_result(script_name, result)


def _arguments(tool: Tool, script_name: str, arguments_json: str | None) -> Any:
    value = None if arguments_json is None else json.loads(arguments_json, parse_int=_js_integer)
    if tool.kind == "freeform":
        if not isinstance(value, str):
            raise ToolCallFailed(f"tool `{script_name}` expects a string input")
        return value
    if value is None and arguments_json is None:
        return {}
    if not isinstance(value, dict):
        raise ToolCallFailed(f"tool `{script_name}` expects a JSON object for arguments")
    return cast("dict[str, Any]", value)


def encode_result(script_name: str, result: Any) -> str:
    """JSON text of a tool result; NaN/Infinity become null as JSON.stringify would make them."""
    try:
        return json.dumps(_finite(result), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ToolCallFailed(
            f"tool `{script_name}` returned a value that cannot be sent to JavaScript as JSON: {exc}"
        ) from None


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        mapping = cast("dict[Any, Any]", value)
        return {_key(k): _finite(v) for k, v in mapping.items()}
    if isinstance(value, (list, tuple)):
        items = cast("list[Any] | tuple[Any, ...]", value)
        return [_finite(v) for v in items]
    return value


def _key(key: Any) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, (int, float, bool)) or key is None:
        return json.dumps(key)
    raise TypeError(f"dictionary key {key!r} is not a string")


def _js_integer(text: str) -> int | float:
    """A JSON integer from JavaScript: beyond 2**53 it was a double, so keep it one."""
    value = int(text)
    return value if abs(value) <= 2**53 else float(value)
