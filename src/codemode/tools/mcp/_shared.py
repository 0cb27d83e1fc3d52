"""Server connections shared by every toolset of an event loop: one process per configured server.

Fifty code-mode sessions naming the same config must not start fifty copies of each server
(each a Node process of 30-70 MB that takes seconds to start). Every toolset asks the pool of
its event loop for a lease instead of starting its own connection.

Invariants:
* One `ServerConnection` per (server name, settings, hooks) and event loop; it is started once,
  by a task of the pool's own `TaskSet`, so a cancelled session never cancels a start others
  wait for; the pool reads every start's outcome.
  What the toolsets build from its tool list (validated `Tool`s) is built once and shared too.
* A lease counts as a user; the connection is stopped when its last lease is released.
* A start that failed is remembered for `RETRY_FAILED_START_S`: sessions opened meanwhile get the
  same error at once instead of each waiting out the server's start-up timeout again.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import mcp_types as types

from codemode._tasks import TaskSet
from codemode.tools.mcp._config import McpServerConfig
from codemode.tools.mcp._connection import Hooks, McpServerError, ServerConnection

__all__ = ["RETRY_FAILED_START_S", "ServerLease", "shared_servers"]

RETRY_FAILED_START_S = 10.0
"""How long a failed start is reported again without trying the server anew."""

_Key = tuple[str, str, Hooks]
_Built = TypeVar("_Built")
Build = Callable[[ServerConnection, list[types.Tool]], _Built]
# Settings that are about one session's use of a server, not about the server it talks to.
_NOT_SHARED_SETTINGS = {"required", "disabled", "per_session", "requires_approval"}


@dataclass(eq=False)
class _Entry:
    connection: ServerConnection
    start: asyncio.Task[Any]  # the connection started and its tools built
    users: int = 0
    failed_at: float | None = None


@dataclass(eq=False)
class ServerLease(Generic[_Built]):
    """One toolset's use of a shared connection; `release()` it exactly once."""

    connection: ServerConnection
    built: _Built  # what `build` made of the server's tool list, the same for every lease
    _pool: SharedServers
    _key: _Key
    _released: bool = field(default=False)

    async def release(self) -> None:
        if not self._released:
            self._released = True
            await self._pool.release(self._key)


class SharedServers:
    """The connections of one event loop, by server name, settings and hooks."""

    def __init__(self) -> None:
        self._entries: dict[_Key, _Entry] = {}
        self._starts = TaskSet("the shared MCP servers", on_done=self._note_outcome)

    async def acquire(
        self, name: str, config: McpServerConfig, hooks: Hooks, build: Build[_Built]
    ) -> ServerLease[_Built]:
        """A lease on the running server, started now if no one else uses it; `build` turns its
        tool list into what the toolsets use, once per connection (pass the same function).

        Raises:
            McpServerError: the server could not be started (now, or moments ago).
        """
        key: _Key = (name, config.model_dump_json(exclude=_NOT_SHARED_SETTINGS), hooks)
        loop = asyncio.get_running_loop()
        entry = self._entries.get(key)
        if entry is not None and entry.failed_at is not None and loop.time() - entry.failed_at > RETRY_FAILED_START_S:
            del self._entries[key]
            entry = None
        if entry is None:
            connection = ServerConnection(name, config, hooks)
            task = self._starts.spawn(_started(connection, build), name=f"codemode-mcp-start-{name}")
            entry = self._entries[key] = _Entry(connection, task)
        entry.users += 1
        try:
            built = await asyncio.shield(entry.start)
        except BaseException:
            await self.release(key, entry)
            raise
        return ServerLease(entry.connection, built, self, key)

    def _note_outcome(self, start: asyncio.Task[Any]) -> None:
        failure = None if start.cancelled() else start.exception()  # read even if nobody waits
        key = next((key for key, entry in self._entries.items() if entry.start is start), None)
        if key is None:
            return  # retired meanwhile
        if start.cancelled():
            del self._entries[key]
            return
        if isinstance(failure, McpServerError):
            self._entries[key].failed_at = asyncio.get_running_loop().time()
        elif failure is not None:
            del self._entries[key]  # not a verdict on the server: the next session tries again

    async def release(self, key: _Key, entry: _Entry | None = None) -> None:
        """One user fewer of the connection at `key`; the last one stops it."""
        entry = entry or self._entries.get(key)
        if entry is None:
            return
        entry.users -= 1
        if entry.users > 0:
            return
        if self._entries.get(key) is entry and entry.failed_at is None:
            del self._entries[key]
        if not entry.start.done():
            entry.start.cancel()
        await entry.connection.aclose()


async def _started(connection: ServerConnection, build: Build[_Built]) -> _Built:
    return build(connection, await connection.start())


_pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, SharedServers] = weakref.WeakKeyDictionary()


def shared_servers() -> SharedServers:
    """The pool of the running event loop (connections belong to the loop that started them)."""
    loop = asyncio.get_running_loop()
    pool = _pools.get(loop)
    if pool is None:
        pool = _pools[loop] = SharedServers()
    return pool
