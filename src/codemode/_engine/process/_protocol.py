"""The wire between the host and an engine worker: typed messages, packed by field name.

Each message is one frozen dataclass below, sent as one msgpack map: `{"k": <tag>, <field>: <value>,
...}`. msgpack frames itself, so a stream of maps needs no length prefix; strings are packed with
`surrogatepass`, because JavaScript strings may hold lone surrogates (`text("a\\ud800b")`) and
must arrive unchanged. Unknown tags, missing or extra fields are a `ProtocolError`.

Host -> worker: `Setup` (before a session's first cell on that worker), `Forget`, `Start`,
`Resolve`, `ResolveTogether`, `FireTimer`, `GoLive` (the last three replay a durable cell),
`Terminate` (answered by `Terminated` once the isolate stopped), `Release`, `Strip` (answered by
`Stripped`).
Worker -> host: `Ready` (first, always: V8 is up, and which `PROTOCOL_VERSION` it speaks),
`Started`, `Events` (what scripts did, in order, batched per cell and loop iteration), `Terminated`,
`Stuck` (an isolate has not stopped for `seconds`), `Starved` (a cell waits for an isolate memory
is too short to make), `Stripped`.

Versioning: the host refuses a worker whose `Ready.protocol` is not its own `PROTOCOL_VERSION`
(`read_ready` checks it before anything else of the message, so any later layout is refused
cleanly). Bump it with any change to a message's tag or fields.

Frame cap: no message may exceed `MAX_FRAME_BYTES` packed (`pack` raises `FrameTooLarge`).
Senders check before sending and fail only the cell the message belongs to; each side's reader
refuses more as a safety net.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Final, Protocol, TypeAlias, cast

import msgpack

from codemode._engine.base import (
    ClockRead,
    Determinism,
    EngineEvent,
    FinishedEvent,
    JournalEntry,
    JournalEvent,
    MemoryLimitEvent,
    NotifyEvent,
    OutputDroppedEvent,
    OutputEvent,
    ResolvedCalls,
    TimerFired,
    ToolBinding,
    ToolCallEvent,
    YieldEvent,
)
from codemode._protocol.types import AudioItem, ImageItem, TextItem

PROTOCOL_VERSION: Final = 5
MIB: Final = 1024 * 1024
MAX_FRAME_BYTES: Final = 128 * MIB  # as the reference's host wire; a 64 MiB text of 2-byte characters fits
READ_CHUNK_BYTES: Final = 1 << 18  # what a reader takes from its pipe at once


class ProtocolError(Exception):
    """A message that is not one of this module's, or a frame over the cap: the peer is broken."""


class FrameTooLarge(ProtocolError):
    """A message packs to more than the frame cap; `size` is its packed size in bytes."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"a {size / MIB:.1f} MiB message is over the {limit / MIB:.0f} MiB frame cap")
        self.size = size
        self.limit = limit


class VersionMismatch(ProtocolError):
    """The worker speaks another protocol version (`theirs`; None when its READY has none)."""

    def __init__(self, theirs: object) -> None:
        super().__init__(f"the engine worker speaks protocol version {theirs!r}, this host {PROTOCOL_VERSION}")
        self.theirs = theirs


# -- host -> worker ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Setup:
    """A session's tools (`encode_tools`) and heap limit, sent before its first cell on a worker."""

    setup_id: int
    tools_json: str
    heap_limit_bytes: int


@dataclass(frozen=True, slots=True)
class Forget:
    """The session closed: drop its setup."""

    setup_id: int


@dataclass(frozen=True, slots=True)
class Start:
    """Run one cell's program (see `CellProgram`) with a setup the worker already has; its
    `Determinism`, if any, is `random_seed` (None: none), `clock` and `replaying`."""

    cell_id: int
    setup_id: int
    code: str
    hoisted: str
    stored_json: str
    store_budget_bytes: int
    store_limit_error: str
    random_seed: int | None = None
    clock: list[tuple[float, int]] = field(default_factory=list[tuple[float, int]])  # (ms, times)
    replaying: bool = False

    def determinism(self) -> Determinism | None:
        if self.random_seed is None:
            return None
        return Determinism(self.random_seed, tuple(ClockRead(ms, times) for ms, times in self.clock), self.replaying)


