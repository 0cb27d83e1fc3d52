"""Code mode in a LangChain tool-calling loop, with a scripted chat model (no network).

`code_mode_tools(cm)` gives `exec` and `wait` as async `StructuredTool`s; the nested tools are
ordinary LangChain `@tool`s. The loop is LangChain's protocol: `bind_tools`, then
`tool.ainvoke(tool_call)` gives the `ToolMessage` for each call.
"""

from __future__ import annotations

import asyncio
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.tools import tool

from codemode import CodeMode
from codemode.adapters.langchain import code_mode_tools

FORECASTS = {"Lisbon": 21.5, "Oslo": 3.0, "Paris": 14.0}


@tool
def list_cities() -> list[str]:
    """All cities with a forecast."""
    return sorted(FORECASTS)


@tool
async def get_forecast(city: str) -> dict[str, Any]:
    """Today's forecast for a city."""
    return {"city": city, "temperature_c": FORECASTS[city]}


def exec_call(call_id: str, code: str) -> AIMessage:
    return AIMessage(
        content="", tool_calls=[{"id": call_id, "name": "exec", "args": {"code": code}, "type": "tool_call"}]
    )


class ScriptedChatModel(BaseChatModel):
    """Answers call n with `replies[n]`."""

    replies: list[AIMessage]

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def bind_tools(self, tools: Any, **kwargs: Any) -> ScriptedChatModel:
        return self

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any
    ) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=self.replies.pop(0))])


async def main() -> None:
    model = ScriptedChatModel(
        replies=[
            exec_call(
                "t1",
                """const cities = await tools.list_cities({});
const forecasts = await Promise.all(cities.map((city) => tools.get_forecast({ city })));
text(forecasts.map((f) => `${f.city}: ${f.temperature_c}°C`).join("\\n"));""",
            ),
            exec_call("t2", "text(undefined.length);"),
            AIMessage(content="Lisbon is warmest."),
        ]
    )
    async with CodeMode(tools=[list_cities, get_forecast]) as cm:
        tools = {t.name: t for t in code_mode_tools(cm)}
        bound = model.bind_tools(list(tools.values()))
        messages: list[BaseMessage] = [HumanMessage("Which city is warmest?")]
        while True:
            reply = await bound.ainvoke(messages)
            messages.append(reply)
            if not isinstance(reply, AIMessage) or not reply.tool_calls:
                break
            for tool_call in reply.tool_calls:
                print(f"model → {tool_call['name']}:\n{tool_call['args'].get('code', tool_call['args'])}")
                result = await tools[tool_call["name"]].ainvoke(tool_call)
                messages.append(result)
                print(f"model ← ToolMessage(status={result.status!r}) {result.content!r}\n")
    print(f"final answer: {messages[-1].content}")


if __name__ == "__main__":
    asyncio.run(main())
