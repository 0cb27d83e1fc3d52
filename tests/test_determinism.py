"""Durable cells, engine side (issue 22): a cell given a `Determinism` journals every
non-deterministic input its isolate applied, and a fresh isolate fed that journal replays it.

Runs on the suite's engine (`ISOLATION`: both passes), through the engine interface; the wire and
the fake engine are checked without V8.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from tests.hardening.test_forgery import PRIMORDIALS

from codemode import engines
from codemode._engine.base import (
    CellProgram,
    ClockRead,
    Determinism,
    EngineCell,
    EngineDiedEvent,
    EngineEvent,
    EngineSession,
    FinishedEvent,
    JournalEntry,
    JournalEvent,
    OutputEvent,
    ResolvedCalls,
    SessionSetup,
    TimerFired,
    ToolBinding,
    ToolCallEvent,
)
from codemode._engine.miniracer._cell import _message_problem
from codemode._engine.miniracer._isolate import CHANNEL_ERROR
from codemode._engine.process import _protocol as wire
from codemode._protocol.types import TextItem
from codemode.testing import FakeEngine
from conftest import ISOLATION
from waiting import wait_until

SEED = 42
# Math.random's first values for SEED: pinned, since a journal keeps only the seed, so a changed
# generator would make every journal written before it replay differently.
FIRST_RANDOMS = ("0.15377165265745885", "0.018084542542176507")


class Cell:
    """One cell on the real engine and the events it produced, in order (stopped by the
    `session` fixture at the end of the test)."""

    def __init__(
        self, session: EngineSession, code: str, determinism: Determinism | None, *, alone: bool = False
    ) -> None:
        self.events: list[EngineEvent] = []
        program = CellProgram(code, "", determinism=determinism)
        self.engine_cell: EngineCell = session.start(program, self.events.append, alone=alone)
        _started.append(self)

    async def stop(self) -> None:
        if self.finished:
            self.engine_cell.release()
        else:
            await self.engine_cell.terminate()

    def texts(self) -> list[str]:
        return [e.item.text for e in self.events if isinstance(e, OutputEvent) and isinstance(e.item, TextItem)]

    def calls(self) -> list[ToolCallEvent]:
        return [e for e in self.events if isinstance(e, ToolCallEvent)]

    def journal(self) -> list[JournalEntry]:
        return [entry for e in self.events if isinstance(e, JournalEvent) for entry in e.entries]

    def script_events(self) -> list[EngineEvent]:
        """What the script did, journal left out."""
        return [e for e in self.events if not isinstance(e, JournalEvent)]

    @property
    def finished(self) -> bool:
        return any(isinstance(e, (FinishedEvent, EngineDiedEvent)) for e in self.events)

    async def until_text(self, prefix: str) -> None:
        await wait_until(lambda: any(t.startswith(prefix) for t in self.texts()), f"the script printed {prefix!r}")

    async def until_calls(self, count: int) -> None:
        await wait_until(lambda: len(self.calls()) >= count or self.finished, f"the script made {count} tool calls")
        assert len(self.calls()) >= count, self.events

    async def until_finished(self) -> FinishedEvent:
        await wait_until(lambda: self.finished, "the script finished")
        last = self.events[-1]
        assert isinstance(last, FinishedEvent), self.events
        return last


_started: list[Cell] = []


@pytest.fixture
async def session() -> AsyncIterator[EngineSession]:
    engine = engines.shared(ISOLATION)
    opened = await engine.open_session(SessionSetup((ToolBinding("echo", "Returns its input."),), 0))
    yield opened
    cells = list(_started)
    _started.clear()
    for cell in cells:
        await cell.stop()
    await opened.aclose()


def echo(call: ToolCallEvent) -> tuple[int, bool, str]:
    """What the test's `echo` tool answers: the call's argument back, as JSON text."""
    return (call.call_id, True, json.dumps({"echo": json.loads(call.arguments_json or "null")}))


# -- recording ------------------------------------------------------------------------------------
async def test_every_input_is_journaled_before_what_depends_on_it(session: EngineSession) -> None:
    before = time.time() * 1000
    cell = Cell(
        session,
        """
        const t0 = Date.now();
        const d0 = new Date();
        text(Math.random());
        await new Promise((resolve) => setTimeout(resolve, 1));
        text("first " + JSON.stringify(await tools.echo({ n: 1 })));
        text("second " + JSON.stringify(await tools.echo({ n: 2 })) + " " + (t0 <= d0.getTime()));
        """,
        Determinism(SEED),
    )
    await cell.until_calls(1)
    cell.engine_cell.resolve_tool_call(*echo(cell.calls()[0]))
    await cell.until_calls(2)
    cell.engine_cell.resolve_tool_call(*echo(cell.calls()[1]))
    finished = await cell.until_finished()
    after = time.time() * 1000

    assert finished.error is None
    kinds = [type(e).__name__ for e in cell.events]
    assert kinds == [
        "JournalEvent",  # the two clock readings, before the first output
        "OutputEvent",
        "JournalEvent",  # the timer, before the call its callback let the script make
        "ToolCallEvent",
        "JournalEvent",  # the first call's step
        "OutputEvent",
        "ToolCallEvent",
        "JournalEvent",
        "OutputEvent",
        "FinishedEvent",
    ]
    journal = cell.journal()
    steps = journal[-3:]
    assert steps == [TimerFired(1), ResolvedCalls((1,)), ResolvedCalls((2,))]
    clock = [e.ms for e in journal[:-3] for _ in range(e.times) if isinstance(e, ClockRead)]
    assert len(clock) == 2 and all(before - 1 <= ms <= after + 1 for ms in clock), journal
    assert cell.texts() == [FIRST_RANDOMS[0], 'first {"echo":{"n":1}}', 'second {"echo":{"n":2}} true']


async def test_calls_settled_in_one_loop_iteration_are_one_step(session: EngineSession) -> None:
    cell = Cell(
        session,
        """
        const results = await Promise.all([tools.echo(1), tools.echo(2), tools.echo(3)]);
        text(JSON.stringify(results));
        """,
        Determinism(SEED),
    )
    await cell.until_calls(3)
    calls = cell.calls()
    for call in (calls[2], calls[0], calls[1]):  # out of order, in one loop iteration
        cell.engine_cell.resolve_tool_call(*echo(call))
    await cell.until_finished()
    journal = cell.journal()
    assert [call_id for e in journal if isinstance(e, ResolvedCalls) for call_id in e.call_ids] == [3, 1, 2]
    if ISOLATION == "in-process":  # (a worker may read the three results off its pipe apart)
        assert journal == [ResolvedCalls((3, 1, 2))]
    assert cell.texts() == ['[{"echo":1},{"echo":2},{"echo":3}]']


async def test_the_seed_decides_math_random(session: EngineSession) -> None:
    code = "const v = []; for (let i = 0; i < 2000; i++) v.push(Math.random()); text(JSON.stringify(v));"
    runs: list[list[float]] = []
    for seed in (SEED, SEED, 2**53 - 1):
        cell = Cell(session, code, Determinism(seed))
        assert (await cell.until_finished()).error is None
        runs.append(json.loads(cell.texts()[0]))
        assert cell.journal() == []  # the seed is the host's to keep: nothing per call
    assert runs[0] == runs[1] != runs[2]
    assert [repr(v) for v in runs[0][:2]] == list(FIRST_RANDOMS)
    for values in runs:
        assert all(0 <= v < 1 for v in values) and len(set(values)) == len(values)
        assert 0.45 < sum(values) / len(values) < 0.55


async def test_date_and_math_random_keep_their_shape(session: EngineSession) -> None:
    code = """
    class Later extends Date {}
    const dtf = new Intl.DateTimeFormat("en-US", { timeZone: "UTC" });
    const facts = {
      zero: new Date(0).toISOString(),
      utc: Date.UTC(2000, 0, 1),
      parse: Date.parse("2000-01-01T00:00:00Z"),
      parts: new Date(2020, 1, 3, 4, 5, 6, 7).getMonth(),
      copy: new Date(new Date(5)).getTime(),
      string: new Date("2001-02-03T04:05:06Z").getTime(),
      instance: new Date() instanceof Date,
      subclass: new Later(5).getTime() === 5 && new Later() instanceof Later && new Later() instanceof Date,
      constructor: Date.prototype.constructor === Date && new Date().constructor === Date,
      called: typeof Date() === "string" && typeof Date(0) === "string",
      now: typeof Date.now() === "number",
      shape: [Date.name, Date.length, Date.now.name, Date.now.length, Object.getOwnPropertyNames(Date).join()],
      prototype: Object.getOwnPropertyDescriptor(Date, "prototype").writable,
      random: [Math.random.name, Math.random.length, "prototype" in Math.random],
      global: Object.getOwnPropertyDescriptor(globalThis, "Date").enumerable,
      temporal: Object.getOwnPropertyNames(Temporal.Now).map((n) => [n, Temporal.Now[n].length, Temporal.Now[n].name]),
      zoned: Temporal.Now.zonedDateTimeISO("UTC") instanceof Temporal.ZonedDateTime,
      format: [dtf.format === dtf.format, dtf.format.length, dtf.format.name, dtf.format(0), dtf.formatToParts.length],
      formatted: typeof dtf.format() === "string" && Array.isArray(dtf.formatToParts()),
      foreign: (() => { try { Intl.DateTimeFormat.prototype.format; return "no error"; } catch (e) { return e.name; } })(),
    };
    text(JSON.stringify(facts));
    """
    original: dict[str, Any] | None = None
    for determinism in (None, Determinism(SEED)):
        cell = Cell(session, code, determinism)
        assert (await cell.until_finished()).error is None
        facts = json.loads(cell.texts()[0])
        if original is None:
            original = facts
        assert facts == original
    assert original is not None and original["zero"] == "1970-01-01T00:00:00.000Z"
    assert original["shape"] == ["Date", 7, "now", 0, "length,name,prototype,now,parse,UTC"]


async def test_temporal_and_intl_read_the_same_clock(session: EngineSession) -> None:
    code = """
    text(Temporal.Now.instant().epochMilliseconds);
    text(Temporal.Now.plainDateISO("UTC").toString());
    text(Temporal.Now.zonedDateTimeISO("UTC").toString());
    const dtf = new Intl.DateTimeFormat("en-US", { timeZone: "UTC", dateStyle: "short" });
    text(dtf.format());
    text(dtf.formatToParts().map((p) => p.value).join(""));
    """
    day = 86_400_000.0
    cell = Cell(session, code, Determinism(SEED, (day, day + 1, day + 2, day + 3, day + 4)))
    assert (await cell.until_finished()).error is None
    assert cell.texts() == ["86400000", "1970-01-02", "1970-01-02T00:00:00.002+00:00[UTC]", "1/2/70", "1/2/70"]
    assert cell.journal() == []


async def test_without_determinism_nothing_is_recorded(session: EngineSession) -> None:
    before = time.time() * 1000
    cell = Cell(
        session,
        """
        const r = [Math.random(), Math.random()];
        text(r[0] !== r[1] && r.every((x) => x >= 0 && x < 1));
        await new Promise((resolve) => setTimeout(resolve, 1));
        text(Date.now());
        text(await tools.echo(1));
        """,
        None,
    )
    await cell.until_calls(1)
    cell.engine_cell.resolve_tool_call(1, True, '"done"')
    await cell.until_finished()
    after = time.time() * 1000
    assert not any(isinstance(e, JournalEvent) for e in cell.events)
    assert cell.texts()[0] == "true" and cell.texts()[2] == "done"
    assert before - 1 <= float(cell.texts()[1]) <= after + 1  # the real clock


# -- replay ---------------------------------------------------------------------------------------
REPLAYED = """
text("start " + Date.now() + " " + Math.random());
const p1 = tools.echo(1);
const p2 = tools.echo(2);
const p3 = tools.echo(3);
const tick = new Promise((resolve) => setTimeout(() => { text("tick " + new Date().toISOString()); resolve(); }, 1));
text("third " + JSON.stringify(await p3) + " " + Math.random());
await tick;
const both = await Promise.all([p1, p2]);
text("both " + JSON.stringify(both) + " " + Date() + " " + Math.random());
const late = new Promise((resolve) => setTimeout(() => { text("late " + Math.random()); resolve(); }, 20));
text("fourth " + JSON.stringify(await tools.echo(4)));
await late;
text("end");
"""


def replay_commands(cell: EngineCell, journal: Sequence[JournalEntry], results: dict[int, tuple[int, bool, str]]) -> None:
    """Send the journal's steps back, in order (all at once: they reach the isolate in order)."""
    for entry in journal:
        if isinstance(entry, ResolvedCalls):
            cell.resolve_together([results[call_id] for call_id in entry.call_ids])
        elif isinstance(entry, TimerFired):
            cell.fire_timer(entry.timer_id)


