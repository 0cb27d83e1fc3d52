"""The README's examples, run: every ```python and ```sh block is listed below with how it runs.

A Python block runs as written (top-level `await` allowed) in a namespace that gives it what
the surrounding text assumes (`cm`, `add`, a scripted `client`, an agent on the framework's own
scripted test model), or is only compiled when it needs a real model or network (the reason is
in the table). A `codemode` command runs, or has each option checked against the command's own.
A block missing from the table fails the test, so a new example cannot go unchecked; so does a
table entry whose block is gone.
Statements about the API (field names, the sync wrapper's methods) are checked against the code.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import dataclasses
import json
import re
import shlex
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import agents
import pydantic_ai
import pytest
from agents.testing import ScriptedModel, assistant_message, function_call
from anthropic.types import Message, ToolResultBlockParam
from openai.types.chat import ChatCompletion, ChatCompletionMessageParam
from openai.types.responses import Response, ResponseCustomToolCall, ResponseInputParam
from pydantic import TypeAdapter
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart, ToolReturnPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

import codemode
from codemode import CodeMode, PendingApproval, SyncCodeMode, ToolCallRecord, cli as codemode_cli, to_model
from codemode.adapters.agents import CodeModeTools
from codemode.adapters.pydantic_ai import CodeModeToolset
from codemode.testing import FakeEngine
from codemode.tools import requires_approval

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text(encoding="utf-8")
SERVER_EVERYTHING = REPO / "tests/mcp_servers/node_modules/.bin/mcp-server-everything"


@dataclass(frozen=True)
class Block:
    language: str
    code: str
    line: int

    @property
    def key(self) -> str:
        """The block's first line: how the table below names it."""
        return self.code.splitlines()[0]


def readme_blocks() -> list[Block]:
    blocks: list[Block] = []
    for match in re.finditer(r"^```(\w*)\n(.*?)^```", README, re.S | re.M):
        line = README.count("\n", 0, match.start()) + 1
        blocks.append(Block(match.group(1), match.group(2), line))
    return blocks


# ---- what the Python blocks assume --------------------------------------------------------------


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


AGENT_SCRIPT = '// @exec: {"yield_time_ms": 100}\ntext(await tools.add({ a: 2, b: 3 }));\n' + (
    'yield_control();\nawait new Promise((r) => setTimeout(r, 200));\nimage("data:image/png;base64,iVBORw0KGgo=");\ntext("done");'
)


class Scripted:
    """A model that answers each request with the next scripted reply (an SDK object), and
    keeps every request's keywords so the test can validate what the loop sent."""

    def __init__(self, replies: list[Any]) -> None:
        self.replies = replies
        self.requests: list[dict[str, Any]] = []

    def create(self, **request: Any) -> Any:
        self.requests.append(json.loads(json.dumps(request, default=_plain)))
        return self.replies.pop(0)


def _plain(value: Any) -> Any:
    return value.model_dump(exclude_none=True) if hasattr(value, "model_dump") else str(value)


def anthropic_client() -> Any:
    def message(stop: str, content: list[dict[str, Any]]) -> Message:
        return Message.model_validate(
            {
                "id": "m",
                "type": "message",
                "role": "assistant",
                "model": "scripted",
                "stop_reason": stop,
                "stop_sequence": None,
                "usage": {"input_tokens": 1, "output_tokens": 1},
                "content": content,
            }
        )

    messages = Scripted(
        [
            message("tool_use", [{"type": "tool_use", "id": "u1", "name": "exec", "input": {"code": AGENT_SCRIPT}}]),
            message("tool_use", [{"type": "tool_use", "id": "u2", "name": "wait", "input": {"cell_id": "1"}}]),
            message("end_turn", [{"type": "text", "text": "5, and an image"}]),
        ]
    )
    return type("Client", (), {"messages": messages})()


def responses_client() -> Any:
    def response(output: list[dict[str, Any]]) -> Response:
        return Response.model_validate(
            {
                "id": "r",
                "object": "response",
                "created_at": 0,
                "model": "scripted",
                "output": output,
                "parallel_tool_calls": True,
                "tool_choice": "auto",
                "tools": [],
            }
        )

    return type(
        "Client",
        (),
        {
            "responses": Scripted(
                [
                    response(
                        [
                            {"type": "custom_tool_call", "call_id": "c1", "name": "exec", "input": AGENT_SCRIPT},
                            {"type": "function_call", "call_id": "c2", "name": "wait", "arguments": '{"cell_id": "1"}'},
                        ]
                    )
                ]
            )
        },
    )()


