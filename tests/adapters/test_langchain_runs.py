"""Concurrent LangChain invocations of one session's tools, sync `invoke`, and `wait` arguments.

Real `StructuredTool`s from `code_mode_tools`, invoked with LangChain tool calls; the nested
tools are LangChain tools that read the invocation's `RunnableConfig`.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from langchain_core.messages import ToolMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import tool

from codemode import CodeMode
from codemode.adapters.langchain import code_mode_tools
from codemode.errors import UsageError

pytestmark = pytest.mark.integration


@tool
async def whoami(delay: float, config: RunnableConfig) -> str:
    """The invocation's user, after a delay."""
    await asyncio.sleep(delay)
    return str(config["configurable"]["user"])


def tool_call(name: str, args: dict[str, Any], call_id: str = "t1") -> dict[str, Any]:
    return {"id": call_id, "name": name, "args": args, "type": "tool_call"}


def texts(message: Any) -> list[str]:
    assert isinstance(message, ToolMessage), message
    content = message.content
    return [content] if isinstance(content, str) else [block["text"] for block in content[1:]]  # type: ignore[index]


WHOAMI_TWICE = "text(await tools.whoami({{ delay: {delay} }}));\ntext(await tools.whoami({{ delay: 0 }}));"


async def test_concurrent_invocations_each_get_their_own_config() -> None:
    users = {"alice": 0.4, "bob": 0.0, "carol": 0.2}  # the slowest invocation's call ends last
    async with CodeMode(tools=[whoami]) as cm:
        exec_tool, _ = code_mode_tools(cm)
        messages = await asyncio.gather(
            *(
                exec_tool.ainvoke(
                    tool_call("exec", {"code": WHOAMI_TWICE.format(delay=delay)}, f"t-{user}"),
                    config={"configurable": {"user": user}},
                )
                for user, delay in users.items()
            )
        )
    assert [texts(message) for message in messages] == [[user, user] for user in users]


async def test_a_wait_drives_the_cell_with_its_own_config_and_takes_a_numeric_cell_id() -> None:
    code = '// @exec: {"yield_time_ms": 50}\ntext(await tools.whoami({ delay: 0 }));\nawait new Promise((r) => setTimeout(r, 300));\ntext(await tools.whoami({ delay: 0 }));'
    async with CodeMode(tools=[whoami]) as cm:
        exec_tool, wait_tool = code_mode_tools(cm)
        started = await exec_tool.ainvoke(tool_call("exec", {"code": code}), config={"configurable": {"user": "alice"}})
        waited = await wait_tool.ainvoke(tool_call("wait", {"cell_id": 1}), config={"configurable": {"user": "bob"}})
    assert isinstance(started, ToolMessage) and started.content[0]["text"].startswith("Script running with cell ID 1\n")  # type: ignore[index]
    assert texts(started) == ["alice"]
    assert isinstance(waited, ToolMessage) and waited.status == "success"
    assert waited.content[0]["text"].startswith("Script completed\n") and texts(waited) == ["bob"]  # type: ignore[index]


async def test_sync_invoke_runs_on_the_sessions_loop_from_other_threads() -> None:
    async with CodeMode(tools=[whoami]) as cm:
        exec_tool, wait_tool = code_mode_tools(cm)

        def invoke(user: str) -> Any:
            code = WHOAMI_TWICE.format(delay=0.1)
            return exec_tool.invoke(tool_call("exec", {"code": code}), config={"configurable": {"user": user}})

        # From a worker thread of the session's loop...
        from_worker = await asyncio.to_thread(invoke, "ada")
        # ...and from a plain thread without a loop, two at once.
        results: dict[str, Any] = {}
        threads = [threading.Thread(target=lambda u=user: results.__setitem__(u, invoke(u))) for user in ("bo", "cy")]
        for thread in threads:
            thread.start()
        await asyncio.to_thread(lambda: [thread.join() for thread in threads])
        failed = await asyncio.to_thread(
            wait_tool.invoke, tool_call("wait", {"cell_id": "9"}), config={"configurable": {"user": "x"}}
        )
        # On the loop's own thread a blocking invoke would deadlock the session: refused.
        with pytest.raises(UsageError, match="use ainvoke"):
            exec_tool.invoke(tool_call("exec", {"code": "text(1)"}))
    assert texts(from_worker) == ["ada", "ada"]
    assert {user: texts(message) for user, message in results.items()} == {"bo": ["bo", "bo"], "cy": ["cy", "cy"]}
    assert (
        isinstance(failed, ToolMessage) and failed.status == "error" and "exec cell 9 not found" in str(failed.content)
    )