@dataclass(frozen=True, slots=True)
class Resolve:
    """Settle a tool call: `payload` is JSON text when `ok`, else the error message."""

    cell_id: int
    call_id: int
    ok: bool
    payload: str


@dataclass(frozen=True, slots=True)
class ResolveTogether:
    """Settle these calls `(call_id, ok, payload)` in one step of the script (replay)."""

    cell_id: int
    results: list[tuple[int, bool, str]]


@dataclass(frozen=True, slots=True)
class FireTimer:
    """Replay: run the timer's callback now, as its own step."""

    cell_id: int
    timer_id: int


@dataclass(frozen=True, slots=True)
class GoLive:
    """Replay is over: arm the cell's registered timers and journal everything from now on."""

    cell_id: int


@dataclass(frozen=True, slots=True)
class Terminate:
    """Stop the cell wherever it is; answered by `Terminated`."""

    cell_id: int


@dataclass(frozen=True, slots=True)
class Release:
    """The cell finished: free its isolate."""

    cell_id: int


@dataclass(frozen=True, slots=True)
class Strip:
    """Remove the TypeScript types of a script that does not parse as JavaScript, in the
    worker's stripper (apart from every isolate); answered by `Stripped` with the same id."""

    strip_id: int
    code: str


# -- worker -> host ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Ready:
    """The worker's first message: V8 is up and an isolate prepared."""

    protocol: int
    pid: int


@dataclass(frozen=True, slots=True)
class Started:
    """These cells' scripts were handed to V8."""

    cell_ids: list[int]


@dataclass(frozen=True, slots=True)
class Events:
    """What one cell's script did, in order."""

    cell_id: int
    events: Sequence[EngineEvent]


@dataclass(frozen=True, slots=True)
class Terminated:
    """The cell's isolate stopped (after `Terminate`)."""

    cell_id: int


@dataclass(frozen=True, slots=True)
class Stuck:
    """A freed isolate has not stopped for `seconds`."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Starved:
    """Cells have waited `seconds` for an isolate that the worker's memory is too short to make."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Stripped:
    """The answer to `Strip`: the script without its types (itself when TypeScript does not
    parse it either), or None and the `error` that kept the stripper from answering."""

    strip_id: int
    code: str | None
    error: str | None


HostMessage: TypeAlias = (
    Setup | Forget | Start | Resolve | ResolveTogether | FireTimer | GoLive | Terminate | Release | Strip
)
WorkerMessage: TypeAlias = Ready | Started | Events | Terminated | Stuck | Starved | Stripped
Message: TypeAlias = HostMessage | WorkerMessage

_TAGS: Final[dict[type[Any], str]] = {
    Setup: "setup",
    Forget: "forget",
    Start: "start",
    Resolve: "resolve",
    ResolveTogether: "resolve_together",
    FireTimer: "fire_timer",
    GoLive: "go_live",
    Terminate: "terminate",
    Release: "release",
    Strip: "strip",
    Ready: "ready",
    Started: "started",
    Events: "events",
    Terminated: "terminated",
    Stuck: "stuck",
    Starved: "starved",
    Stripped: "stripped",
}
_TYPES: Final[dict[str, type[Any]]] = {tag: kind for kind, tag in _TAGS.items()}
_FIELDS: Final[dict[type[Any], tuple[str, ...]]] = {kind: tuple(f.name for f in fields(kind)) for kind in _TAGS}


# -- packing ----------------------------------------------------------------------------------
class Packer(Protocol):
    """What this module uses of a `msgpack.Packer` (msgpack's C extension carries no types)."""

    def pack(self, obj: object, /) -> bytes: ...


