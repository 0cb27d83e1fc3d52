"""The README's agent loops, one per model API, driven by a scripted model.

The scripted model answers with tool calls in each API's own wire shape (parsed with the
official SDK types); the loop runs them through a real session and sends back what
`to_model(api)` gives, which must validate as that API's tool-output type.
"""

from __future__ import annotations

import json
import re
from typing import Any

from anthropic.types import Message, ToolResultBlockParam
from openai.types.chat import ChatCompletionMessage, ChatCompletionToolMessageParam
from openai.types.responses import ResponseCustomToolCall, ResponseCustomToolCallOutputParam, ResponseFunctionToolCall
from openai.types.responses.response_input_param import FunctionCallOutput
from pydantic import TypeAdapter

from codemode import CodeMode, to_model

SCRIPT = """// @exec: {"yield_time_ms": 200}
text(await tools.add({ a: 2, b: 3 }));
yield_control();
await new Promise((resolve) => setTimeout(resolve, 300));
image("data:image/png;base64,iVBORw0KGgo=");
text("done");"""


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


async def test_responses_api_loop() -> None:
    async with CodeMode([add]) as cm:
        specs = cm.tool_specs("responses")
        assert [spec["type"] for spec in specs] == ["custom", "function"]
        scripted = [
            ResponseCustomToolCall.model_validate(
                {"type": "custom_tool_call", "call_id": "c1", "name": "exec", "input": SCRIPT}
            ),
            ResponseFunctionToolCall.model_validate(
                {"type": "function_call", "call_id": "c2", "name": "wait", "arguments": '{"cell_id": "1"}'}
            ),
        ]
        outputs: list[Any] = []
        for call in scripted:
            if isinstance(call, ResponseCustomToolCall):
                result = await cm.exec(call.input)
                item: Any = {"type": "custom_tool_call_output", "call_id": call.call_id, "output": to_model(result)}
                TypeAdapter(ResponseCustomToolCallOutputParam).validate_python(item)
            else:
                result = await cm.wait(**json.loads(call.arguments))
                item = {"type": "function_call_output", "call_id": call.call_id, "output": to_model(result)}
                TypeAdapter(FunctionCallOutput).validate_python(item)
            outputs.append(item["output"])
    first, second = outputs
    header, *rest = first
    assert header.keys() == {"type", "text"} and header["type"] == "input_text"
    assert re.fullmatch(r"Script running with cell ID 1\nWall time \d+\.\d seconds\nOutput:\n", header["text"])
    assert rest == [{"type": "input_text", "text": "5"}]
    assert second[1:] == [
        {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo=", "detail": "high"},
        {"type": "input_text", "text": "done"},
    ]
    assert second[0]["text"].startswith("Script completed\n")


async def test_chat_completions_loop() -> None:
    async with CodeMode([add]) as cm:
        specs = cm.tool_specs("chat")
        assert [spec["function"]["name"] for spec in specs] == ["exec", "wait"]
        assistant = ChatCompletionMessage.model_validate(
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "t1",
                        "type": "function",
                        "function": {"name": "exec", "arguments": json.dumps({"code": "text(await tools.add({a: 1, b: 1}))"})},
                    }
                ],
            }
        )
        assert assistant.tool_calls is not None
        messages = []
        for call in assistant.tool_calls:
            assert call.type == "function"
            result = await cm.exec(json.loads(call.function.arguments)["code"])
            message = {"role": "tool", "tool_call_id": call.id, "content": to_model(result, "chat")}
            TypeAdapter(ChatCompletionToolMessageParam).validate_python(message)
            messages.append(message)
    assert "Script completed" in json.dumps(messages[0]["content"])
    assert "2" in json.dumps(messages[0]["content"])


async def test_anthropic_messages_loop() -> None:
    async with CodeMode([add]) as cm:
        tools = cm.tool_specs("anthropic")
        assert [tool["name"] for tool in tools] == ["exec", "wait"]
        reply = Message.model_validate(
            {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "model": "scripted",
                "stop_reason": "tool_use",
                "stop_sequence": None,
                "usage": {"input_tokens": 1, "output_tokens": 1},
                "content": [
                    {"type": "tool_use", "id": "u1", "name": "exec", "input": {"code": "throw new Error('nope')"}},
                ],
            }
        )
        results = []
        for block in reply.content:
            assert block.type == "tool_use"
            result = await cm.exec(block.input["code"]) if block.name == "exec" else await cm.wait(**block.input)
            tool_result = {
                "type": "tool_result",
                "tool_use_id": block.id,
                "content": to_model(result, "anthropic"),
                "is_error": result.status == "failed",
            }
            TypeAdapter(ToolResultBlockParam).validate_python(tool_result)
            results.append(tool_result)
    assert results[0]["is_error"] is True
    texts = [part["text"] for part in results[0]["content"]]
    assert texts[0].startswith("Script failed\n")
    assert texts[-1].startswith("Script error:\nError: nope\n    at exec_main.mjs:1:")
