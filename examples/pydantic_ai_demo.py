"""Code mode inside a pydantic-ai agent run, with a scripted `FunctionModel` (no network).

`CodeModeToolset` gives the agent `exec` and `wait`; the nested tools are pydantic-ai `Tool`s,
one of which reads the run's deps through its `RunContext`.
"""

from __future__ import annotations

import asyncio

from pydantic_ai import Agent, ModelMessage, ModelResponse, RunContext, TextPart, Tool, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from codemode.adapters.pydantic_ai import CodeModeToolset


def list_cities() -> list[str]:
    """All cities with a forecast."""
    return ["Lisbon", "Oslo", "Paris"]


def get_forecast(ctx: RunContext[dict[str, float]], city: str) -> dict[str, object]:
    """Today's forecast for a city (from the run's deps)."""
    return {"city": city, "temperature_c": ctx.deps[city]}


STEPS = [
    ToolCallPart(
        "exec",
        {
            "code": """const cities = await tools.list_cities();
const forecasts = await Promise.all(cities.map((city) => tools.get_forecast({ city })));
text(forecasts.map((f) => `${f.city}: ${f.temperature_c}°C`).join("\\n"));"""
        },
    ),
    ToolCallPart("exec", {"code": "const broken = undefined;\ntext(broken.length);"}),
    ToolCallPart("exec", {"code": 'text("recovered: Lisbon is warmest")'}),
]


def scripted(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """Step n makes the n-th call, then answers; prints what the last call returned."""
    step = sum(isinstance(message, ModelResponse) for message in messages)
    for part in messages[-1].parts:
        if part.part_kind == "tool-return":
            print(f"model ← ({part.outcome}) {part.content!r}\n")
    if step == len(STEPS):
        return ModelResponse(parts=[TextPart("Lisbon is warmest.")])
    print(f"model → exec:\n{STEPS[step].args_as_dict()['code']}")
    return ModelResponse(parts=[STEPS[step]])


async def main() -> None:
    toolset = CodeModeToolset([Tool(list_cities), Tool(get_forecast, takes_ctx=True)])
    agent = Agent(FunctionModel(scripted), deps_type=dict[str, float], toolsets=[toolset])
    result = await agent.run("Which city is warmest?", deps={"Lisbon": 21.5, "Oslo": 3.0, "Paris": 14.0})
    print(f"final output: {result.output}")


if __name__ == "__main__":
    asyncio.run(main())
