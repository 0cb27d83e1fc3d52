"""Code mode inside an OpenAI Agents SDK run, with a scripted model (no network, no API key).

`CodeModeTools` gives the agent `exec` (a Responses custom tool with the Lark grammar) and `wait`;
the nested tools are ordinary `@function_tool`s, called with the run's context object.
"""

from __future__ import annotations

import asyncio
from typing import Any

from agents import Agent, Model, ModelResponse, RunConfig, RunContextWrapper, Usage, function_tool
from openai.types.responses import (
    ResponseCustomToolCall,
    ResponseFunctionToolCall,
    ResponseOutputMessage,
    ResponseOutputText,
)

from codemode.adapters.agents import CodeModeTools


@function_tool
def list_cities() -> list[str]:
    """All cities with a forecast."""
    return ["Lisbon", "Oslo", "Paris"]


@function_tool
def get_forecast(ctx: RunContextWrapper[dict[str, dict[str, float]]], city: str) -> dict[str, Any]:
    """Today's forecast for a city (from the run's context object)."""
    return {"city": city, "temperature_c": ctx.context["forecasts"][city]}


class ScriptedModel(Model):
    """Plays back one output item per turn, and prints what the SDK sent back for the last one."""

    def __init__(self, outputs: list[Any]) -> None:
        self.outputs = outputs

    async def get_response(
        self, system_instructions: Any, input: Any, *args: Any, **kwargs: Any
    ) -> ModelResponse:
        last = input[-1] if isinstance(input, list) else None
        if isinstance(last, dict) and "output" in last:
            print(f"model ← {last['output']!r}\n")
        output = self.outputs.pop(0)
        if isinstance(output, ResponseCustomToolCall):
            print(f"model → exec:\n{output.input}")
        elif isinstance(output, ResponseFunctionToolCall):
            print(f"model → {output.name} {output.arguments}")
        return ModelResponse(output=[output], usage=Usage(), response_id=None)

    def stream_response(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError


def custom_exec(call_id: str, source: str) -> ResponseCustomToolCall:
    return ResponseCustomToolCall(type="custom_tool_call", call_id=call_id, name="exec", input=source)


async def main() -> None:
    model = ScriptedModel(
        [
            custom_exec(
                "c1",
                """const cities = await tools.list_cities();
const forecasts = await Promise.all(cities.map((city) => tools.get_forecast({ city })));
text(forecasts.map((f) => `${f.city}: ${f.temperature_c}°C`).join("\\n"));""",
            ),
            custom_exec(
                "c2",
                '// @exec: {"yield_time_ms": 100}\ntext("thinking");\nawait new Promise((r) => setTimeout(r, 300));\ntext("warmest: Lisbon");',
            ),
            ResponseFunctionToolCall(
                type="function_call", call_id="c3", name="wait", arguments='{"cell_id": "2"}'
            ),
            ResponseOutputMessage(
                id="m",
                type="message",
                role="assistant",
                status="completed",
                content=[ResponseOutputText(type="output_text", text="Lisbon is warmest.", annotations=[])],
            ),
        ]
    )
    code_mode = CodeModeTools([list_cities, get_forecast])
    agent = Agent(name="forecaster", model=model, tools=code_mode.tools)
    forecasts = {"forecasts": {"Lisbon": 21.5, "Oslo": 3.0, "Paris": 14.0}}
    result = await code_mode.run(
        agent, "Which city is warmest?", context=forecasts, run_config=RunConfig(tracing_disabled=True)
    )
    print(f"\nfinal output: {result.final_output}")


if __name__ == "__main__":
    asyncio.run(main())
