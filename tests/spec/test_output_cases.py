"""What the model reads for real cells: header, items, `Script error:` item, truncation, and the
error texts of failed scripts (spec 2.2, 2.4, 2.7; section 9 cases 21, 23, 25, 55-58)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from codemode import AudioItem, CodeMode, ImageItem, SyncCodeMode, TextItem
from codemode._output import model_items

from ._support import model_texts, texts

HEADER = re.compile(r"^Script (completed|failed|terminated|running with cell ID \d+)\nWall time \d+\.\d seconds\nOutput:\n$")


@pytest.fixture(scope="module")
def shared() -> Iterator[SyncCodeMode]:
    """One session for the stateless table cases (it runs its own event-loop thread)."""
    with SyncCodeMode() as session:
        yield session


def status_line(text: str) -> str:
    assert HEADER.match(text), text
    return text.split("\n", 1)[0]


# -- header and items (spec 2.2) --------------------------------------------------------------------


async def test_completed_text_output(cm: CodeMode) -> None:
    result = await cm.exec('text("a");')
    model = model_texts(result)
    assert [status_line(model[0]), *model[1:]] == ["Script completed", "a"]
    assert model[0] == "Script completed\nWall time 0.0 seconds\nOutput:\n" or HEADER.match(model[0])


async def test_no_output_is_just_the_header(cm: CodeMode) -> None:
    result = await cm.exec("const x = 1;")
    model = model_items(result)
    assert len(model) == 1 and isinstance(model[0], TextItem)
    assert status_line(model[0].text) == "Script completed"


async def test_case21_model_output(cm: CodeMode) -> None:
    model = model_texts(await cm.exec('text("before"); exit(); text("after");'))
    assert [status_line(model[0]), *model[1:]] == ["Script completed", "before"]


async def test_case23_model_items_keep_media(cm: CodeMode) -> None:
    result = await cm.exec(
        'text("first"); image("data:image/png;base64,AAA"); audio("data:audio/wav;base64,YXVkaW8="); notify("ping");'
    )
    model = model_items(result)
    assert [type(item) for item in model] == [TextItem, TextItem, ImageItem, AudioItem]
    assert model[2] == ImageItem("data:image/png;base64,AAA", "high")
    assert model[3] == AudioItem("data:audio/wav;base64,YXVkaW8=")


async def test_case25_model_output(cm: CodeMode) -> None:
    result = await cm.exec("const c = {}; c.self = c; text(c);")
    model = model_texts(result)
    assert len(model) == 2 and status_line(model[0]) == "Script failed"
    assert model[1].startswith("Script error:\nTypeError: Converting circular structure to JSON")


async def test_case57_output_before_a_crash_is_kept(cm: CodeMode) -> None:
    result = await cm.exec('text("before crash");\ntext("still before crash");\nthrow new Error("boom");')
    assert result.status == "failed"
    model = model_texts(result)
    assert len(model) == 4
    assert status_line(model[0]) == "Script failed"
    assert model[1:3] == ["before crash", "still before crash"]
    assert re.fullmatch(r"Script error:\nError: boom\n(    at [^\n]+\n?)+", model[3]), model[3]
    assert model[3] == "Script error:\nError: boom\n    at exec_main.mjs:3:7"


# -- truncation (cases 55, 56, 58) ---------------------------------------------------------------------


async def test_case55_exec_budget_truncates(cm: CodeMode) -> None:
    result = await cm.exec('// @exec: {"max_output_tokens": 5}\ntext("0123456789012345678901234567890123456789");')
    model = model_texts(result)
    assert status_line(model[0]) == "Script completed"
    assert model[1:] == [
        "Warning: truncated output (original token count: 10)\nTotal output lines: 1\n\n0123456789…5 tokens truncated…0123456789"
    ]


async def test_exec_keyword_budget_and_pragma_precedence(cm: CodeMode) -> None:
    code = 'text("0123456789012345678901234567890123456789");'
    assert model_texts(await cm.exec(code, max_output_tokens=5))[1].startswith("Warning: truncated output")
    pragma = '// @exec: {"max_output_tokens": 100}\n' + code
    assert model_texts(await cm.exec(pragma, max_output_tokens=5))[1] == "0123456789" * 4


async def test_case56_wait_budget_is_its_own(cm: CodeMode) -> None:
    code = (
        '// @exec: {"yield_time_ms": 60000, "max_output_tokens": 100}\n'
        'text("phase 1"); yield_control();\n'
        'await new Promise((r) => setTimeout(r, 20));\n'
        'text("token one token two token three token four token five token six token seven");'
    )
    first = await cm.exec(code)
    assert model_texts(first)[1:] == ["phase 1"]
    final = await cm.wait("1", max_tokens=6)
    model = model_texts(final)
    assert status_line(model[0]) == "Script completed"
    assert len(model) == 2
    assert re.fullmatch(
        r"Warning: truncated output \(original token count: \d+\)\nTotal output lines: 1\n\n.*…\d+ tokens truncated….*",
        model[1],
        re.S,
    ), model[1]


async def test_case58_audio_that_does_not_fit_is_omitted(cm: CodeMode) -> None:
    result = await cm.exec(f'// @exec: {{"max_output_tokens": 5}}\naudio("data:audio/wav;base64,{"A" * 100}");')
    assert model_texts(result)[1:] == ["[omitted 1 audio items ...]"]


async def test_error_item_counts_against_the_budget(cm: CodeMode) -> None:
    result = await cm.exec('// @exec: {"max_output_tokens": 3}\nthrow new Error("a rather long error message");')
    model = model_texts(result)
    assert status_line(model[0]) == "Script failed"
    assert model[1].startswith("Warning: truncated output (original token count: ")


# -- error texts (spec 2.7) ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "error"),
    [
        ('throw new Error("boom");', "Error: boom\n    at exec_main.mjs:1:7"),
        ('text(1);\n\n\n  throw new Error("boom");', "Error: boom\n    at exec_main.mjs:4:9"),
        ('// @exec: {"yield_time_ms": 5000}\ntext(1);\nthrow new Error("boom");', "Error: boom\n    at exec_main.mjs:2:7"),
        ('  // @exec: {}\nthrow new Error("boom");', "Error: boom\n    at exec_main.mjs:1:7"),
        ('function f() {\n  throw new Error("deep");\n}\nf();', "Error: deep\n    at f (exec_main.mjs:2:9)\n    at exec_main.mjs:4:1"),
        (
            'async function f() {\n  await null;\n  throw new Error("later");\n}\nawait f();',
            "Error: later\n    at f (exec_main.mjs:3:9)\n    at async exec_main.mjs:5:1",
        ),
        ('await null;\nthrow new TypeError("after await");', "TypeError: after await\n    at exec_main.mjs:2:7"),
        ('await Promise.reject(new RangeError("r"));', "RangeError: r\n    at exec_main.mjs:1:22"),
        ("missing_name;", "ReferenceError: missing_name is not defined\n    at exec_main.mjs:1:1"),
        ("null.x;", "TypeError: Cannot read properties of null (reading 'x')\n    at exec_main.mjs:1:6"),
        ('throw "plain string";', "plain string"),
        ("throw {};", "[object Object]"),
        ("throw 42;", "42"),
        ("throw null;", "null"),
        ("throw undefined;", "undefined"),
        ('throw Object.assign(new Error("m"), { stack: 5 });', "Error: m"),
        ('throw { stack: "custom stack" };', "custom stack"),
        ("await Promise.reject('rejected');", "rejected"),
        ("class E extends Error {}\nthrow new E('sub');", "Error: sub\n    at exec_main.mjs:2:7"),
    ],
)
def test_script_error_texts(shared: SyncCodeMode, code: str, error: str) -> None:
    result = shared.exec(code)
    assert (result.status, result.error) == ("failed", error)


@pytest.mark.parametrize(
    ("code", "error"),
    [
        # The reference's two lines, then the offending line with carets under V8's token.
        ("let x = ;", "SyntaxError: Unexpected token ';'\n    at exec_main.mjs:1:9\n    1 | let x = ;\n      |         ^"),
        (
            'text("a");\ntext("b");\nlet x = ;',
            "SyntaxError: Unexpected token ';'\n    at exec_main.mjs:3:9\n    3 | let x = ;\n      |         ^",
        ),
        (
            '// @exec: {"max_output_tokens": 100}\n\nlet x = ;',
            "SyntaxError: Unexpected token ';'\n    at exec_main.mjs:2:9\n    2 | let x = ;\n      |         ^",
        ),
        (
            "const a = 1;\nconst a = 2;",
            "SyntaxError: Identifier 'a' has already been declared\n    at exec_main.mjs:2:7\n    2 | const a = 2;\n"
            "      |       ^",
        ),
        (
            "text('unterminated);",
            "SyntaxError: Invalid or unexpected token\n    at exec_main.mjs:1:6\n    1 | text('unterminated);\n"
            "      |      ^^^^^^^^^^^^^^^",
        ),
    ],
)
def test_syntax_errors_fail_before_any_output(shared: SyncCodeMode, code: str, error: str) -> None:
    result = shared.exec(code)
    assert (result.status, result.items, result.error) == ("failed", (), error)


async def test_error_thrown_from_a_callback_inside_a_helper(cm: CodeMode) -> None:
    result = await cm.exec('text({ toJSON() { throw new Error("in toJSON"); } });')
    assert result.error is not None
    lines = result.error.split("\n")
    assert lines[0] == "Error: in toJSON"
    assert lines[1] == "    at Object.toJSON (exec_main.mjs:1:25)"
    assert lines[-1] == "    at exec_main.mjs:1:1"
    assert not any("codemode" in line or "prelude" in line for line in lines)


async def test_caught_stack_shows_only_user_frames(cm: CodeMode) -> None:
    code = 'function g() {\n  return new Error("s").stack;\n}\ntext(g());\nawait null;\ntext(new Error("t").stack);'
    first, second = texts(await cm.exec(code))
    assert first.split("\n") == ["Error: s", "    at g (exec_main.mjs:2:10)", "    at exec_main.mjs:4:6"]
    assert second.split("\n") == ["Error: t", "    at exec_main.mjs:6:6"]


# -- volume (the output channel) ---------------------------------------------------------------------


async def test_large_and_many_items_arrive_complete_and_in_order(cm: CodeMode) -> None:
    code = (
        'text("x".repeat(3_000_000));\n'
        "for (let i = 0; i < 20000; i++) text(String(i));\n"
        'text("é😀".repeat(200_000));'
    )
    result = await cm.exec(code)
    assert result.status == "completed"
    out = texts(result)
    assert len(out) == 20002
    assert out[0] == "x" * 3_000_000
    assert out[1:20001] == [str(i) for i in range(20000)]
    assert out[-1] == "é😀" * 200_000


async def test_output_of_a_busy_cell_arrives_while_it_runs(cm: CodeMode) -> None:
    code = (
        '// @exec: {"yield_time_ms": 200}\n'
        'for (let i = 0; i < 1000; i++) text(`item ${i} ${"y".repeat(300)}`);\n'
        "while (true) {}"
    )
    expected = [f"item {i} {'y' * 300}" for i in range(1000)]
    first = await cm.exec(code)
    assert first.status == "running"
    seen = texts(first)
    # The script never goes idle, yet all of its output arrives while it runs. (A slow machine
    # may still be inside the loop at the first yield, so keep waiting, up to a liveness bound.)
    for _ in range(100):
        if len(seen) >= len(expected):
            break
        more = await cm.wait("1", yield_time_ms=200)
        assert more.status == "running"
        seen += texts(more)
    stopped = await cm.wait("1", terminate=True)
    seen += texts(stopped)
    # About 0.6 MB: it fits the engine's output ring, which the host reads while the script
    # is busy. (Output beyond the ring waits for the script to be idle.)
    assert seen == expected