async def recorded_run(session: EngineSession) -> tuple[Cell, dict[int, tuple[int, bool, str]]]:
    """REPLAYED run live: call 3 alone, the timer, calls 1 and 2 in one step, the late timer,
    then call 4."""
    live = Cell(session, REPLAYED, Determinism(SEED))
    await live.until_calls(3)
    results = {call.call_id: echo(call) for call in live.calls()}
    live.engine_cell.resolve_tool_call(*results[3])
    await live.until_text("tick")
    live.engine_cell.resolve_together([results[1], results[2]])
    await live.until_text("late")
    (call4,) = live.calls()[3:]
    results[4] = echo(call4)
    live.engine_cell.resolve_tool_call(*results[4])
    assert (await live.until_finished()).error is None
    steps = [e for e in live.journal() if not isinstance(e, ClockRead)]
    later = [ResolvedCalls((1, 2)), TimerFired(2), ResolvedCalls((4,))]
    # (the tick may fire before call 3 settles)
    assert steps in ([ResolvedCalls((3,)), TimerFired(1), *later], [TimerFired(1), ResolvedCalls((3,)), *later])
    return live, results


async def test_a_replay_with_the_journal_reproduces_the_cell(session: EngineSession) -> None:
    live, results = await recorded_run(session)
    journal = live.journal()
    clock = tuple(e for e in journal if isinstance(e, ClockRead))
    assert sum(e.times for e in clock) == 3

    replay = Cell(session, REPLAYED, Determinism(SEED, clock, replaying=True))
    replay_commands(replay.engine_cell, journal, results)  # before the script even started
    assert (await replay.until_finished()).error is None
    assert replay.script_events() == live.script_events()
    assert replay.journal() == []  # replayed steps and handed-back readings are not recorded again


