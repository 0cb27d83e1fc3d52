"""Code mode in a real OpenAI Agents SDK run, driven by a scripted `Model`.

The scripted model answers each turn with the next tool call (or the final message) and records
the input the SDK sent it; the assertions read what the SDK recorded (`RunResult.new_items`) and
what it sent back to the model.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from agents import (
    Agent,
    FunctionTool,
    Model,
    ModelResponse,
    RunConfig,
    RunContextWrapper,
    Runner,
    ToolCallOutputItem,
    Usage,
    function_tool,
)
from openai.types.responses import (
    ResponseCustomToolCall,
    ResponseFunctionToolCall,
    ResponseOutputMessage,
    ResponseOutputText,
)

from codemode import CodeMode, UsageError
from codemode.adapters.agents import CodeModeTools

pytestmark = pytest.mark.integration

Reply = Callable[[list[Any]], Any]
NO_TRACING = RunConfig(tracing_disabled=True)


class ScriptedModel(Model):
    """Answers turn n with `replies[n](input items)`, and keeps every input it was sent."""

    def __init__(self, replies: list[Reply]) -> None:
        self.replies = list(replies)
        self.inputs: list[list[Any]] = []

    async def get_response(
        self, system_instructions: Any, input: Any, *args: Any, **kwargs: Any
    ) -> ModelResponse:
        items = [input] if isinstance(input, str) else list(input)
        self.inputs.append(items)
        output = self.replies.pop(0)(items)
        if inspect.isawaitable(output):  # a reply that acts as the host first
            output = await output
        return ModelResponse(output=[output], usage=Usage(), response_id=None)

    def stream_response(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        raise NotImplementedError("the tests run without streaming")


def custom_exec(call_id: str, source: str) -> Reply:
    return lambda _: ResponseCustomToolCall(
        type="custom_tool_call", call_id=call_id, name="exec", input=source
    )


def function_call(call_id: str, name: str, arguments: str) -> Reply:
    return lambda _: ResponseFunctionToolCall(
        type="function_call", call_id=call_id, name=name, arguments=arguments
    )


def final(text: str) -> Reply:
    return lambda _: ResponseOutputMessage(
        id="msg",
        type="message",
        role="assistant",
        status="completed",
        content=[ResponseOutputText(type="output_text", text=text, annotations=[])],
    )


@function_tool
def add(a: int, b: int) -> int:
    """Add two integers.

    Args:
        a: the first addend
        b: the second addend
    """
    return a + b


@function_tool
def scale(ctx: RunContextWrapper[dict[str, int]], value: int) -> dict[str, int]:
    """Multiply a value by the run's factor."""
    return {"scaled": value * ctx.context["factor"]}


COMPOSE = "const sum = await tools.add({ a: 2, b: 3 });\nconst { scaled } = await tools.scale({ value: sum });\ntext(`${sum} scaled is ${scaled}`);"
YIELDS = '// @exec: {"yield_time_ms": 100}\ntext("started");\nawait new Promise((resolve) => setTimeout(resolve, 400));\ntext("finished");'


def outputs(items: list[Any]) -> list[Any]:
    return [item.output for item in items if isinstance(item, ToolCallOutputItem)]


async def test_responses_run_composes_nested_tools_resumes_and_recovers() -> None:
    code_mode = CodeModeTools([add, scale])
    model = ScriptedModel(
        [
            custom_exec("c1", COMPOSE),
            custom_exec("c2", YIELDS),
            function_call("c3", "wait", '{"cell_id": "2"}'),
            custom_exec("c4", "const broken = undefined;\ntext(broken.length);"),
            custom_exec("c5", 'text("recovered")'),
            final("all done"),
        ]
    )
    agent = Agent(name="coder", model=model, tools=code_mode.tools)
    exec_tool, _ = code_mode.tools
    assert exec_tool.format["syntax"] == "lark"  # type: ignore[union-attr]
    assert (
        "add(args: {" in exec_tool.description and "scale(args: { value: number; })" in exec_tool.description
    )

    result = await code_mode.run(agent, "compute", context={"factor": 10}, run_config=NO_TRACING)

    assert result.final_output == "all done"
    first, running, waited, failed, recovered = outputs(result.new_items)
    assert first.startswith("Script completed\nWall time ") and first.endswith(
        " seconds\nOutput:\n5 scaled is 50"
    )
    assert running.startswith("Script running with cell ID 2\n") and running.endswith("started")
    assert waited[0].text.startswith("Script completed\n") and [part.text for part in waited[1:]] == [
        "finished"
    ]
    assert failed.startswith("Script failed\n")
    assert "Script error:\nTypeError: Cannot read properties of undefined (reading 'length')" in failed
    assert recovered.endswith("Output:\nrecovered")
    sent_back = [
        item
        for item in model.inputs[-1]
        if isinstance(item, dict) and item.get("type") == "custom_tool_call_output"
    ]
    assert [item["call_id"] for item in sent_back] == ["c1", "c2", "c4", "c5"]
    with pytest.raises(UsageError, match="not open"):
        code_mode.session


