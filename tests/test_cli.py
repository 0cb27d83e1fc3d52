"""`codemode exec`, run as a user would: a subprocess, a script file or stdin, Python tools."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

TESTS = Path(__file__).parent


def run_cli(*args: str, stdin: str | None = None, cwd: Path = TESTS) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "codemode", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=60,
    )


def test_exec_a_file_with_python_tools_prints_the_model_output(tmp_path: Path) -> None:
    script = tmp_path / "script.js"
    script.write_text('text(await tools.add({ a: 2, b: 3 }));\ntext(await tools.shout({ text: "hi" }));\n')
    done = run_cli("exec", "--tools", "fixtures_tools:TOOLS", str(script))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Script completed\nWall time ")
    assert done.stdout.endswith("Output:\n\n5\nHI\n")


def test_a_failing_script_from_stdin_exits_non_zero_with_the_error() -> None:
    done = run_cli("exec", "-", stdin='text("before");\nthrow new Error("boom");\n')
    assert done.returncode == 1
    assert done.stdout.startswith("Script failed\n")
    assert "before\nScript error:\nError: boom\n    at exec_main.mjs:2:7" in done.stdout


def test_a_yielding_script_is_waited_for_and_each_observation_printed() -> None:
    source = '// @exec: {"yield_time_ms": 50}\ntext("one");\nawait new Promise((r) => setTimeout(r, 300));\ntext("two");\n'
    done = run_cli("exec", "-", stdin=source)
    assert done.returncode == 0, done.stderr
    assert "Script running with cell ID 1" in done.stdout
    assert done.stdout.index("one") < done.stdout.index("Script completed") < done.stdout.index("two")


def test_json_output_is_the_responses_api_format() -> None:
    done = run_cli("exec", "--json", "-", stdin="text(1)")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith('[{"type": "input_text", "text": "Script completed')


def test_a_bad_tools_option_is_a_usage_error() -> None:
    done = run_cli("exec", "--tools", "no_such_module:TOOLS", "-", stdin="text(1)")
    assert done.returncode == 2
    assert "cannot import 'no_such_module'" in done.stderr


def test_a_pragma_error_is_reported_without_a_cell() -> None:
    done = run_cli("exec", "-", stdin='// @exec: {"nope": 1}\ntext(1)')
    assert done.returncode == 1
    assert done.stdout.strip() == "exec pragma only supports `yield_time_ms` and `max_output_tokens`; got `nope`"


def test_lone_surrogates_print_as_replacement_characters() -> None:
    done = run_cli("exec", "-", stdin='text("a\\ud800b")')
    assert done.returncode == 0, done.stderr
    assert done.stdout.endswith("Output:\n\na\ufffdb\n")


def test_a_call_that_needs_approval_is_refused_not_left_waiting(tmp_path: Path) -> None:
    (tmp_path / "guarded_tools.py").write_text(
        "from codemode.tools import requires_approval\n\n"
        "@requires_approval\n"
        "def delete(path: str) -> str:\n"
        '    """Delete a file."""\n'
        '    return "deleted " + path\n'
    )
    script = 'try { await tools.delete({ path: "/tmp/x" }) } catch (e) { text(`refused: ${e}`) }'
    done = run_cli("exec", "--tools", "guarded_tools:delete", "-", stdin=script, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.endswith(
        "refused: tools.delete needs approval, and `codemode exec` has no one to ask; the call was not run\n"
    )
