"""One script in one isolate: launching it, reading its messages, settling its tool calls (and,
for a durable cell, replaying its recorded steps), turning engine failures into model-facing error
texts, and terminating it.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from codemode._engine.base import (
    CellProgram,
    ClockRead,
    Determinism,
    EngineEvent,
    EventSink,
    FinishedEvent,
    JournalEntry,
    JournalEvent,
    MemoryLimitEvent,
    NotifyEvent,
    OutputDroppedEvent,
    OutputEvent,
    ResolvedCalls,
    SessionSetup,
    TimerFired,
    ToolCallEvent,
    YieldEvent,
)
from codemode._engine.miniracer._compat import (
    JSConversionException,
    JSEvalException,
    JSOOMException,
    JSParseException,
)
from codemode._engine.miniracer._isolate import (
    CHANNEL_ERROR,
    HOST,
    PRELUDE_NAME,
    SCRIPT_NAME,
    ChannelError,
    Isolate,
    isolate_executor,
)
from codemode._protocol.helpers import HOST_HELPER_PREFIX
from codemode._protocol.syntax import UNFINISHED_SCRIPT, source_excerpt
from codemode._protocol.types import AudioItem, ImageItem, TextItem

PROGRAM_PREFIX = (
    HOST + ".run({tools}, {snapshot}, {budget}, {limit_error}, {determinism}, "
    'async function (__codemode_module__, __codemode_import__) {{"use strict";{hoisted}'
)
PROGRAM_SUFFIX = f"\n}});\n//# sourceURL={SCRIPT_NAME}\n"
# How often a running cell's isolate is checked for a reached heap limit. A poll, and the only
# way: V8 reports an overflow in a timer or after an `await` to no callback mini-racer exposes.
MEMORY_CHECK_S = 0.1


@dataclass(frozen=True)
class ToolsSource:
    """The session's tools as the prelude's `run` takes them, as JS source (built once per
    session, `tools_source`).

    A fresh isolate pays for every literal it compiles: 128 tool names as an array cost about
    0.1 ms and ALL_TOOLS' entries (names and descriptions) 0.2 ms, every exec. So the host
    helpers (a few) come as an array, the tool names as one JSON string that the prelude parses
    when the script first touches `tools`, and the entries only to a script that names
    ALL_TOOLS or a module that exports it (`needs_entries`).
    """

    helpers_and_names: str
    entries: str

    def for_program(self, program: CellProgram) -> str:
        return f"{self.helpers_and_names}, {self.entries if needs_entries(program) else 'null'}"


def tools_source(setup: SessionSetup) -> ToolsSource:
    helpers = [t.global_name for t in setup.tools if t.global_name.startswith(HOST_HELPER_PREFIX)]
    names = [t.global_name for t in setup.tools if not t.global_name.startswith(HOST_HELPER_PREFIX)]
    entries = json.dumps([{"name": t.global_name, "description": t.description} for t in setup.tools])
    return ToolsSource(f"{json.dumps(helpers)}, {json.dumps(json.dumps(names))}", json.dumps(entries))


def needs_entries(program: CellProgram) -> bool:
    """Whether a script may read ALL_TOOLS: it names it, imports the tools module, or imports a
    module by a computed name. (One that reaches it only by a computed global name is told to
    name it.)"""
    return any(
        marker in text
        for text in (program.code, program.hoisted)
        for marker in ("ALL_TOOLS", "tools.js", "__codemode_import__")
    )


def determinism_source(determinism: Determinism | None, code: str) -> str:
    """The determinism as the prelude's `run` takes it: a JS object literal (its clock as
    `[ms, times]` pairs), or null. `temporal`: the script names Temporal, so Temporal.Now is
    journaled too (building Temporal costs every other cell too much; a script that reaches it
    without its name reads the real clock, unjournaled)."""
    if determinism is None:
        return "null"
    clock = [[r.ms, r.times] if isinstance(r, ClockRead) else [r, 1] for r in determinism.clock]
    return json.dumps(
        {
            "seed": determinism.random_seed,
            "clock": [r for r in clock if r[1] > 0],
            "replaying": determinism.replaying,
            "temporal": "Temporal" in code,
        }
    )


STORE_TOO_DEEP = (
    "store: the value of {key} is nested too deeply to keep (the host reads at most about 900 levels), "
    "so this cell's stored values were not saved. Flatten the value before storing it."
)
STORE_HUGE_INTEGER = (
    "store: the value of {key} holds an integer of more than {digits} digits (a JSON.rawJSON value), "
    "which the host cannot read, so this cell's stored values were not saved. Store such numbers as strings."
)
_IMAGE_DETAILS = frozenset({"auto", "low", "high", "original"})
# The fields of each message kind the prelude writes, exactly.
_MESSAGE_FIELDS: dict[str, frozenset[str]] = {
    "text": frozenset({"k", "v"}),
    "notify": frozenset({"k", "v"}),
    "image": frozenset({"k", "url", "detail"}),
    "audio": frozenset({"k", "url"}),
    "dropped": frozenset({"k", "items", "chars"}),
    "call": frozenset({"k", "id", "name", "args"}),
    "yield": frozenset({"k"}),
    "done": frozenset({"k", "error", "writes"}),
    "journal": frozenset({"k", "v"}),
}
_MAX_CALL_ID = 2**53  # call ids (and timer ids) count up from 1 as JS numbers


class MiniRacerCell:
    """One script in one isolate; implements `EngineCell`.

    The isolate is taken from the pool by `start` (at once when one is prepared), else reserved
    (`launch_when_ready`); a terminate before it arrives withdraws the reservation or gives the
    isolate back unused. The cell starts no tasks: the ones it waits on are V8's evaluations
    (`_watch`) and the reservation, both futures it holds and cancels when it stops.
    """

    def __init__(
        self,
        on_event: EventSink,
        release_isolate: Callable[[Isolate], None],
    ) -> None:
        self._isolate: Isolate | None = None
        self._release_isolate = release_isolate  # frees a finished cell's isolate later
        self._on_event = on_event
        self._prefix_length = 0
        self._script_lines = 0  # lines of the model's script, past which the wrapper's are
        self._memory_check: asyncio.TimerHandle | None = None
        self._reservation: asyncio.Future[Isolate] | None = None  # for an isolate, when none was ready
        self._finished = False
        self._freed = False
        self._draining = False
        self._tasks: set[asyncio.Future[Any]] = set()
        self._open_calls = 0  # tool calls the script made that are not resolved yet
        self._resolutions: list[str] = []  # `[id, ok, payload]` sources batched into one resolve eval
        self._early: list[str] = []  # commands made before the isolate arrived, run after the program
        self._recording = False  # the program has a determinism: journal messages are expected

    # -- commands ---------------------------------------------------------------------------
    def launch(self, isolate: Isolate, setup: SessionSetup, tools: ToolsSource, program: CellProgram) -> None:
        """Run `program` in `isolate` (fresh, never used) with the session's `setup` (whose
        tools are given as `tools_source`)."""
        self._isolate = isolate
        self._recording = program.determinism is not None
        prefix = PROGRAM_PREFIX.format(
            tools=tools.for_program(program),
            snapshot=json.dumps(program.stored_json),
            budget=program.store_budget_bytes,
            limit_error=json.dumps(program.store_limit_error),
            determinism=determinism_source(program.determinism, program.code),
            hoisted=program.hoisted,
        )
        self._prefix_length = len(prefix)
        self._script_lines = program.code.count("\n") + 1
        isolate.on_ping = self._pump
        if setup.heap_limit_bytes:
            isolate.v8.set_heap_limit(setup.heap_limit_bytes)
            self._memory_check = asyncio.get_running_loop().call_later(MEMORY_CHECK_S, self._check_memory)
        self._watch(isolate.submit(prefix + program.code + PROGRAM_SUFFIX))
        early, self._early = self._early, []
        for code in early:
            self._watch(isolate.submit(code, quiet=True))

    def launch_when_ready(
        self,
        reservation: asyncio.Future[Isolate],
        give_back: Callable[[Isolate], None],
        setup: SessionSetup,
        tools: ToolsSource,
        program: CellProgram,
    ) -> None:
        """`launch` once the pool fills `reservation` (`terminate` meanwhile withdraws it, or
        gives back an isolate that arrived unused)."""
        self._reservation = reservation

        def arrived(future: asyncio.Future[Isolate]) -> None:
            self._reservation = None
            if future.cancelled():
                return
            exc = future.exception()
            if exc is not None:
                if not self._freed:
                    self._fail(f"the JavaScript engine could not start an isolate: {type(exc).__name__}: {exc}")
                return
            if self._freed:
                give_back(future.result())
                return
            self.launch(future.result(), setup, tools, program)

        reservation.add_done_callback(arrived)

    def _check_memory(self) -> None:
        """Push the heap limit when V8 reached it: an overflow in a timer or after an `await`
        stops the script without failing any evaluation the host sees."""
        self._memory_check = None
        if self._freed or self._finished or self._isolate is None:
            return
        if self._isolate.v8.heap_limit_reached():
            self._on_event(MemoryLimitEvent())
            return
        self._memory_check = asyncio.get_running_loop().call_later(MEMORY_CHECK_S, self._check_memory)

    def resolve_tool_call(self, call_id: int, ok: bool, payload: str) -> None:
        if self._finished or self._freed:
            return
        self._open_calls -= 1
        self._resolutions.append(_result_source(call_id, ok, payload))
        if self._open_calls <= 0:
            self._flush_resolutions()  # the last call the script waits for: no delay
        elif len(self._resolutions) == 1:
            # More calls are open (`Promise.all`): results that arrive in the same loop
            # iteration travel in one eval, so 100 calls do not cost 100 evals.
            asyncio.get_running_loop().call_soon(self._flush_resolutions)

    def _flush_resolutions(self) -> None:
        if not self._resolutions or self._finished or self._freed or self._isolate is None:
            self._resolutions.clear()
            return
        code = f"{HOST}.resolve([{','.join(self._resolutions)}]);"
        self._resolutions.clear()
        self._watch(self._isolate.submit(code, quiet=True))

    def resolve_together(self, results: Sequence[tuple[int, bool, str]]) -> None:
        self._open_calls -= len(results)
        sources = ",".join(_result_source(call_id, ok, payload) for call_id, ok, payload in results)
        self._command(f"{HOST}.resolve([{sources}]);")

    def fire_timer(self, timer_id: int) -> None:
        self._command(f"{HOST}.fire({int(timer_id)});")

    def go_live(self) -> None:
        self._command(f"{HOST}.live();")

    def _command(self, code: str) -> None:
        """Run `code` in the isolate after every command made before it (batched resolutions
        included), or after the program once the isolate arrives."""
        if self._finished or self._freed:
            return
        if self._isolate is None:
            self._early.append(code)
            return
        self._flush_resolutions()
        self._watch(self._isolate.submit(code, quiet=True))

    async def terminate(self) -> None:
        if self._freed:
            return
        if self._isolate is None:
            self._freed = True  # never launched: nothing runs
            if self._reservation is not None:
                self._reservation.cancel()  # or, if it was filled meanwhile, `arrived` gives it back
            return
        self._pump()
        stranded = self._isolate.overflow_count()
        if stranded and not self._finished:
            # Messages that did not fit the ring are still inside the busy isolate; freeing it
            # loses them. Say so where they would have appeared rather than drop them silently.
            self._on_event(OutputEvent(TextItem(
                f"[{stranded} more output messages were still queued inside the script when it was"
                " terminated and are lost: it produced output faster than it could be delivered"
                " while it never went idle]"
            )))
        await self._free()

    def release(self) -> None:
        if self._freed:
            return
        isolate = self._isolate
        self._detach()
        if isolate is not None:
            self._release_isolate(isolate)

    # -- events -----------------------------------------------------------------------------
    def _watch(self, future: asyncio.Future[Any]) -> None:
        self._tasks.add(future)

        def settled(fut: asyncio.Future[Any]) -> None:
            self._tasks.discard(fut)
            if fut.cancelled() or self._freed:
                return
            exc = fut.exception()
            self._pump()
            # A value that cannot be converted (a BigInt a script smuggled out of the wrapper)
            # is no failure: nothing evaluated here returns a value the host uses.
            if exc is not None and not isinstance(exc, JSConversionException):
                self._fail(self._engine_error_text(exc))

        future.add_done_callback(settled)

    def _pump(self) -> None:
        """Deliver every message waiting in the ring (and start an overflow drain if needed)."""
        if self._freed or self._isolate is None:
            return
        try:
            messages, overflow = self._isolate.read_messages()
        except ChannelError as exc:
            for message in exc.messages:  # sent before the corruption: they count
                self._dispatch(message)
            self._fail(CHANNEL_ERROR)
            return
        for message in messages:
            self._dispatch(message)
        if overflow and not self._draining and not self._finished:
            self._draining = True
            drain = self._isolate.submit(f"{HOST}.drain()")

            def drained(fut: asyncio.Future[Any]) -> None:
                self._draining = False
                if fut.cancelled() or fut.exception() is not None or self._freed:
                    return
                try:
                    messages = json.loads(fut.result())
                    if not isinstance(messages, list):
                        raise TypeError("not a list")
                except (TypeError, ValueError, RecursionError):
                    self._fail(CHANNEL_ERROR)
                    return
                for message in cast("list[Any]", messages):
                    self._dispatch(message)
                self._pump()

            drain.add_done_callback(drained)

    def _dispatch(self, message: dict[str, Any]) -> None:
        if self._finished:
            return
        if isinstance(message, dict) and message.get("k") == "journal":
            self._journal(message)
            return
        problem = _message_problem(message)
        if problem is not None:
            self._fail(problem)
            return
        kind = message["k"]
        event: EngineEvent
        if kind == "text":
            event = OutputEvent(TextItem(message["v"]))
        elif kind == "image":
            event = OutputEvent(ImageItem(message["url"], message["detail"]))
        elif kind == "audio":
            event = OutputEvent(AudioItem(message["url"]))
        elif kind == "dropped":
            event = OutputDroppedEvent(message["items"], message["chars"])
        elif kind == "notify":
            event = NotifyEvent(message["v"])
        elif kind == "call":
            self._open_calls += 1
            event = ToolCallEvent(message["id"], message["name"], message["args"])
        elif kind == "yield":
            event = YieldEvent()
        elif kind == "done":
            self._finished = True
            error = message["error"]
            event = FinishedEvent(None if error is None else self._fix_positions(error), message["writes"])
        else:  # pragma: no cover - the prelude sends only the kinds above
            raise AssertionError(f"unknown engine message kind {kind!r}")
        self._on_event(event)

    def _journal(self, message: dict[str, Any]) -> None:
        """A journal message, parsed once (it may hold a million clock readings); only a cell
        with a determinism records."""
        entries = _journal_entries(message["v"]) if message.keys() == _MESSAGE_FIELDS["journal"] else None
        if entries is None or not self._recording:
            self._fail(CHANNEL_ERROR)
            return
        self._on_event(JournalEvent(entries))

    def _fail(self, error: str) -> None:
        if not self._finished:
            self._finished = True
            self._on_event(FinishedEvent(error))

    def _engine_error_text(self, exc: BaseException) -> str:
        if isinstance(exc, JSOOMException) or (self._isolate is not None and self._isolate.v8.heap_limit_reached()):
            self._on_event(MemoryLimitEvent())
            return "JavaScript memory limit reached"
        if isinstance(exc, JSParseException):
            return self._syntax_error_text(str(exc))
        if isinstance(exc, JSEvalException):
            return self._fix_positions(_stack_from_eval_error(str(exc)))
        return f"{type(exc).__name__}: {exc}"

    def _syntax_error_text(self, text: str) -> str:
        """`<anonymous>:3: SyntaxError: msg / source / caret` -> `SyntaxError: msg` + position,
        then the offending line of the script with carets under the token (or, when V8 got past
        the script's last line into the wrapper's, a note that the script is unfinished)."""
        lines = text.split("\n")
        match = re.match(r"^<anonymous>:(\d+): (.*)$", lines[0])
        if match is None:
            return text.strip()
        line, message = int(match.group(1)), match.group(2)
        caret = lines[2] if len(lines) > 2 and "^" in lines[2] else ""
        start = caret.index("^") if caret else 0
        source = lines[1].rstrip("\r") if caret else ""
        if line == 1:
            start = max(0, start - self._prefix_length)
            source = source[self._prefix_length :]
        reported = f"{message}\n    at {SCRIPT_NAME}:{line}:{start + 1}"
        if not caret:
            return reported
        if line > self._script_lines:
            return reported + "\n" + UNFINISHED_SCRIPT
        return reported + "\n" + source_excerpt(line, source, start, caret.count("^"))

    def _fix_positions(self, text: str) -> str:
        """Hide the wrapper: drop its stack frames and shift line-1 columns back by the prefix."""
        kept: list[str] = []
        for line in text.split("\n"):
            if PRELUDE_NAME in line or _wrapper_frame(line, self._prefix_length):
                continue
            kept.append(line)

        def shift(match: re.Match[str]) -> str:
            column = int(match.group(1)) - self._prefix_length
            return f"{SCRIPT_NAME}:1:{max(column, 1)}"

        return re.sub(rf"{re.escape(SCRIPT_NAME)}:1:(\d+)", shift, "\n".join(kept))

    def _detach(self) -> None:
        """Stop listening to the isolate: the ring is never read again."""
        self._freed = True
        if self._memory_check is not None:
            self._memory_check.cancel()
            self._memory_check = None
        if self._reservation is not None:
            self._reservation.cancel()
        if self._isolate is not None:
            self._isolate.ring = None
            self._isolate.on_ping = lambda: None
        for task in list(self._tasks):
            task.cancel()

    async def _free(self) -> None:
        if self._freed:
            return
        isolate = self._isolate
        self._detach()
        if isolate is not None:
            await asyncio.get_running_loop().run_in_executor(isolate_executor(), isolate.free)


def _message_problem(received: Any) -> str | None:
    """Why a message cannot be accepted (the script's error text), or None if it is well formed.

    The prelude writes only well-formed messages, with its own copies of the built-ins, but the
    script's realm is untrusted: every message is checked for exactly the fields of its kind
    and their types before anything of it is used. The limits (stored values, output) are the
    session's, enforced on the events.
    """
    if not isinstance(received, dict):
        return CHANNEL_ERROR
    message = cast("dict[str, Any]", received)  # JSON: its keys are strings, its values anything
    kind = message.get("k")
    fields = _MESSAGE_FIELDS.get(kind) if isinstance(kind, str) else None
    if fields is None or message.keys() != fields:
        return CHANNEL_ERROR
    if kind == "text" or kind == "notify":
        ok = isinstance(message["v"], str)
    elif kind == "image":
        url, detail = message["url"], message["detail"]
        ok = isinstance(url, str) and url[:5].lower() == "data:" and isinstance(detail, str) and (
            detail in _IMAGE_DETAILS
        )
    elif kind == "audio":
        url = message["url"]
        ok = isinstance(url, str) and url[:5].lower() == "data:"
    elif kind == "call":
        call_id, args = message["id"], message["args"]
        ok = type(call_id) is int and 0 < call_id <= _MAX_CALL_ID and isinstance(message["name"], str) and (
            args is None or isinstance(args, str)
        )
    elif kind == "yield":
        ok = True
    elif kind == "journal":
        ok = _journal_entries(message["v"]) is not None
    elif kind == "dropped":
        items, chars = message["items"], message["chars"]
        ok = type(items) is int and type(chars) is int and items > 0 and chars >= 0
    else:  # done
        error, writes = message["error"], message["writes"]
        if not (error is None or isinstance(error, str)) or not isinstance(writes, dict):
            return CHANNEL_ERROR
        for key, value in cast("dict[str, Any]", writes).items():
            if not isinstance(value, str):
                return CHANNEL_ERROR
            problem = _stored_value_problem(key, value)
            if problem is not None:
                return problem
        ok = True
    return None if ok else CHANNEL_ERROR


def _result_source(call_id: int, ok: bool, payload: str) -> str:
    """One call's result as the prelude's `resolve` takes it, as JS source."""
    return f"[{int(call_id)},{1 if ok else 0},{json.dumps(payload)}]"


def _is_id(value: Any) -> bool:
    return type(value) is int and 0 < value <= _MAX_CALL_ID


def _journal_entries(received: Any) -> tuple[JournalEntry, ...] | None:
    """The typed entries of a journal message, or None unless it holds exactly what the prelude
    records: `["b", [call ids...]]`, `["t", timer id]`, `["d", finite ms, times]`."""
    if type(received) is not list or not received:
        return None
    items = cast("list[Any]", received)
    entries: list[JournalEntry] = []
    isfinite = math.isfinite
    for item in items:
        if type(item) is not list:
            return None
        fields = cast("list[Any]", item)
        kind = fields[0] if fields else None
        if kind == "d":
            if len(fields) != 3:
                return None
            ms, times = fields[1], fields[2]
            if (type(ms) is not int and type(ms) is not float) or not isfinite(ms) or not _is_id(times):
                return None
            entries.append(ClockRead(float(ms), times))
        elif len(fields) != 2:
            return None
        elif kind == "b":
            if type(fields[1]) is not list:
                return None
            ids = cast("list[Any]", fields[1])
            if not ids or not all(_is_id(i) for i in ids):
                return None
            entries.append(ResolvedCalls(tuple(ids)))
        elif kind == "t":
            if not _is_id(fields[1]):
                return None
            entries.append(TimerFired(fields[1]))
        else:
            return None
    return tuple(entries)


def _stored_value_problem(key: str, text: str) -> str | None:
    """Why a stored value's JSON text cannot be kept: it must stay loadable, by later cells and
    by the host (`CodeMode.stored_values`)."""
    try:
        json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        return STORE_TOO_DEEP.format(key=json.dumps(key, ensure_ascii=False))
    except ValueError:
        try:  # JSON.rawJSON can write integers longer than Python converts
            json.loads(text, parse_int=str, parse_constant=_reject_constant)
        except (ValueError, RecursionError):
            return CHANNEL_ERROR
        return STORE_HUGE_INTEGER.format(
            key=json.dumps(key, ensure_ascii=False), digits=sys.get_int_max_str_digits()
        )
    return None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _wrapper_frame(line: str, prefix_length: int) -> bool:
    """A stack frame inside the wrapper prefix (the call into the user's function)."""
    match = re.fullmatch(rf"\s+at (?:.* \()?{re.escape(SCRIPT_NAME)}:1:(\d+)\)?", line)
    return match is not None and int(match.group(1)) <= prefix_length


def _stack_from_eval_error(text: str) -> str:
    """mini-racer prefixes thrown errors with `file:line: msg / source / caret`; keep the stack."""
    parts = text.split("\n\n", 1)
    if len(parts) == 2 and re.match(r"^\S+:\d+: ", parts[0]):
        return parts[1].rstrip("\n")
    return text.rstrip("\n")