async def test_replay_commands_made_before_the_cell_has_a_worker_wait_for_it(session: EngineSession) -> None:
    """`alone=True` (a worker of its own, started for it, in the process engine): every command
    made meanwhile reaches the script after the program, in order."""
    live, results = await recorded_run(session)
    journal = live.journal()
    clock = tuple(e for e in journal if isinstance(e, ClockRead))
    replay = Cell(session, REPLAYED, Determinism(SEED, clock, replaying=True), alone=True)
    replay_commands(replay.engine_cell, journal, results)
    replay.engine_cell.go_live()
    assert (await replay.until_finished()).error is None
    assert replay.script_events() == live.script_events()
    assert replay.journal() == []


async def test_after_go_live_the_cell_runs_on_and_records_again(session: EngineSession) -> None:
    live, results = await recorded_run(session)
    journal = live.journal()
    cut = journal.index(TimerFired(2))  # the crash: the late timer had not fired yet
    clock = tuple(e for e in journal if isinstance(e, ClockRead))

    replay = Cell(session, REPLAYED, Determinism(SEED, clock, replaying=True))
    replay_commands(replay.engine_cell, journal[:cut], results)
    await replay.until_calls(4)
    assert replay.journal() == []
    replay.engine_cell.go_live()
    await replay.until_text("late")  # the pending timer, armed by go_live, fired on its own
    replay.engine_cell.resolve_tool_call(*results[4])
    assert (await replay.until_finished()).error is None
    assert replay.script_events() == live.script_events()
    assert replay.journal() == [TimerFired(2), ResolvedCalls((4,))]


