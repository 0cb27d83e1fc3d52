"""CodeMode's tool intake: framework objects are recognised without importing any framework."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic_ai import FunctionToolset, Tool

from codemode import UsageError
from codemode.adapters import as_tool

pytestmark = pytest.mark.integration

FRAMEWORKS = ("agents", "pydantic_ai", "langchain_core")


def test_codemode_and_its_intake_import_no_framework() -> None:
    script = (
        "import sys\n"
        "from codemode import CodeMode\n"
        "def add(a: int, b: int) -> int:\n"
        "    return a + b\n"
        "CodeMode(tools=[add])\n"
        f"print([name for name in {FRAMEWORKS!r} if name in sys.modules])\n"
    )
    loaded = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"


def ping() -> str:
    """Answer pong."""
    return "pong"


def test_as_tool_refuses_a_toolset_which_lists_its_tools_only_once_started() -> None:
    with pytest.raises(
        UsageError, match=r"FunctionToolset gives its tools only once started: pass it to CodeMode\(tools="
    ):
        as_tool(FunctionToolset([Tool(ping)]))


def test_unknown_objects_are_still_refused() -> None:
    with pytest.raises(UsageError, match="not a tool"):
        as_tool(42)
