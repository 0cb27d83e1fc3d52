"""Agents SDK tools as nested tools: `FunctionTool`s, and MCP server objects.

A `FunctionTool` is called through the SDK's own invocation path: the SDK parses and validates
the arguments and passes the tool its `ToolContext`. That context carries the run whose exec or
wait drives the calling cell: the `CodeModeTools` exec/wait tool sets `run_context` (a
ContextVar, so concurrent runs never see each other's) and the cell runs each nested call in the
context of the exec or wait driving it. Outside a run, a tool gets `context=None`.

A failure reaches the script as a rejected call with the real error text: the tool is called
without the SDK's failure formatting (which hands the model "An error occurred while running the
tool" as a successful result), and a timeout raises rather than returning text.

`needs_approval` maps onto code mode's approvals: True makes every call wait for approval, and
a function decides per call with the run's context and the arguments. `CodeModeTools` turns a
waiting call into the SDK's own interruption (`_tools.py`).

`MCPServerStdio` and `MCPServerStreamableHttp` become an `McpToolset` entry named after the
server, so their tools are `mcp__<server>__<tool>` and the server is shared like a
`mcp_servers=` entry (the SDK object itself is never connected).
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import re
import uuid
from contextvars import ContextVar
from typing import Any, cast

import pydantic
from agents import FunctionTool, RunContextWrapper, Usage
from agents.mcp import MCPServerStdio, MCPServerStreamableHttp
from agents.tool import invoke_function_tool
from agents.tool_context import ToolContext

from codemode.errors import UsageError
from codemode.tools import Tool, ToolSource

__all__ = ["nested_tools", "run_context"]

_JSON = pydantic.TypeAdapter(Any)

run_context: ContextVar[RunContextWrapper[Any] | None] = ContextVar("codemode_agents_run_context", default=None)
"""The run context of the exec or wait call driving the cell whose nested call runs now."""

# The HTTP params code mode's MCP client cannot honour; refused rather than silently dropped.
_UNSUPPORTED_HTTP_PARAMS = ("auth", "httpx_client_factory")


def nested_tools(obj: FunctionTool | MCPServerStdio | MCPServerStreamableHttp) -> Tool | ToolSource:
    """CodeMode's intake for an Agents SDK `FunctionTool` or MCP server object.

    Raises:
        UsageError: an MCP server uses a setting code mode cannot apply (`tool_filter`, `auth`,
            `httpx_client_factory`).
    """
    if isinstance(obj, FunctionTool):
        return _function_tool(obj)
    from codemode.tools.mcp import McpToolset  # the MCP SDK loads only for sessions that use it

    name = server_name(obj.name)
    return McpToolset({"mcpServers": {name: _server_config(obj, name)}})


def server_name(sdk_name: str) -> str:
    """An SDK server's name as an MCP config name: letters, digits, `_` and `-` (others become `_`)."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", sdk_name).strip("_") or "server"


def _function_tool(function_tool: FunctionTool) -> Tool:
    strict = dataclasses.replace(
        function_tool,
        _failure_error_function=None,
        _use_default_failure_error_function=False,
        timeout_behavior="raise_exception",
    )
    decide = function_tool.needs_approval

    async def needs_approval(arguments: dict[str, Any]) -> bool:
        """The SDK tool's `needs_approval` function, asked with the calling run's context."""
        assert not isinstance(decide, bool)
        answer = decide(_outer_context(), arguments, f"codemode_{uuid.uuid4().hex}")
        return bool(await answer if inspect.isawaitable(answer) else answer)

    async def invoke(arguments: dict[str, Any]) -> Any:
        """Run the tool as the SDK would for a model's call, and return its output as JSON data."""
        arguments_json = json.dumps(arguments)
        outer = run_context.get()
        context: ToolContext[Any] = ToolContext(
            context=None if outer is None else outer.context,
            usage=Usage() if outer is None else outer.usage,
            tool_name=function_tool.name,
            tool_call_id=f"codemode_{uuid.uuid4().hex}",
            tool_arguments=arguments_json,
            agent=getattr(outer, "agent", None),
            run_config=getattr(outer, "run_config", None),
        )
        output = await invoke_function_tool(function_tool=strict, context=context, arguments=arguments_json)
        return _JSON.dump_python(output, mode="json")

    return Tool(
        name=function_tool.name,
        description=function_tool.description,
        handler=invoke,
        input_schema=function_tool.params_json_schema,
        output_schema=function_tool.output_json_schema,
        requires_approval=decide if isinstance(decide, bool) else needs_approval,
    )


def _outer_context() -> RunContextWrapper[Any]:
    outer = run_context.get()
    return outer if outer is not None else RunContextWrapper(context=None)


def _server_config(server: MCPServerStdio | MCPServerStreamableHttp, name: str) -> dict[str, Any]:
    """The `mcpServers` entry for an SDK server object, its approval setting included."""
    if server.tool_filter is not None:
        raise UsageError(
            f"MCP server {name!r}: `tool_filter` is not applied to nested tools; "
            "leave it out (every tool is listed) or use CodeMode(mcp_servers=...) "
        )
    entry: dict[str, Any] = {"requires_approval": _requires_approval(server)}
    if isinstance(server, MCPServerStdio):
        params = server.params
        entry |= {"command": params.command, "args": list(params.args)}
        if params.env:
            entry["env"] = dict(params.env)
        if params.cwd is not None:
            entry["cwd"] = os.fspath(params.cwd)
        return entry
    http = cast(dict[str, Any], server.params)
    unsupported = [key for key in _UNSUPPORTED_HTTP_PARAMS if http.get(key) is not None]
    if unsupported:
        raise UsageError(
            f"MCP server {name!r}: {', '.join(unsupported)} cannot be used by code mode's MCP "
            "client; pass the credentials as `headers`"
        )
    entry |= {"url": http["url"], "headers": dict(http.get("headers") or {})}
    return entry


def _requires_approval(server: MCPServerStdio | MCPServerStreamableHttp) -> bool | list[str]:
    """The server's `require_approval` as an MCP config value; a policy function asks for every
    call, as the SDK does when it cannot call the function."""
    policy: object = getattr(server, "_needs_approval_policy", False)
    if isinstance(policy, dict):
        return [str(tool) for tool, needed in cast(dict[Any, bool], policy).items() if needed]
    return policy if isinstance(policy, bool) else True