async def test_chat_exec_is_a_function_tool_with_image_output() -> None:
    code_mode = CodeModeTools([add], api="chat")
    model = ScriptedModel(
        [
            function_call(
                "f1",
                "exec",
                '{"code": "text(await tools.add({a: 1, b: 1})); image(\\"data:image/png;base64,iVBORw0KGgo=\\")"}',
            ),
            function_call("f2", "exec", '{"source": "text(1)"}'),
            final("ok"),
        ]
    )
    agent = Agent(name="coder", model=model, tools=code_mode.tools)
    assert isinstance(code_mode.tools[0], FunctionTool)
    async with code_mode:
        result = await Runner.run(agent, "go", run_config=NO_TRACING)
        assert code_mode.session.running_cells == []

    with_image, bad_arguments = outputs(result.new_items)
    assert [type(part).__name__ for part in with_image] == [
        "ToolOutputText",
        "ToolOutputText",
        "ToolOutputImage",
    ]
    assert with_image[1].text == "2"
    assert with_image[2].image_url == "data:image/png;base64,iVBORw0KGgo="
    assert "`exec` got invalid arguments" in bad_arguments
    replayed = next(
        item
        for item in model.inputs[1]
        if isinstance(item, dict) and item.get("type") == "function_call_output"
    )
    assert {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo=", "detail": "high"} in [
        {key: part.get(key) for key in ("type", "image_url", "detail")} for part in replayed["output"]
    ]


async def test_function_tools_are_nested_tools_of_a_plain_session() -> None:
    async with CodeMode(tools=[add]) as cm:
        (nested,) = cm.tools
        assert nested.tool.input_schema == add.params_json_schema
        assert "a: number" in cm.exec_description()
        result = await cm.exec("text(await tools.add({ a: 20, b: 22 }))")
        assert result.items[0].text == "42"  # type: ignore[union-attr]
        rejected = await cm.exec('await tools.add({ a: "x", b: 1 })')
        assert rejected.status == "failed" and "invalid arguments" in (rejected.error or "")


async def test_descriptions_follow_the_open_session_mcp_servers_included() -> None:
    server = Path(__file__).parent.parent / "mcp_servers" / "py_server.py"
    config = {"mcpServers": {"py": {"command": sys.executable, "args": [str(server)]}}}
    code_mode = CodeModeTools([add], mcp_servers=config)
    exec_tool = code_mode.tools[0]
    assert "mcp__py__add" not in exec_tool.description  # the server starts with the session
    model = ScriptedModel(
        [
            custom_exec("c1", "text((await tools.mcp__py__add({ a: 1, b: 2 })).structuredContent.total)"),
            final("3"),
        ]
    )
    async with code_mode:
        assert "mcp__py__add" in exec_tool.description
        assert exec_tool.tool_config["description"] == exec_tool.description  # type: ignore[union-attr]
        result = await Runner.run(
            Agent(name="coder", model=model, tools=code_mode.tools), "go", run_config=NO_TRACING
        )
    assert outputs(result.new_items)[0].endswith("Output:\n3")


async def test_a_tool_needing_approval_interrupts_the_run_until_the_host_answers() -> None:
    revealed: list[str] = []

    def reveal(topic: str) -> str:
        """Reveal a secret."""
        revealed.append(topic)
        return f"the secret of {topic}"

    code_mode = CodeModeTools([function_tool(reveal, needs_approval=True)])
    model = ScriptedModel(
        [custom_exec("c1", 'text(await tools.reveal({ topic: "cake" }))'), final("told")]
    )
    agent = Agent(name="keeper", model=model, tools=code_mode.tools)
    async with code_mode:
        first = await Runner.run(agent, "tell me", run_config=NO_TRACING)
        [interruption] = first.interruptions
        [pending] = code_mode.pending_approvals(interruption)
        assert (pending.cell_id, pending.tool_name, pending.arguments) == ("1", "reveal", {"topic": "cake"})
        assert revealed == []
        state = first.to_state()
        state.approve(interruption)
        result = await Runner.run(agent, state, run_config=NO_TRACING)
    [ran] = outputs(result.new_items)
    assert ran.startswith("Script completed\n")
    assert ran.endswith("Output:\nthe secret of cake")
    assert revealed == ["cake"]


async def test_a_needs_approval_function_decides_per_call_with_the_run_context() -> None:
    async def needs(ctx: RunContextWrapper[Any], params: dict[str, Any], call_id: str) -> bool:
        return bool(params["city"] not in ctx.context["open_cities"])

    @function_tool(needs_approval=needs)
    def visit(city: str) -> str:
        """Visit a city."""
        return f"visited {city}"

    code = """
    text(await tools.visit({ city: "Paris" }));
    try { await tools.visit({ city: "Atlantis" }); } catch (e) { text(e); }
    """
    code_mode = CodeModeTools([visit], approve=lambda call: False)
    model = ScriptedModel([custom_exec("c1", code), final("ok")])
    agent = Agent(name="traveller", model=model, tools=code_mode.tools)
    result = await code_mode.run(agent, "go", context={"open_cities": ["Paris"]}, run_config=NO_TRACING)
    [ran] = outputs(result.new_items)
    assert ran.endswith(
        "Output:\nvisited Paris\nThe approval policy rejected this call to tools.visit; it was not run."
    )


async def test_a_nested_tool_failure_rejects_in_the_script_when_the_tool_raises() -> None:
    def explode(city: str) -> str:
        """Fail on purpose."""
        raise ValueError(f"no forecast for {city}")

    strict = function_tool(explode, failure_error_function=None)
    async with CodeMode(tools=[strict]) as cm:
        result = await cm.exec(
            'try { await tools.explode({ city: "Atlantis" }) } catch (e) { text(String(e)) }'
        )
    assert "no forecast for Atlantis" in result.items[0].text  # type: ignore[union-attr]
