"""Code mode in a LangChain tool-calling loop, driven by a scripted chat model.

The model (a small `BaseChatModel`) answers with the next `AIMessage`; the loop is LangChain's
tool-calling protocol (`bind_tools`, `tool.ainvoke(tool_call)` -> `ToolMessage`); the
assertions read the message list.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool, ToolException, tool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import PrivateAttr

from codemode import CodeMode
from codemode.adapters.langchain import code_mode_tools

pytestmark = pytest.mark.integration


class ScriptedChatModel(BaseChatModel):
    """Answers call n with `replies[n]`; `bind_tools` records what the model would be sent."""

    replies: list[AIMessage]
    _bound: list[dict[str, Any]] = PrivateAttr(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> ScriptedChatModel:  # type: ignore[override]
        self._bound = [convert_to_openai_tool(t) for t in tools]
        return self

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any
    ) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=self.replies.pop(0))])


def call(call_id: str, name: str, args: dict[str, Any]) -> AIMessage:
    return AIMessage(
        content="", tool_calls=[{"id": call_id, "name": name, "args": args, "type": "tool_call"}]
    )


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@tool
async def scale(value: int, factor: int = 10) -> dict[str, int]:
    """Multiply a value by a factor."""
    return {"scaled": value * factor}


COMPOSE = "const sum = await tools.add({ a: 2, b: 3 });\nconst { scaled } = await tools.scale({ value: sum });\ntext(`${sum} scaled is ${scaled}`);"
YIELDS = '// @exec: {"yield_time_ms": 100}\ntext("started");\nawait new Promise((resolve) => setTimeout(resolve, 400));\ntext("finished");'


async def run_loop(model: BaseChatModel, tools: Sequence[BaseTool], prompt: str) -> list[BaseMessage]:
    by_name = {t.name: t for t in tools}
    bound = model.bind_tools(tools)
    messages: list[BaseMessage] = [HumanMessage(prompt)]
    while True:
        reply = await bound.ainvoke(messages)
        messages.append(reply)
        if not isinstance(reply, AIMessage) or not reply.tool_calls:
            return messages
        for tool_call in reply.tool_calls:
            messages.append(await by_name[tool_call["name"]].ainvoke(tool_call))


async def test_loop_composes_nested_tools_resumes_and_recovers() -> None:
    model = ScriptedChatModel(
        replies=[
            call("t1", "exec", {"code": COMPOSE}),
            call("t2", "exec", {"code": YIELDS}),
            call("t3", "wait", {"cell_id": "2"}),
            call("t4", "exec", {"code": "const broken = undefined;\ntext(broken.length);"}),
            call("t5", "exec", {"code": 'image("data:image/png;base64,iVBORw0KGgo=");'}),
            AIMessage(content="all done"),
        ]
    )
    async with CodeMode(tools=[add, scale]) as cm:
        messages = await run_loop(model, code_mode_tools(cm), "compute")

    assert messages[-1].content == "all done"
    composed, running, waited, failed, with_image = [m for m in messages if isinstance(m, ToolMessage)]
    assert [m.tool_call_id for m in (composed, running, waited, failed, with_image)] == [
        "t1",
        "t2",
        "t3",
        "t4",
        "t5",
    ]
    assert composed.content[1] == {"type": "text", "text": "5 scaled is 50"}
    assert running.content[0]["text"].startswith("Script running with cell ID 2\n")
    assert running.content[1:] == [{"type": "text", "text": "started"}]
    assert waited.content[1:] == [{"type": "text", "text": "finished"}]
    assert failed.status == "error" and composed.status == "success"
    assert (
        "Script error:\nTypeError: Cannot read properties of undefined (reading 'length')" in failed.content
    )
    assert with_image.content[1] == {"type": "image", "base64": "iVBORw0KGgo=", "mime_type": "image/png"}
    exec_spec, wait_spec = model._bound
    assert exec_spec["function"]["name"] == "exec" and wait_spec["function"]["name"] == "wait"
    assert "add(args: { a: number; b: number; })" in exec_spec["function"]["description"]


async def test_bad_arguments_are_an_error_message_for_the_model() -> None:
    model = ScriptedChatModel(replies=[call("t1", "wait", {"cell": "1"}), AIMessage(content="gave up")])
    async with CodeMode() as cm:
        messages = await run_loop(model, code_mode_tools(cm), "go")
    (error,) = [m for m in messages if isinstance(m, ToolMessage)]
    assert (
        error.status == "error"
        and error.content == "`wait` got invalid arguments: 'cell_id' is a required property"
    )


async def test_langchain_tools_are_nested_tools_with_their_schemas() -> None:
    async with CodeMode(tools=[add, scale]) as cm:
        assert [entry.tool.input_schema for entry in cm.tools] == [
            convert_to_openai_tool(add)["function"]["parameters"],
            convert_to_openai_tool(scale)["function"]["parameters"],
        ]
        result = await cm.exec(
            "text(JSON.stringify(await tools.scale({ value: await tools.add({ a: 1, b: 2 }), factor: 2 })))"
        )
        assert result.items[0].text == '{"scaled":6}'  # type: ignore[union-attr]
        rejected = await cm.exec('await tools.add({ a: "x", b: 1 })')
        assert rejected.status == "failed" and "invalid arguments" in (rejected.error or "")


async def test_a_nested_tool_exception_rejects_in_the_script() -> None:
    @tool
    def explode(city: str) -> str:
        """Fail on purpose."""
        raise ToolException(f"no forecast for {city}")

    async with CodeMode(tools=[explode]) as cm:
        result = await cm.exec(
            'try { await tools.explode({ city: "Atlantis" }) } catch (e) { text(String(e)) }'
        )
    assert "no forecast for Atlantis" in result.items[0].text  # type: ignore[union-attr]


async def test_nested_tools_get_the_calls_runnable_config() -> None:
    @tool
    async def whoami(config: RunnableConfig) -> str:
        """The user this run is for."""
        return str(config.get("configurable", {}).get("user"))

    async with CodeMode(tools=[whoami]) as cm:
        exec_tool, _ = code_mode_tools(cm)
        tool_call = {
            "id": "t1",
            "name": "exec",
            "args": {"code": "text(await tools.whoami({}))"},
            "type": "tool_call",
        }
        message = await exec_tool.ainvoke(tool_call, config={"configurable": {"user": "ada"}})
    assert isinstance(message, ToolMessage) and message.content[1] == {"type": "text", "text": "ada"}
