"""`TaskSet`: owned background tasks, their failures reported once, cancelled together."""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any

from codemode._tasks import TaskSet

_whose: contextvars.ContextVar[str] = contextvars.ContextVar("whose", default="nobody")


async def test_a_failing_task_is_reported_once_naming_its_owner(loop_errors: list[dict[str, Any]]) -> None:
    tasks = TaskSet("exec cell 7")

    async def fail() -> None:
        raise RuntimeError("boom")

    task = tasks.spawn(fail(), name="failing")
    await asyncio.wait([task])  # (its set's done callback ran before this one)
    reported = list(loop_errors)
    loop_errors.clear()  # (expected here: the fixture would fail the test otherwise)
    assert [(c["message"], type(c["exception"]), c["task"]) for c in reported] == [
        ("codemode: a task of exec cell 7 failed", RuntimeError, task)
    ]
    assert len(tasks) == 0


async def test_cancel_all_cancels_every_task_and_the_set_empties() -> None:
    tasks = TaskSet("a pool")
    started = asyncio.Event()

    async def hang() -> None:
        started.set()
        await asyncio.Event().wait()

    spawned = [tasks.spawn(hang()) for _ in range(3)]
    await started.wait()
    assert len(tasks) == 3 and set(tasks) == set(spawned)
    tasks.cancel_all()
    await tasks.wait()
    assert all(task.cancelled() for task in spawned)
    assert len(tasks) == 0


async def test_an_outcome_handler_sees_every_task_after_it_left_the_set() -> None:
    seen: list[tuple[str, int]] = []

    def on_done(task: asyncio.Task[Any]) -> None:
        outcome = "cancelled" if task.cancelled() else repr(task.exception())
        seen.append((outcome, len(tasks)))

    tasks = TaskSet("a pool", on_done=on_done)

    async def fail() -> None:
        raise ValueError("handled by the owner")

    await asyncio.wait([tasks.spawn(fail())])
    assert seen == [("ValueError('handled by the owner')", 0)]  # and not reported to the loop


async def test_any_awaitable_runs_and_a_given_context_is_used() -> None:
    tasks = TaskSet("a connection")
    future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    from_future = tasks.spawn(future)
    future.set_result(5)
    assert await from_future == 5

    async def whose() -> str:
        return _whose.get()

    context = contextvars.copy_context()
    context.run(_whose.set, "the caller")
    assert await tasks.spawn(whose(), context=context) == "the caller"
    assert await tasks.spawn(whose()) == "nobody"


async def test_wait_returns_at_once_without_tasks() -> None:
    await asyncio.wait_for(TaskSet("nobody").wait(), 1)