class Unpacker(Protocol):
    """What the readers use of a `msgpack.Unpacker`: feed it bytes, iterate the whole objects."""

    def feed(self, next_bytes: bytes, /) -> None: ...

    def __iter__(self) -> Iterator[object]: ...


def packer() -> Packer:
    """A packer for one thread (a Packer reuses its buffer)."""
    return cast(Packer, msgpack.Packer(unicode_errors="surrogatepass"))  # pyright: ignore[reportUnknownMemberType] - untyped C extension


def pack(message: Message, limit: int = MAX_FRAME_BYTES, using: Packer | None = None) -> bytes:
    """One message as a frame (from any thread; pass a thread's own `packer` to reuse it).

    Raises `FrameTooLarge` when it packs to more than `limit` bytes."""
    data = (using or packer()).pack(to_wire(message))
    if len(data) > limit:
        raise FrameTooLarge(len(data), limit)
    return data


def unpacker(limit: int = MAX_FRAME_BYTES) -> Unpacker:
    """A reader of frames of at most `limit` bytes (fed at most `READ_CHUNK_BYTES` at a time);
    feeding it more raises `msgpack.BufferFull`."""
    return cast(Unpacker, msgpack.Unpacker(unicode_errors="surrogatepass", max_buffer_size=limit + READ_CHUNK_BYTES))  # pyright: ignore[reportUnknownMemberType] - untyped C extension


def to_wire(message: Message) -> dict[str, Any]:
    """The msgpack map of `message`: its tag under "k", then its fields by name."""
    kind = type(message)
    if kind is Events:
        batch = cast(Events, message)
        return {"k": "events", "cell_id": batch.cell_id, "events": [_event_to_wire(e) for e in batch.events]}
    data: dict[str, Any] = {"k": _TAGS[kind]}
    for name in _FIELDS[kind]:
        data[name] = getattr(message, name)
    return data


def from_wire(data: object) -> Message:
    """The message a msgpack map holds; `ProtocolError` if it is not one of this module's."""
    if not isinstance(data, dict):
        raise ProtocolError(f"not a message: {data!r:.200}")
    wire = cast(dict[str, Any], data)
    try:
        kind = _TYPES[wire.get("k", "")]
    except (KeyError, TypeError):  # an unknown tag, or one that is not even hashable
        raise ProtocolError(f"unknown message: {wire!r:.200}") from None
    names = _FIELDS[kind]
    if len(wire) != len(names) + 1:
        raise ProtocolError(f"malformed message (fields {sorted(wire)}, expected {names}): {wire!r:.200}")
    try:
        if kind is Events:
            return Events(wire["cell_id"], [_event_from_wire(event) for event in wire["events"]])
        if kind is Start:
            values = {name: wire[name] for name in names}
            values["clock"] = [(float(ms), int(times)) for ms, times in values["clock"]]
            return Start(**values)
        if kind is ResolveTogether:
            results = [(int(r[0]), bool(r[1]), str(r[2])) for r in wire["results"]]
            return ResolveTogether(wire["cell_id"], results)
        message: Message = kind(*[wire[name] for name in names])
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise ProtocolError(f"malformed message ({exc!r}): {wire!r:.200}") from exc
    return message


def read_ready(data: object) -> Ready:
    """The worker's first message, refused unless it is a `Ready` of this `PROTOCOL_VERSION`
    (the version is checked before any other field, whatever the layout)."""
    wire = cast(dict[str, Any], data) if isinstance(data, dict) else {}
    if wire.get("k") != "ready":
        raise ProtocolError(f"the engine worker's first message is not READY: {data!r:.200}")
    if wire.get("protocol") != PROTOCOL_VERSION:
        raise VersionMismatch(wire.get("protocol"))
    message = from_wire(wire)
    assert isinstance(message, Ready)
    return message