async def test_replay_timers_wait_for_the_host(session: EngineSession) -> None:
    code = """
    const order = [];
    setTimeout(() => order.push("a"), 1);
    const b = setTimeout(() => order.push("b"), 1);
    setTimeout(() => order.push("c"), 1);
    clearTimeout(b);
    await tools.echo("gate");
    text(order.join());
    """
    cell = Cell(session, code, Determinism(SEED, (), replaying=True))
    await cell.until_calls(1)
    cell.engine_cell.fire_timer(3)
    cell.engine_cell.fire_timer(2)  # cleared: nothing
    cell.engine_cell.fire_timer(99)  # unknown: nothing
    cell.engine_cell.resolve_together([(1, True, '"open"')])
    await cell.until_finished()
    assert cell.texts() == ["c"]  # "a" never fired: replay arms no timer
    assert cell.journal() == []


async def test_clock_readings_past_the_recorded_ones_are_real_and_recorded(session: EngineSession) -> None:
    before = time.time() * 1000
    cell = Cell(session, "text(Date.now()); text(new Date().getTime()); text(Date.now());", Determinism(SEED, (5.0,)))
    await cell.until_finished()
    after = time.time() * 1000
    first, second, third = (float(t) for t in cell.texts())
    assert first == 5.0 and before - 1 <= second <= third <= after + 1
    assert cell.journal() == [ClockRead(second), ClockRead(third)]