def chat_client() -> Any:
    completion = ChatCompletion.model_validate(
        {
            "id": "c",
            "object": "chat.completion",
            "created": 0,
            "model": "scripted",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "tool_calls",
                    "message": {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [
                            {
                                "id": "t1",
                                "type": "function",
                                "function": {"name": "exec", "arguments": json.dumps({"code": AGENT_SCRIPT})},
                            },
                            {
                                "id": "t2",
                                "type": "function",
                                "function": {"name": "wait", "arguments": '{"cell_id": "1"}'},
                            },
                        ],
                    },
                }
            ],
        }
    )
    completions = Scripted([completion])
    return type("Client", (), {"chat": type("Chat", (), {"completions": completions})()})()


def check_anthropic(namespace: dict[str, Any]) -> None:
    results = [block for message in namespace["messages"] if message["role"] == "user" for block in message["content"]]
    for result in results:
        TypeAdapter(ToolResultBlockParam).validate_python(result)
    assert [r["tool_use_id"] for r in results] == ["u1", "u2"]
    assert results[0]["content"][-1] == {"type": "text", "text": "5"}
    assert results[1]["content"][-1] == {"type": "text", "text": "done"}


def check_responses(namespace: dict[str, Any]) -> None:
    conversation = namespace["conversation"]
    TypeAdapter(ResponseInputParam).validate_python(conversation)
    assert [item["call_id"] for item in conversation] == ["c1", "c2"]
    assert conversation[0]["output"][-1] == {"type": "input_text", "text": "5"}
    assert conversation[1]["output"][-1] == {"type": "input_text", "text": "done"}


def check_chat(namespace: dict[str, Any]) -> None:
    tool_messages = [m for m in namespace["messages"] if isinstance(m, dict)]
    TypeAdapter(list[ChatCompletionMessageParam]).validate_python(tool_messages)
    assert [m["tool_call_id"] for m in tool_messages] == ["t1", "t2"]
    assert tool_messages[1]["content"][-1] == {"type": "text", "text": "done"}


def approval_namespace() -> dict[str, Any]:
    @requires_approval
    def delete_file(path: str) -> str:
        """Delete a file."""
        return f"deleted {path}"

    def read_file(path: str) -> str:
        """Read a file."""
        return f"contents of {path}"

    source = 'text(await tools.read_file({ path: "/tmp/a" }));\n' + (
        'try { text(await tools.delete_file({ path: "/tmp/x" })) } catch (e) { text(`refused: ${e}`) }'
    )
    return {"delete_file": delete_file, "read_file": read_file, "source": source, "ok_with_user": lambda pending: False}


def check_approval(namespace: dict[str, Any]) -> None:
    result = namespace["result"]
    assert result.ok and result.items[-1].text == "refused: not that file"


# The framework adapters' approval examples: deletions the user approves under /tmp, and refuses elsewhere.
def delete_script(path: str) -> str:
    return f'try {{ text(await tools.delete_file({{ path: "{path}" }})) }} catch (e) {{ text(`refused: ${{e}}`) }}'


def only_tmp(calls: list[PendingApproval]) -> bool:
    """The user's answer: deletions under /tmp are fine."""
    return all(call.arguments["path"].startswith("/tmp/") for call in calls)


def agents_interruptions_namespace() -> dict[str, Any]:
    """An Agents SDK agent on the SDK's `ScriptedModel`: two execs in one turn, each stopped by its
    deletion (one interruption approved, one rejected), then a wait reading the rejected cell."""

    def delete_file(ctx: agents.RunContextWrapper[dict[str, list[str]]], path: str) -> str:
        """Delete a file."""
        ctx.context["deleted"].append(path)
        return f"deleted {path}"

    def exec_call(call_id: str, path: str) -> ResponseCustomToolCall:
        return ResponseCustomToolCall(type="custom_tool_call", call_id=call_id, name="exec", input=delete_script(path))

    code_mode = CodeModeTools([agents.function_tool(delete_file, needs_approval=True)])
    model = ScriptedModel(
        [
            [exec_call("c1", "/tmp/old.log"), exec_call("c2", "/etc/hosts")],
            [function_call("wait", {"cell_id": "2"}, call_id="w1")],
            [assistant_message("Tidied /tmp; /etc/hosts stays.")],
        ]
    )
    agent = agents.Agent(name="tidier", model=model, tools=code_mode.tools)
    return {"code_mode": code_mode, "agent": agent, "ctx": {"deleted": []}, "ok_with_user": only_tmp}


