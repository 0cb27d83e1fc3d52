"""Owned background tasks: every task codemode starts outside a task group belongs to a `TaskSet`.

asyncio holds only a weak reference to a running task, and an exception nobody retrieves is
reported late (when the task is collected) or never. Where the starter can wait for its children
in one block, an anyio task group owns them. A cell cannot: its tool calls, notifications and
limit stops begin in engine callbacks and outlive the calls that start them. So the cell (or
pool) keeps them in a `TaskSet`, which holds each task until it ends, handles every outcome in
one place and cancels them together when the owner ends.

Invariants:
* A task is in its set from `spawn` until it is done; the set's outcome handler runs after the
  task has left the set.
* Without an outcome handler, a task that fails (anything but cancellation) is reported once to
  the loop's exception handler, naming the owner; with one, the handler decides.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

__all__ = ["TaskSet"]

T = TypeVar("T")

OutcomeHandler = Callable[["asyncio.Task[Any]"], None]


class TaskSet:
    """The running background tasks of one owner (a cell, a connection pool, a connection)."""

    def __init__(self, owner: str, on_done: OutcomeHandler | None = None) -> None:
        """`owner` names the owner in failure reports ("exec cell 3"); `on_done` receives every
        finished task (cancelled, failed or not) instead of the default failure report."""
        self._owner = owner
        self._on_done = on_done
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(
        self, work: Awaitable[T], *, name: str | None = None, context: contextvars.Context | None = None
    ) -> asyncio.Task[T]:
        """Run `work` in a task of this set (in `context` if given, else a copy of the current one)."""
        coroutine = work if inspect.iscoroutine(work) else _awaited(work)
        task = asyncio.get_running_loop().create_task(coroutine, name=name, context=context)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def cancel_all(self) -> None:
        """Ask every task to stop; each leaves the set when it has."""
        for task in self._tasks:
            task.cancel()

    async def wait(self) -> None:
        """Return once every task that is in the set now has ended."""
        if self._tasks:
            await asyncio.wait(list(self._tasks))

    def __len__(self) -> int:
        return len(self._tasks)

    def __iter__(self) -> Iterator[asyncio.Task[Any]]:
        return iter(list(self._tasks))

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if self._on_done is not None:
            self._on_done(task)
        elif not task.cancelled() and task.exception() is not None:
            task.get_loop().call_exception_handler(
                {
                    "message": f"codemode: a task of {self._owner} failed",
                    "exception": task.exception(),
                    "task": task,
                }
            )


async def _awaited(work: Awaitable[T]) -> T:
    return await work