# -- forgery --------------------------------------------------------------------------------------
FORGERY_SETUP = """
const FORGED = ["b", [7]];
const hostile = function () { return FORGED; };
const now = Date.now, RealDate = Date, random = Math.random;
const one = tools.echo("one"), two = tools.echo("two");
let fired;
const timer = new Promise((resolve) => { fired = resolve; });
"""
FORGERY_WORKLOAD = """
text(now());
text(new RealDate().getTime());
text(random());
setTimeout(() => { text(now()); fired(); }, 1);
await timer;
await one;
text("one");
await two;
text("two");
"""
FORGERY_CASES = {
    "nothing replaced": "",
    **{name: f"{name} = hostile;" for name in PRIMORDIALS},
    "Array.prototype.push": "Array.prototype.push = function () { return 0 };",
    "Array.prototype index setters": "for (const i of [0, 1, 2]) Object.defineProperty(Array.prototype, i,"
    " { get: hostile, set() {}, configurable: true });",
    "Object.prototype accessors": "for (const key of ['k', 'v', 'length']) Object.defineProperty(Object.prototype, key,"
    " { get: hostile, set() {}, configurable: true });",
    "toJSON": "Object.prototype.toJSON = Array.prototype.toJSON = Number.prototype.toJSON = hostile;",
    "Date and Math.random": "Date = hostile; Math.random = hostile; RealDate.now = hostile;",
    "Function.prototype": "Function.prototype.call = Function.prototype.apply = Function.prototype.bind = hostile;",
}


@pytest.mark.parametrize("name", list(FORGERY_CASES))
async def test_a_replaced_builtin_neither_forges_nor_hides_journal_entries(session: EngineSession, name: str) -> None:
    cell = Cell(session, FORGERY_SETUP + FORGERY_CASES[name] + FORGERY_WORKLOAD, Determinism(SEED))
    await cell.until_calls(2)
    await wait_until(lambda: len(cell.texts()) >= 4, "the timer's callback printed")
    cell.engine_cell.resolve_tool_call(1, True, '"a"')
    await cell.until_text("one")
    cell.engine_cell.resolve_tool_call(2, True, '"b"')
    assert (await cell.until_finished()).error is None
    texts = cell.texts()
    assert texts[2:3] == [FIRST_RANDOMS[0]] and texts[4:] == ["one", "two"]
    clock = [ClockRead(float(texts[i])) for i in (0, 1, 3)]
    assert cell.journal() == [clock[0], clock[1], TimerFired(1), clock[2], ResolvedCalls((1,)), ResolvedCalls((2,))]


@pytest.mark.parametrize(
    "entries",
    [
        [],
        "b",
        [["b", []]],
        [["b", [0]]],
        [["b", [True]]],
        [["b", [2**60]]],
        [["b", 1]],
        [["t", 1.5]],
        [["t", "1"]],
        [["d", None, 1]],
        [["d", "1", 1]],
        [["d", True, 1]],
        [["d", 1]],
        [["d", 1, 0]],
        [["d", 1, 1.5]],
        [["d", 1, 2**60]],
        [["x", 1]],
        [["b", [1], 2]],
        [["b"]],
        [[]],
        [{"b": [1]}],
    ],
)
def test_malformed_journal_messages_are_refused(entries: object) -> None:
    assert _message_problem({"k": "journal", "v": entries}) == CHANNEL_ERROR


def test_well_formed_journal_messages_are_accepted() -> None:
    assert _message_problem({"k": "journal", "v": [["b", [1, 2]], ["t", 3], ["d", 1.5, 1], ["d", 17, 3]]}) is None
    assert _message_problem({"k": "journal", "v": [["b", [1]]], "extra": 1}) == CHANNEL_ERROR


