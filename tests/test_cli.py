"""The `codemode` command: `codemode exec` run as a user would (a subprocess, a script file or
stdin, Python tools), and the options both commands share, parsed in this process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from codemode import Defaults, ImageItem, Limits, TextItem, cli

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


@pytest.mark.integration
def test_exec_a_file_with_python_tools_prints_the_model_output(tmp_path: Path) -> None:
    script = tmp_path / "script.js"
    script.write_text('text(await tools.add({ a: 2, b: 3 }));\ntext(await tools.shout({ text: "hi" }));\n')
    done = run_cli("exec", "--tools", "fixtures_tools:TOOLS", str(script))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Script completed\nWall time ")
    assert done.stdout.endswith("Output:\n\n5\nHI\n")


@pytest.mark.integration
def test_a_failing_script_from_stdin_exits_non_zero_with_the_error() -> None:
    done = run_cli("exec", "-", stdin='text("before");\nthrow new Error("boom");\n')
    assert done.returncode == 1
    assert done.stdout.startswith("Script failed\n")
    assert "before\nScript error:\nError: boom\n    at exec_main.mjs:2:7" in done.stdout


@pytest.mark.integration
def test_a_yielding_script_is_waited_for_and_each_observation_printed() -> None:
    source = (
        '// @exec: {"yield_time_ms": 50}\ntext("one");\nawait new Promise((r) => setTimeout(r, 300));\ntext("two");\n'
    )
    done = run_cli("exec", "-", stdin=source)
    assert done.returncode == 0, done.stderr
    assert "Script running with cell ID 1" in done.stdout
    assert done.stdout.index("one") < done.stdout.index("Script completed") < done.stdout.index("two")


@pytest.mark.integration
def test_json_output_is_the_responses_api_format() -> None:
    done = run_cli("exec", "--json", "-", stdin="text(1)")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith('[{"type": "input_text", "text": "Script completed')


@pytest.mark.integration
def test_a_bad_tools_option_is_a_usage_error() -> None:
    done = run_cli("exec", "--tools", "no_such_module:TOOLS", "-", stdin="text(1)")
    assert done.returncode == 2
    assert "cannot import 'no_such_module'" in done.stderr


@pytest.mark.integration
def test_a_pragma_error_is_reported_without_a_cell() -> None:
    done = run_cli("exec", "-", stdin='// @exec: {"nope": 1}\ntext(1)')
    assert done.returncode == 1
    assert done.stdout.strip() == "exec pragma only supports `yield_time_ms` and `max_output_tokens`; got `nope`"


@pytest.mark.integration
def test_lone_surrogates_print_as_replacement_characters() -> None:
    done = run_cli("exec", "-", stdin='text("a\\ud800b")')
    assert done.returncode == 0, done.stderr
    assert done.stdout.endswith("Output:\n\na\ufffdb\n")


@pytest.mark.integration
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


@pytest.mark.integration
def test_notify_texts_go_to_stderr_as_they_happen_and_stdout_is_unchanged(tmp_path: Path) -> None:
    """The script notifies, then waits for a file the test creates only once stderr showed
    the text: so it was printed while the script ran, not at the end."""
    (tmp_path / "gate_tools.py").write_text(
        "import asyncio, pathlib\n\n"
        "async def gate(path: str) -> str:\n"
        '    """Wait until a file exists."""\n'
        "    while not pathlib.Path(path).exists():\n"
        "        await asyncio.sleep(0.02)\n"
        '    return "open"\n'
    )
    gate = tmp_path / "gate"
    script = f'notify("first\\nof two lines"); text(await tools.gate({{ path: {str(gate)!r} }})); notify("last")'
    with subprocess.Popen(
        [sys.executable, "-m", "codemode", "exec", "--tools", "gate_tools:gate", "-"],
        cwd=tmp_path, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    ) as process:  # fmt: skip
        assert process.stdin is not None and process.stdout is not None and process.stderr is not None
        process.stdin.write(script)
        process.stdin.close()
        try:
            assert process.stderr.readline() == "notify: first\n"
            assert process.stderr.readline() == "of two lines\n"
        finally:
            gate.touch()  # (also lets a failing run end)
        stderr, stdout = process.stderr.read(), process.stdout.read()
        assert process.wait(timeout=60) == 0, stderr
    assert stderr == "notify: last\n"
    assert stdout.startswith("Script completed\nWall time ") and stdout.endswith("Output:\n\nopen\n")
    assert "first" not in stdout and "last" not in stdout


ADD = "text(await tools.add({ a: 2, b: 3 }))"


@pytest.mark.integration
def test_tools_given_as_a_file_path_load_from_any_working_directory(tmp_path: Path) -> None:
    done = run_cli("exec", "--tools", f"{TESTS / 'fixtures_tools.py'}:TOOLS", "-", stdin=ADD, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.endswith("Output:\n\n5\n")


def test_help_lists_both_commands_with_one_line_descriptions() -> None:
    shown = CliRunner().invoke(cli.main, ["--help"], terminal_width=200).output
    commands = shown.split("Commands:\n", 1)[1].splitlines()
    assert commands == [
        "  exec  Run a script as a model's exec call and print what the model would read.",
        "  mcp   Serve code mode (the tools exec and wait) over MCP, stdio or HTTP.",
    ]


def test_both_commands_spell_their_shared_options_alike() -> None:
    def options(command: str) -> set[str]:
        return {
            name
            for param in cli.main.commands[command].params
            if not getattr(param, "hidden", False)
            for name in param.opts
        }

    shared = options("exec") & options("mcp")
    assert {
        "--tools",
        "--mcp-config",
        "--isolation",
        "--cell-time-limit-ms",
        "--exec-yield-time-ms",
        "--wait-yield-time-ms",
        "--max-output-tokens",
    } <= shared
    assert "--config" not in options("mcp") and "--yield-time-ms" not in options("exec")


class ServedWith:
    """Stands in for `serve_stdio`: keeps the tools and CodeMode keywords it was given."""

    def __init__(self) -> None:
        self.options: dict[str, Any] = {}

    def __call__(self, tools: list[Any], **options: Any) -> Any:
        self.options = {"tools": tools, **options}

        async def serve() -> None:
            return None

        return serve()


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> ServedWith:
    from codemode import _gc, mcp_server

    spy = ServedWith()
    monkeypatch.setattr(mcp_server, "serve_stdio", spy)
    monkeypatch.setattr(_gc, "settle_for_serving", lambda: None)
    return spy


def test_flags_become_the_sessions_limits_and_defaults(served: ServedWith) -> None:
    flags = [
        "--cell-time-limit-ms",
        "5000",
        "--max-concurrent-cells",
        "3",
        "--heap-limit-bytes",
        "1048576",
        "--exec-yield-time-ms",
        "250",
        "--wait-yield-time-ms",
        "750",
        "--max-output-tokens",
        "99",
    ]
    done = CliRunner().invoke(cli.main, ["mcp", *flags])
    assert done.exit_code == 0, done.output
    assert served.options["limits"] == Limits(cell_time_limit_ms=5000, max_concurrent_cells=3, heap_limit_bytes=1 << 20)
    assert served.options["defaults"] == Defaults(exec_yield_time_ms=250, wait_yield_time_ms=750, max_output_tokens=99)


def test_the_old_config_spelling_works_for_one_release_with_a_deprecation_note(
    served: ServedWith, tmp_path: Path
) -> None:
    config = tmp_path / "servers.json"
    config.write_text('{"mcpServers": {}}')
    done = CliRunner().invoke(cli.main, ["mcp", "--config", str(config)])
    assert done.exit_code == 0, done.output
    assert served.options["mcp_servers"] == str(config)
    assert "deprecated. Use --mcp-config; it goes away in the next release." in done.output
    assert "--config" not in CliRunner().invoke(cli.main, ["mcp", "--help"]).output.replace("--mcp-config", "")


def test_the_old_yield_time_spelling_of_exec_works_for_one_release(monkeypatch: pytest.MonkeyPatch) -> None:
    given: dict[str, Any] = {}

    def stop_here(**options: Any) -> Any:
        given.update(options)
        raise SystemExit(0)

    monkeypatch.setattr(cli, "codemode_options", stop_here)
    done = CliRunner().invoke(cli.main, ["exec", "--yield-time-ms", "40", "-"], input="text(1)")
    assert done.exit_code == 0, done.output
    assert given["exec_yield_time_ms"] == 40
    assert "deprecated. Use --exec-yield-time-ms" in done.output


def test_importing_the_cli_loads_neither_the_session_nor_the_server_stack() -> None:
    code = "import sys, codemode.cli; print(sorted({m.split('.')[0] for m in sys.modules} & {'starlette', 'mcp', 'uvicorn'}), 'codemode._session.session' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.split() == ["[]", "False"], done.stderr


def test_media_prints_as_its_type_and_decoded_size() -> None:
    png = "data:image/png;base64," + "A" * 8192  # 6144 bytes
    items = [TextItem("before"), ImageItem(png, "auto")]
    assert cli.render_items(items) == "before\n[image <image/png, 6.0 KB>, detail auto]"
