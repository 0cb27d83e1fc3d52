"""A durable cell: the layer between a `Cell` and its engine cell that journals what the isolate
depends on and, when the engine cell is lost, replays the program in a fresh isolate (issue 22).

It is the `ScriptControl` the `Cell` drives and the event sink the engine feeds. While live it
records calls, their outcomes and the isolate's steps in the `CellJournal`. A replay starts a
fresh engine cell with the journal's seed and clock (`Determinism(replaying=True)`) and hands the
isolate the recorded steps in order: each batch of results once the script has made (and the
journal matched) every call in it, each timer fire after the step before it. Then `go_live()`,
and the calls that ended outside the record are settled. The `Cell` above sees none of it:
output it already has is skipped, calls it ran are not run again.

Replays happen on two occasions:
* The engine worker died under the cell (`EngineDiedEvent`): replayed from memory on a worker of
  its own (`alone`), so a cell that killed its worker kills no one else's the second time; a
  cell whose worker dies twice fails with the real reason. Calls still running here are awaited.
* A new host resumes the cell from the store: calls that were running when the old host stopped
  are run again when their tool says `retry_on_restart`, else they reject (`RESTARTED_DURING_CALL`).

A script that makes another call than the journal holds fails ("replay diverged at call N"),
never with silently different output.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import replace

from codemode._engine.base import (
    MAX_RANDOM_SEED,
    CellProgram,
    ClockRead,
    Determinism,
    EngineCell,
    EngineDiedEvent,
    EngineEvent,
    EventSink,
    FinishedEvent,
    JournalEvent,
    NotifyEvent,
    OutputDroppedEvent,
    OutputEvent,
    ResolvedCalls,
    TimerFired,
    ToolCallEvent,
    YieldEvent,
)
from codemode._protocol.types import TextItem
from codemode._session.journal import CellJournal, argument_hash

__all__ = ["DurableCell", "StartEngineCell", "new_random_seed"]

StartEngineCell = Callable[[CellProgram, EventSink, bool], EngineCell]
"""Starts a program in a fresh isolate: (program, event sink, alone) -> the engine cell."""

RESTARTED_DURING_CALL = (
    "the host running this script restarted while tools.{tool} was running, so it may or may not "
    "have run; check its effect before calling it again"
)
DIVERGED = (
    "replay diverged at call {call_id} (tools.{tool}): this script made another call than it did "
    "before its engine stopped ({why}), so it cannot be resumed; run it again"
)
DIVERGED_AT_END = (
    "replay diverged: the script ended before {what}, as it did before its engine stopped, so it "
    "cannot be resumed; run it again"
)
NOT_DURABLE = (
    "[exec cell {cell_id}: its journal passed {size}, so it can no longer be made durable: it "
    "runs on, but if its engine worker or host stops it is lost]"
)


MAX_REPLAYS_AFTER_STOPS = 3


def new_random_seed() -> int:
    return random.randrange(1, MAX_RANDOM_SEED)


class DurableCell:
    """See the module docstring. `forward` is the `Cell`'s event sink; `say_when_not_durable`:
    a cell past its journal cap says so in its output. `outputs_forwarded` and
    `notifications_forwarded` count from the cell's start, replays included."""

    def __init__(
        self,
        cell_id: str,
        journal: CellJournal,
        start_engine: StartEngineCell,
        forward: EventSink,
        retry_on_restart: Callable[[str], bool],
        *,
        say_when_not_durable: bool,
        on_result: Callable[[], None] = lambda: None,
    ) -> None:
        self._cell_id = cell_id
        self.journal = journal
        self._start_engine = start_engine
        self._forward = forward
        self._retry_on_restart = retry_on_restart
        self._on_result = on_result  # a call's result was handed to the script
        self._engine: EngineCell | None = None
        self._generation = 0
        self._deaths = 0  # engine workers that died on their own under this cell
        self._stops = 0  # engine workers the host stopped under this cell (not its fault)
        self._ended = False  # finished, terminated or released: no more replays
        # With a store the caller asked for durable cells: a cell past its journal cap says so.
        # Without one the journal only guards against a dying worker, a thing the model cannot
        # act on, so the cell loses that quietly.
        self._told_not_durable = not say_when_not_durable
        self.outputs_forwarded = 0
        self.notifications_forwarded = 0
        # Replay state.
        self._replaying = False
        self._steps: list[ResolvedCalls | TimerFired] = []
        self._step = 0
        self._issued: set[int] = set()
        self._batched: set[int] = set()
        self._held: list[tuple[int, bool, str]] = []  # results to settle once live
        self._skip_outputs = 0
        self._skip_notifications = 0
        self._calls_running_here = True
        self._armed_before = 0  # calls another host armed: made again without a record, they may have run

    # -- starting -----------------------------------------------------------------------------
    def start_live(self) -> None:
        program = _with(self.journal.program, Determinism(self.journal.random_seed))
        self._engine = self._start_engine(program, self._sink(), False)

    def resume(self) -> None:
        """Replay a journal read back from a store (this host never ran the cell)."""
        self._calls_running_here = False
        self._armed_before = self.journal.armed
        self.outputs_forwarded = self.journal.delivered_outputs  # numbered from the cell's start
        self.notifications_forwarded = self.journal.delivered_notifications
        self._replay(self.journal.delivered_outputs, self.journal.delivered_notifications, alone=False)

    def _replay(self, skip_outputs: int, skip_notifications: int, *, alone: bool) -> None:
        journal = self.journal
        clock = tuple(step for step in journal.steps if isinstance(step, ClockRead))
        self._steps = [step for step in journal.steps if not isinstance(step, ClockRead)]
        self._step = 0
        self._issued = set()
        self._batched = {i for step in self._steps if isinstance(step, ResolvedCalls) for i in step.call_ids}
        self._held = []
        self._skip_outputs = skip_outputs
        self._skip_notifications = skip_notifications
        self._replaying = True
        program = _with(journal.program, Determinism(journal.random_seed, clock, replaying=True))
        self._engine = self._start_engine(program, self._sink(), alone)
        self._pump()

    def _sink(self) -> EventSink:
        self._generation += 1
        generation = self._generation

        def sink(event: EngineEvent) -> None:
            if generation == self._generation:
                self._on_event(event)

        return sink

    # -- ScriptControl, for the Cell ----------------------------------------------------------
    def resolve_tool_call(self, call_id: int, ok: bool, payload: str) -> None:
        self.journal.call_ended(call_id, ok, payload)
        if call_id in self._issued:
            self._settle(call_id, ok, payload)
            self._on_result()
        # else: made by an engine cell that is gone, and not yet again by its replay, which
        # finds the outcome in the journal when it does.

    async def terminate(self) -> None:
        self._ended = True
        if self._engine is not None:
            await self._engine.terminate()

    def release(self) -> None:
        self._ended = True
        if self._engine is not None:
            self._engine.release()

    # -- engine events ------------------------------------------------------------------------
    def _on_event(self, event: EngineEvent) -> None:
        if isinstance(event, JournalEvent):
            self.journal.applied(event.entries)
            self._say_if_not_durable()
            return
        if isinstance(event, ToolCallEvent):
            self._on_call(event)
            return
        if isinstance(event, OutputEvent | OutputDroppedEvent):
            if self._skip_outputs > 0:
                self._skip_outputs -= 1
                return
            self.outputs_forwarded += 1
        elif isinstance(event, NotifyEvent):
            if self._skip_notifications > 0:
                self._skip_notifications -= 1
                return
            self.notifications_forwarded += 1
        elif isinstance(event, YieldEvent):
            if self._skip_outputs > 0:
                return  # a yield the caller saw already
        elif isinstance(event, FinishedEvent):
            self._ended = True
            if self._replaying:
                pending = self._steps[self._step]
                if isinstance(pending, ResolvedCalls):
                    what = f"it made call {pending.call_ids[0]}"
                else:
                    what = f"its timer {pending.timer_id} fired"
                event = FinishedEvent(DIVERGED_AT_END.format(what=what))
        elif isinstance(event, EngineDiedEvent):
            if self._replay_after_death(event.suspect):
                return
            self._ended = True
        self._forward(event)

    def _on_call(self, event: ToolCallEvent) -> None:
        journal = self.journal
        call_id = event.call_id
        recorded = journal.calls.get(call_id)
        self._issued.add(call_id)
        if recorded is None:  # a call the script makes for the first time
            journal.call_started(call_id, event.tool_name, event.arguments_json)
            self._say_if_not_durable()
            if call_id <= self._armed_before:  # the old host armed it: it may have run there
                self._rerun_or_refuse(event)
                self._pump()
                return
            self._forward(event)
            return
        # A call the script made before its engine stopped: the same one, or the replay diverged.
        why = None
        if recorded.tool_name != event.tool_name:
            why = f"it called tools.{recorded.tool_name} then"
        elif recorded.argument_hash != argument_hash(event.tool_name, event.arguments_json):
            why = "with other arguments then"
        if why is not None:
            self._diverged(DIVERGED.format(call_id=call_id, tool=event.tool_name, why=why))
            return
        if recorded.outcome is not None:
            if call_id not in self._batched:  # it ended outside the record: settled as a live step
                self._settle(call_id, *recorded.outcome)
        elif not self._calls_running_here:
            self._rerun_or_refuse(event)  # the old host stopped during this call
        # else: the call still runs here; `resolve_tool_call` settles it when it ends.
        self._pump()

    def _rerun_or_refuse(self, event: ToolCallEvent) -> None:
        """A call that may have run on a host that stopped: run it again if its tool says
        `retry_on_restart`, else tell the script."""
        if self._retry_on_restart(event.tool_name):
            self._forward(event)
        else:
            error = RESTARTED_DURING_CALL.format(tool=event.tool_name)
            self.journal.call_ended(event.call_id, False, error)
            self._settle(event.call_id, False, error)

    def _settle(self, call_id: int, ok: bool, payload: str) -> None:
        if self._replaying:
            self._held.append((call_id, ok, payload))
        elif self._engine is not None:
            self._engine.resolve_tool_call(call_id, ok, payload)

    def _pump(self) -> None:
        """Hand the isolate every recorded step it is ready for; then go live."""
        engine = self._engine
        if engine is None or not self._replaying:
            return
        while self._step < len(self._steps):
            step = self._steps[self._step]
            if isinstance(step, TimerFired):
                engine.fire_timer(step.timer_id)
            else:
                if not all(call_id in self._issued for call_id in step.call_ids):
                    return  # the script has not made them yet
                results: list[tuple[int, bool, str]] = []
                for call_id in step.call_ids:
                    outcome = self.journal.calls[call_id].outcome
                    if outcome is None:  # a record the store lost: the script cannot go on the same way
                        self._diverged(f"replay failed: the journal has no result of call {call_id}")
                        return
                    results.append((call_id, *outcome))
                engine.resolve_together(results)
            self._step += 1
        self._replaying = False
        engine.go_live()
        held, self._held = self._held, []
        if held:
            engine.resolve_together(held)

    def _diverged(self, error: str) -> None:
        self._replaying = False
        self._ended = True
        self._forward(FinishedEvent(error))  # the Cell releases the engine cell

    def _replay_after_death(self, suspect: bool) -> bool:
        """After the engine worker died: replay from memory. A suspect (its worker died on its
        own) once, on a worker of its own; a cell whose worker the host stopped for another
        reason a few times, where cells normally run."""
        if self._ended or not self.journal.durable:
            return False
        if suspect:
            if self._deaths >= 1:
                return False
            self._deaths += 1
        else:
            if self._stops >= MAX_REPLAYS_AFTER_STOPS:
                return False
            self._stops += 1
        self._calls_running_here = True
        try:
            self._replay(self.outputs_forwarded, self.notifications_forwarded, alone=suspect)
        except Exception:  # the engine cannot start cells any more (it is closing): the death stands
            self._replaying = False
            return False
        return True

    def _say_if_not_durable(self) -> None:
        if not self.journal.durable and not self._told_not_durable:
            self._told_not_durable = True
            limit = self.journal.max_bytes
            size = f"{limit >> 20} MiB" if limit % (1 << 20) == 0 else f"{limit:,} bytes"
            notice = NOT_DURABLE.format(cell_id=self._cell_id, size=size)
            self._forward(OutputEvent(TextItem(notice)))


def _with(program: CellProgram, determinism: Determinism) -> CellProgram:
    return replace(program, determinism=determinism)