def check_agents_interruptions(namespace: dict[str, Any]) -> None:
    result = namespace["result"]
    namespace["agent"].model.assert_complete()
    assert not result.interruptions and result.final_output == "Tidied /tmp; /etc/hosts stays."
    assert namespace["ctx"]["deleted"] == ["/tmp/old.log"]  # the run's context reached the approved call
    outputs = [item.output for item in result.new_items if isinstance(item, agents.ToolCallOutputItem)]
    # The approved exec runs its cell to the end; the rejected one reads the rejection message, and
    # the wait the script's catch of it.
    approved, rejected, waited = outputs
    assert approved.startswith("Script completed\n") and approved.endswith("Output:\ndeleted /tmp/old.log")
    assert rejected == "Not approved; cell 2 goes on without it."
    assert waited[0].text.startswith("Script completed\n")
    assert [part.text for part in waited[1:]] == [f"refused: {rejected}"]


def pydantic_ai_deferred_namespace() -> dict[str, Any]:
    """pydantic-ai's `Agent`, answered by a `FunctionModel` in place of the model it names: exec a
    deletion (deferred for approval), then, resumed, the final answer."""
    deleted: list[str] = []

    def delete_file(path: str) -> str:
        """Delete a file."""
        deleted.append(path)
        return f"deleted {path}"

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if not any(isinstance(message, ModelResponse) for message in messages):
            code = delete_script("/tmp/old.log")
            return ModelResponse(parts=[ToolCallPart("exec", {"code": code}, tool_call_id="x1")])
        return ModelResponse(parts=[TextPart("Cleaned up /tmp")])

    def scripted_agent(model: str, **options: Any) -> pydantic_ai.Agent[Any, Any]:
        assert model.startswith("openai:")  # the model the example names, played by the script
        return pydantic_ai.Agent(FunctionModel(respond), **options)

    return {
        "Agent": scripted_agent,
        "Tool": pydantic_ai.Tool,
        "CodeModeToolset": CodeModeToolset,
        "delete_file": delete_file,
        "deleted": deleted,
    }


def check_pydantic_ai_deferred(namespace: dict[str, Any]) -> None:
    result = namespace["result"]
    assert result.output == "Cleaned up /tmp" and namespace["deleted"] == ["/tmp/old.log"]
    [answer] = [part for m in result.all_messages() for part in m.parts if isinstance(part, ToolReturnPart)]
    assert answer.tool_call_id == namespace["request"].tool_call_id == "x1"
    assert answer.content[0].startswith("Script completed\n") and answer.content[1:] == ["deleted /tmp/old.log"]


def shows_the_deferred_metadata(printed: str) -> None:
    """The example prints the deferred exec call's metadata; its comment shows it."""
    comment = re.search(r"print\(result\.output\.metadata\[.*\]\)\n\s*# (\{.*\})\n", README)
    assert comment is not None, "the deferred approvals example no longer shows the metadata it prints"
    metadata = ast.literal_eval(printed.strip())
    shown = json.loads(comment.group(1).replace("{...}", json.dumps(metadata["calls"][0]["arguments"])))
    assert metadata == shown
    assert metadata["calls"][0]["arguments"] == {"path": "/tmp/old.log"}


def no_agents_tracing() -> AbstractContextManager[Any]:
    """The Agents SDK's tracing off for the block's runs, as `RunConfig(tracing_disabled=True)`
    does in tests/adapters (an example leaves `run_config` out)."""
    return agents.trace("README example", disabled=True)


@dataclass(frozen=True)
class Run:
    """How a Python block runs: `setup` gives names the text assumes; `session` opens `cm` with
    these tools around it; `within` is a context the block runs in; `check` reads what the block
    left in its namespace, `printed` what it printed."""

    setup: Callable[[], dict[str, Any]] = dict
    session: tuple[Any, ...] | None = None
    check: Callable[[dict[str, Any]], None] | None = None
    needs: Path | None = None
    within: Callable[[], AbstractContextManager[Any]] = contextlib.nullcontext
    printed: Callable[[str], None] | None = None


