"""Agents SDK `FunctionTool`s as nested tools, called through the SDK's own invocation path.

The SDK parses and validates the arguments, passes the tool its `ToolContext` (carrying the run's
context object when the call comes from a `CodeModeTools` run) and applies the tool's timeout and
failure policy; a failure the policy turns into text reaches the script as that text.

`needs_approval` maps onto code mode's approvals: True makes every call wait for approval (code
mode's `approve=` policy, or the host's `approve`/`reject` on the session), and a function decides
per call with the run's context and the arguments. The SDK's own interruption (`RunState.approve`)
is not involved: the script waits inside the `exec` call, not the agent run.
"""

from __future__ import annotations

import inspect
import json
import uuid
from typing import Any

import pydantic
from agents import FunctionTool, RunContextWrapper, Usage
from agents.tool import invoke_function_tool
from agents.tool_context import ToolContext

from codemode.tools import Tool

__all__ = ["NestedFunctionTool", "nested_tools"]

_JSON = pydantic.TypeAdapter(Any)


class NestedFunctionTool:
    """One `FunctionTool` as a nested tool; `run_context` is the agent run calling into code mode."""

    def __init__(self, function_tool: FunctionTool) -> None:
        self.function_tool = function_tool
        self.run_context: RunContextWrapper[Any] | None = None
        needs_approval = function_tool.needs_approval
        self.tool = Tool(
            name=function_tool.name,
            description=function_tool.description,
            handler=self.invoke,
            input_schema=function_tool.params_json_schema,
            output_schema=function_tool.output_json_schema,
            requires_approval=needs_approval if isinstance(needs_approval, bool) else self.needs_approval,
        )

    async def needs_approval(self, arguments: dict[str, Any]) -> bool:
        """The SDK tool's `needs_approval` function, asked with the calling run's context."""
        decide = self.function_tool.needs_approval
        assert not isinstance(decide, bool)
        context = self.run_context if self.run_context is not None else RunContextWrapper(context=None)
        answer = decide(context, arguments, f"codemode_{uuid.uuid4().hex}")
        return bool(await answer if inspect.isawaitable(answer) else answer)

    async def invoke(self, arguments: dict[str, Any]) -> Any:
        """Run the tool as the SDK would for a model's call, and return its output as JSON data."""
        arguments_json = json.dumps(arguments)
        outer = self.run_context
        context: ToolContext[Any] = ToolContext(
            context=None if outer is None else outer.context,
            usage=Usage() if outer is None else outer.usage,
            tool_name=self.function_tool.name,
            tool_call_id=f"codemode_{uuid.uuid4().hex}",
            tool_arguments=arguments_json,
            agent=getattr(outer, "agent", None),
            run_config=getattr(outer, "run_config", None),
        )
        output = await invoke_function_tool(
            function_tool=self.function_tool, context=context, arguments=arguments_json
        )
        return _JSON.dump_python(output, mode="json")


def nested_tools(function_tool: FunctionTool) -> Tool:
    """CodeMode's intake for a `FunctionTool` given outside `CodeModeTools` (no run context)."""
    return NestedFunctionTool(function_tool).tool
