"""The host <-> worker wire on its own: frames round-trip, and what is not a message is refused."""

from __future__ import annotations

import msgpack
import pytest

from codemode._engine.base import FinishedEvent, NotifyEvent, OutputEvent, ToolCallEvent
from codemode._engine.process import _protocol as wire
from codemode._protocol.types import TextItem

MESSAGES: list[wire.Message] = [
    wire.Setup(1, "[]", 64 * wire.MIB),
    wire.Forget(1),
    wire.Start(2, 1, "text('a\ud800b')", "", "{}", 1000, "too big"),
    wire.Resolve(2, 3, True, '{"ok": 1}'),
    wire.Terminate(2),
    wire.Release(2),
    wire.Ready(wire.PROTOCOL_VERSION, 1234),
    wire.Started([2, 3]),
    wire.Events(
        2,
        [
            OutputEvent(TextItem("lone \udc00 surrogate")),
            NotifyEvent("n"),
            ToolCallEvent(3, "t", "{}"),
            FinishedEvent(None, {"k": "1"}),
        ],
    ),
    wire.Terminated(2),
    wire.Stuck(1.5),
    wire.Strip(4, "const a: number = 1;"),
    wire.Stripped(4, "const a         = 1;", None),
    wire.Stripped(5, None, "The TypeScript in this script could not be removed: RangeError"),
]


def test_every_message_round_trips_through_one_reader() -> None:
    packer = wire.packer()
    frames = b"".join(wire.pack(message, using=packer) for message in MESSAGES)
    reader = wire.unpacker()
    read: list[wire.Message] = []
    for start in range(0, len(frames), 7):  # fed in pieces, as a pipe delivers them
        reader.feed(frames[start : start + 7])
        read.extend(wire.from_wire(data) for data in reader)
    assert read == MESSAGES


@pytest.mark.parametrize(
    "data",
    [
        ["setup", 1, "[]", 1],
        {"setup_id": 1},
        {"k": "nonsense"},
        {"k": ["forget"], "setup_id": 1},  # an unhashable tag
        {"k": "forget"},
        {"k": "forget", "setup_id": 1, "extra": 2},
        {"k": "events", "cell_id": 1, "event": []},
    ],
)
def test_what_is_not_a_message_is_a_protocol_error(data: object) -> None:
    with pytest.raises(wire.ProtocolError):
        wire.from_wire(data)


@pytest.mark.parametrize("data", [None, [1], {"k": "started", "cell_ids": []}, {"protocol": wire.PROTOCOL_VERSION}])
def test_a_first_message_that_is_not_ready_is_refused(data: object) -> None:
    with pytest.raises(wire.ProtocolError) as refused:
        wire.read_ready(data)
    assert not isinstance(refused.value, wire.VersionMismatch)


@pytest.mark.parametrize("theirs", [None, wire.PROTOCOL_VERSION + 1, "2"])
def test_a_ready_of_another_version_is_refused_before_its_fields_are_read(theirs: object) -> None:
    data = {"k": "ready", "layout": "whatever it became"} | ({} if theirs is None else {"protocol": theirs})
    with pytest.raises(wire.VersionMismatch) as refused:
        wire.read_ready(data)
    assert refused.value.theirs == theirs


def test_ready_of_this_version_is_read() -> None:
    assert wire.read_ready(wire.to_wire(wire.Ready(wire.PROTOCOL_VERSION, 7))) == wire.Ready(wire.PROTOCOL_VERSION, 7)


def test_frames_over_the_cap_are_refused_on_both_sides() -> None:
    message = wire.Resolve(1, 1, True, "x" * 5000)
    with pytest.raises(wire.FrameTooLarge) as too_large:
        wire.pack(message, limit=4096)
    assert too_large.value.limit == 4096 and too_large.value.size > 5000
    reader = wire.unpacker(limit=4096)
    reader.feed(bytes(4096 + wire.READ_CHUNK_BYTES))  # the cap and one read more: taken
    with pytest.raises(msgpack.BufferFull):
        reader.feed(b"\x00")