@dataclass(frozen=True)
class CompileOnly:
    why: str


def _says_resumed(printed: str) -> None:
    assert printed.strip() == "completed ['3']", printed


PYTHON_BLOCKS: dict[str, Run | CompileOnly] = {
    "import asyncio": Run(),  # the quick start; its printed output is checked too
    "from codemode.engines import ProcessEngine": Run(lambda: {"add": add, "CodeMode": CodeMode}),
    'config = {"mcpServers": {': Run(lambda: {"CodeMode": CodeMode}, needs=SERVER_EVERYTHING),
    'async with CodeMode(openapi={"github": {': CompileOnly(
        "it calls api.github.com; tests/test_openapi.py runs the GitHub spec against Prism"
    ),
    'tools = cm.tool_specs("anthropic")': Run(
        lambda: {"client": anthropic_client(), "messages": [], "to_model": to_model}, (add,), check_anthropic
    ),
    'tools = cm.tool_specs("responses")': Run(
        lambda: {"client": responses_client(), "conversation": [], "to_model": to_model, "json": json},
        (add,),
        check_responses,
    ),
    'tools = cm.tool_specs("chat")': Run(
        lambda: {"client": chat_client(), "messages": [], "to_model": to_model, "json": json}, (add,), check_chat
    ),
    "from agents import Agent, RunContextWrapper, function_tool": CompileOnly(
        "it calls a model; tests/adapters runs the adapter with a scripted one"
    ),
    "from agents import Runner": Run(
        agents_interruptions_namespace, check=check_agents_interruptions, within=no_agents_tracing
    ),
    "from pydantic_ai import Agent, RunContext, Tool": CompileOnly(
        "it calls a model; tests/adapters runs the adapter with a scripted one"
    ),
    "from pydantic_ai import DeferredToolRequests, DeferredToolResults": Run(
        pydantic_ai_deferred_namespace, check=check_pydantic_ai_deferred, printed=shows_the_deferred_metadata
    ),
    "from langchain_core.tools import tool": CompileOnly(
        "it calls a chat model; tests/adapters runs the adapter with a scripted one"
    ),
    "async with CodeMode(tools=[delete_file, read_file]) as cm:": Run(
        lambda: {**approval_namespace(), "CodeMode": CodeMode}, check=check_approval
    ),
    "import tempfile": Run(lambda: {"add": add, "CodeMode": CodeMode}, printed=lambda out: _says_resumed(out)),
    """result = await client.call_tool("exec", {"code": 'store("k", 1)'})""": CompileOnly(
        "it needs a sessionless MCP client; tests/test_mcp_replicas.py sends the handle over HTTP"
    ),
    "engine = FakeEngine()": Run(
        lambda: {"FakeEngine": FakeEngine, "CodeMode": CodeMode, "add": add, "asyncio": asyncio}
    ),
}


def python_blocks() -> Iterator[Any]:
    for block in readme_blocks():
        if block.language == "python":
            yield pytest.param(block, id=f"line {block.line}")


def test_every_example_block_is_listed_here_and_every_listed_one_exists() -> None:
    blocks = readme_blocks()
    python = {block.key for block in blocks if block.language == "python"}
    assert python == set(PYTHON_BLOCKS), "README ```python blocks changed: list each in PYTHON_BLOCKS"
    assert {block.language for block in blocks} <= {"python", "sh", "js", ""}