async def test_a_busy_loop_on_the_clock_stays_small_inside_the_isolate(session: EngineSession) -> None:
    """Repeated readings travel as one run each: a loop reading the clock for a while (here
    100 ms, at hundreds of thousands of readings) neither fills the isolate's heap nor the ring."""
    cell = Cell(
        session,
        "let n = 0; const end = Date.now() + 100; while (Date.now() < end) n++; text(n + 2);",
        Determinism(SEED),
    )
    assert (await cell.until_finished()).error is None
    readings = [r for r in cell.journal() if isinstance(r, ClockRead)]
    assert len(readings) == len(cell.journal()) < 1000  # one entry per distinct value (about 100)
    assert sum(r.times for r in readings) == int(cell.texts()[0])
    assert sorted(readings, key=lambda r: r.ms) == readings and len({r.ms for r in readings}) == len(readings)

    # Replayed, each value is handed out as often as it was read, and then the clock is real.
    before = time.time() * 1000
    code = "const v = []; for (let i = 0; i < 7; i++) v.push(Date.now()); text(JSON.stringify(v));"
    replay = Cell(session, code, Determinism(SEED, (ClockRead(1.0, 3), 2.0, ClockRead(3.0, 2))))
    await replay.until_finished()
    values = json.loads(replay.texts()[0])
    assert values[:6] == [1, 1, 1, 2, 3, 3] and values[6] >= before - 1  # (Date.now() truncates)
    assert replay.journal() == [ClockRead(values[6])]


# -- the wire and the fake engine -------------------------------------------------------------------
def test_replay_messages_round_trip_the_wire() -> None:
    messages: list[wire.Message] = [
        wire.Start(2, 1, "text(1)", "", "{}", 1000, "too big", 42, [(1.5, 1), (2.0, 3)], True),
        wire.Start(3, 1, "text(1)", "", "{}", 1000, "too big"),
        wire.ResolveTogether(2, [(3, True, '{"ok": 1}'), (4, False, "bad \ud800")]),
        wire.FireTimer(2, 5),
        wire.GoLive(2),
        wire.Events(2, [JournalEvent((ResolvedCalls((1, 2)), TimerFired(3), ClockRead(1.5e12)))]),
        wire.Events(2, [JournalEvent((ClockRead(1.0, 3), TimerFired(1), ClockRead(2.0)))]),
    ]
    reader = wire.unpacker()
    reader.feed(b"".join(wire.pack(message) for message in messages))
    assert [wire.from_wire(data) for data in reader] == messages
    start = messages[0]
    assert isinstance(start, wire.Start) and start.determinism() == Determinism(42, (ClockRead(1.5), ClockRead(2.0, 3)), True)
    assert isinstance(messages[1], wire.Start) and messages[1].determinism() is None


@pytest.mark.parametrize(
    "data",
    [
        {"k": "start", "cell_id": 1, "setup_id": 1, "code": "", "hoisted": "", "stored_json": "{}",
         "store_budget_bytes": 1, "store_limit_error": "", "random_seed": 1, "clock": [[1.0]], "replaying": True},
        {"k": "resolve_together", "cell_id": 1, "results": [[1, True]]},
        {"k": "events", "cell_id": 1, "events": [{"k": "journal", "entries": [["x", 1]]}]},
    ],
)
def test_malformed_replay_messages_are_protocol_errors(data: object) -> None:
    with pytest.raises(wire.ProtocolError):
        wire.from_wire(data)


def test_a_seed_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError):
        Determinism(2**53)
    with pytest.raises(ValueError):
        Determinism(-1)


async def test_the_fake_engine_records_replay_commands() -> None:
    engine = FakeEngine()
    session = await engine.open_session(SessionSetup((), 0))
    events: list[EngineEvent] = []
    cell = session.start(CellProgram("x", "", determinism=Determinism(1)), events.append, alone=True)
    call = cell.call_tool("echo")
    cell.journal(TimerFired(1))
    cell.resolve_together([(call, True, "1")])
    cell.fire_timer(2)
    cell.go_live()
    assert cell.alone and cell.went_live and cell.fired_timers == [2]
    assert cell.resolved_together == [((call, True, "1"),)] and await cell.resolution(call) == (True, "1")
    assert cell.commands == ["resolve_together 1", "fire_timer 2", "go_live"]
    assert events[-1] == JournalEvent((TimerFired(1),))
