"""The framed protocol between the host and an engine worker: msgpack arrays over a pipe.

Every message is one msgpack array whose first element names it. msgpack frames itself, so a
stream of them needs no length prefix; strings are packed with `surrogatepass`, because
JavaScript strings may hold lone surrogates (`text("a\\ud800b")`) and must arrive unchanged.

Host -> worker:
    [SETUP, setup_id, tools_json, heap_limit_bytes]     a session's setup, sent before its first cell
    [FORGET, setup_id]                                  the session closed
    [START, cell_id, setup_id, code, hoisted, stored_json, store_budget, store_limit_error]
    [RESOLVE, cell_id, call_id, ok, payload]
    [TERMINATE, cell_id]                                answered by TERMINATED once the isolate stopped
    [RELEASE, cell_id]                                  the cell finished: free its isolate
Worker -> host:
    [READY, pid]                                        V8 is up and the first isolate prepared
    [STARTED, [cell_id, ...]]                           these cells' scripts were handed to V8
    [EVENTS, cell_id, [event, ...]]                     what the script did, in order
    [TERMINATED, cell_id]
    [STUCK, seconds]                                    an isolate has not stopped for this long

Events are short arrays (`encode_event`/`decode_event`), so a burst of `text()` costs one
array each, batched per cell and per loop iteration into one EVENTS message.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import msgpack

from codemode._engine.base import (
    EngineEvent,
    FinishedEvent,
    MemoryLimitEvent,
    NotifyEvent,
    OutputEvent,
    ToolBinding,
    ToolCallEvent,
    YieldEvent,
)
from codemode._types import AudioItem, ImageItem, TextItem

SETUP, FORGET, START, RESOLVE, TERMINATE, RELEASE = range(6)
READY, EVENTS, TERMINATED, STUCK, STARTED = range(100, 105)

_YIELD = YieldEvent()
_MEMORY = MemoryLimitEvent()


def packer() -> msgpack.Packer:
    """A packer for one thread (a Packer reuses its buffer)."""
    return msgpack.Packer(unicode_errors="surrogatepass")


def pack(message: list[Any]) -> bytes:
    """One message, from any thread."""
    return msgpack.packb(message, unicode_errors="surrogatepass")  # type: ignore[no-any-return]


def unpacker() -> msgpack.Unpacker:
    # No size caps beyond the defaults' (which are the buffer size): a 64 MiB text is legal.
    return msgpack.Unpacker(unicode_errors="surrogatepass", max_buffer_size=1 << 31)


def encode_tools(tools: Sequence[ToolBinding]) -> str:
    """A session's tool table as SETUP carries it (built once per session)."""
    return json.dumps([{"name": t.global_name, "description": t.description} for t in tools])


def decode_tools(text: str) -> list[ToolBinding]:
    return [ToolBinding(t["name"], t["description"]) for t in json.loads(text)]


def encode_event(event: EngineEvent) -> list[Any]:
    match event:
        case OutputEvent(item=TextItem(text=text)):
            return ["t", text]
        case OutputEvent(item=ImageItem(image_url=url, detail=detail)):
            return ["i", url, detail]
        case OutputEvent(item=AudioItem(audio_url=url)):
            return ["a", url]
        case NotifyEvent(text=text):
            return ["n", text]
        case ToolCallEvent(call_id=call_id, tool_name=name, arguments_json=arguments):
            return ["c", call_id, name, arguments]
        case YieldEvent():
            return ["y"]
        case FinishedEvent(error=error, stored_writes=writes):
            return ["f", error, dict(writes)]
        case MemoryLimitEvent():
            return ["m"]
    raise TypeError(f"no wire form for engine event {event!r}")  # pragma: no cover - EngineDiedEvent is host-side


def decode_event(data: list[Any]) -> EngineEvent:
    match data:
        case ["t", text]:
            return OutputEvent(TextItem(text))
        case ["i", url, detail]:
            return OutputEvent(ImageItem(url, detail))
        case ["a", url]:
            return OutputEvent(AudioItem(url))
        case ["n", text]:
            return NotifyEvent(text)
        case ["c", call_id, name, arguments]:
            return ToolCallEvent(call_id, name, arguments)
        case ["y"]:
            return _YIELD
        case ["f", error, writes]:
            return FinishedEvent(error, writes)
        case ["m"]:
            return _MEMORY
    raise ValueError(f"malformed engine event from the worker: {data!r:.200}")