@pytest.mark.parametrize("block", list(python_blocks()))
def test_python_block_runs_as_written(block: Block, capsys: pytest.CaptureFixture[str]) -> None:
    how = PYTHON_BLOCKS[block.key]
    code = compile(block.code, f"README.md:{block.line}", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    if isinstance(how, CompileOnly):
        pytest.skip(f"compiled only: {how.why}")
    if how.needs is not None and not how.needs.exists():
        pytest.skip(f"needs {how.needs.relative_to(REPO)} (make test installs it)")
    namespace = how.setup()
    if block.key == 'config = {"mcpServers": {':  # the local install of the same npm server, not npx
        npx = '"command": "npx", "args": ["-y", "@modelcontextprotocol/server-everything", "stdio"]'
        assert npx in block.code  # `-y`: without it and without a terminal, npx cancels
        code = compile(
            block.code.replace(npx, f'"command": {str(SERVER_EVERYTHING)!r}, "args": ["stdio"]'),
            f"README.md:{block.line}",
            "exec",
            flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT,
        )

    async def run() -> None:
        with how.within():
            if how.session is None:
                outcome = eval(code, namespace)
            else:
                async with CodeMode(list(how.session)) as cm:
                    namespace["cm"] = cm
                    outcome = eval(code, namespace)
                    if asyncio.iscoroutine(outcome):
                        await outcome
                    return
            if asyncio.iscoroutine(outcome):
                await outcome

    if block.key == "import asyncio":  # the quick start calls asyncio.run itself
        exec(code, namespace)
    else:
        asyncio.run(run())
    if how.check is not None:
        how.check(namespace)
    if how.printed is not None:
        how.printed(capsys.readouterr().out)


def test_the_quick_start_prints_what_its_comment_says(capsys: pytest.CaptureFixture[str]) -> None:
    [quick_start] = [block for block in readme_blocks() if block.key == "import asyncio"]
    exec(compile(quick_start.code, "README.md", "exec"), {})
    printed = ast.literal_eval(capsys.readouterr().out.strip())
    commented = re.search(r"# (\[\{.*?\}\])\n\n", re.sub(r"\n\s+#  ", " ", quick_start.code), re.S)
    assert commented is not None, "the quick start no longer shows its output in a comment"
    shown = json.loads(commented.group(1))
    printed[0]["text"] = re.sub(r"Wall time \d+\.\d seconds", "Wall time 0.0 seconds", printed[0]["text"])
    assert printed == shown


# ---- shell blocks ---------------------------------------------------------------------------------


def shell_commands() -> Iterator[Any]:
    for block in readme_blocks():
        if block.language != "sh":
            continue
        for command in block.code.replace("\\\n", " ").splitlines():
            words = shlex.split(command, comments=True)
            if words and words[0] in ("codemode", "make"):
                yield pytest.param(words, id=" ".join(words[:3]))


@pytest.mark.parametrize("words", list(shell_commands()))
def test_shell_commands_name_real_commands_and_options(words: list[str]) -> None:
    if words[0] == "make":
        targets = re.findall(r"^([\w-]+):", (REPO / "Makefile").read_text(encoding="utf-8"), re.M)
        assert words[1] in targets, f"make {words[1]}: no such target"
        return
    command = codemode_cli.main.commands[words[1]]
    known = {name for param in command.params if not getattr(param, "hidden", False) for name in param.opts}
    used = {word.split("=")[0] for word in words[2:] if word.startswith("--")}
    assert used <= known, f"codemode {words[1]}: no option {sorted(used - known)}"


@pytest.mark.integration
def test_the_cli_example_runs_from_the_project_root(tmp_path: Path) -> None:
    [line] = [line for line in README.splitlines() if line.startswith("codemode exec ")]
    script = tmp_path / "script.js"
    script.write_text("text((await tools.list_cities()).join(', '))")
    words = shlex.split(line, comments=True)
    words[words.index("script.js")] = str(script)
    done = subprocess.run(
        [sys.executable, "-m", "codemode", *words[1:]], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.endswith("Output:\n\nLisbon, Oslo, Paris, Tokyo\n")


# ---- statements about the API ---------------------------------------------------------------------


def test_tool_call_record_fields_are_the_ones_the_readme_names() -> None:
    paragraph = README[README.index("Every nested call leaves a `ToolCallRecord`") :][:600]
    for field in dataclasses.fields(ToolCallRecord):
        assert f"`{field.name}`" in paragraph, field.name


def test_sync_code_mode_has_the_same_methods_and_properties() -> None:
    assert "`SyncCodeMode` has the same methods and properties" in README

    def public(cls: type) -> set[str]:
        return {name for name in dir(cls) if not name.startswith("_")}

    assert public(CodeMode) - {"aclose"} == public(SyncCodeMode) - {"close"}


def test_every_name_the_readme_imports_from_codemode_exists() -> None:
    for module, names in re.findall(r"^from (codemode[\w.]*) import ([\w, ]+)$", README, re.M):
        imported = __import__(module, fromlist=["_"])
        for name in names.split(", "):
            assert hasattr(imported, name.strip()), f"{module}.{name}"
    assert codemode.__name__ == "codemode"