# -- what Setup and Events carry --------------------------------------------------------------
def encode_tools(tools: Sequence[ToolBinding]) -> str:
    """A session's tool table as `Setup` carries it (built once per session)."""
    return json.dumps([{"name": t.global_name, "description": t.description} for t in tools])


def decode_tools(text: str) -> list[ToolBinding]:
    return [ToolBinding(t["name"], t["description"]) for t in json.loads(text)]


_ENTRY_TO_WIRE: Final[dict[type[Any], Callable[[Any], list[Any]]]] = {
    ResolvedCalls: lambda entry: ["b", list(entry.call_ids)],
    TimerFired: lambda entry: ["t", entry.timer_id],
    ClockRead: lambda entry: ["d", entry.ms, entry.times],
}
_ENTRY_FROM_WIRE: Final[dict[str, Callable[[list[Any]], JournalEntry]]] = {
    "b": lambda data: ResolvedCalls(tuple(data[1])),
    "t": lambda data: TimerFired(data[1]),
    "d": lambda data: ClockRead(data[1], data[2]),
}
_YIELD = YieldEvent()
_MEMORY = MemoryLimitEvent()

# Dispatch tables rather than `match`: a burst of `text()` crosses the wire as one map per event.
_ITEM_TO_WIRE: Final[dict[type[Any], Callable[[Any], dict[str, Any]]]] = {
    TextItem: lambda item: {"k": "text", "text": item.text},
    ImageItem: lambda item: {"k": "image", "image_url": item.image_url, "detail": item.detail},
    AudioItem: lambda item: {"k": "audio", "audio_url": item.audio_url},
}
_EVENT_TO_WIRE: Final[dict[type[Any], Callable[[Any], dict[str, Any]]]] = {
    OutputEvent: lambda event: _ITEM_TO_WIRE[type(event.item)](event.item),
    OutputDroppedEvent: lambda event: {"k": "dropped", "items": event.items, "chars": event.chars},
    NotifyEvent: lambda event: {"k": "notify", "text": event.text},
    ToolCallEvent: lambda event: {
        "k": "call",
        "call_id": event.call_id,
        "tool_name": event.tool_name,
        "arguments_json": event.arguments_json,
    },
    YieldEvent: lambda event: {"k": "yield"},
    FinishedEvent: lambda event: {"k": "finished", "error": event.error, "stored_writes": dict(event.stored_writes)},
    MemoryLimitEvent: lambda event: {"k": "memory"},
    JournalEvent: lambda event: {"k": "journal", "entries": [_ENTRY_TO_WIRE[type(e)](e) for e in event.entries]},
}  # EngineDiedEvent has no wire form: the host makes it when a worker dies
_EVENT_FROM_WIRE: Final[dict[str, Callable[[Mapping[str, Any]], EngineEvent]]] = {
    "text": lambda data: OutputEvent(TextItem(data["text"])),
    "image": lambda data: OutputEvent(ImageItem(data["image_url"], data["detail"])),
    "audio": lambda data: OutputEvent(AudioItem(data["audio_url"])),
    "dropped": lambda data: OutputDroppedEvent(data["items"], data["chars"]),
    "notify": lambda data: NotifyEvent(data["text"]),
    "call": lambda data: ToolCallEvent(data["call_id"], data["tool_name"], data["arguments_json"]),
    "yield": lambda data: _YIELD,
    "finished": lambda data: FinishedEvent(data["error"], data["stored_writes"]),
    "memory": lambda data: _MEMORY,
    "journal": lambda data: JournalEvent(tuple(_ENTRY_FROM_WIRE[e[0]](e) for e in data["entries"])),
}


def _event_to_wire(event: EngineEvent) -> dict[str, Any]:
    return _EVENT_TO_WIRE[type(event)](event)


def _event_from_wire(data: Mapping[str, Any]) -> EngineEvent:
    return _EVENT_FROM_WIRE[data["k"]](data)
