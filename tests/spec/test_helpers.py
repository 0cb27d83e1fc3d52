"""The script's helper globals (spec 2.3, 2.5, 2.8, 3.4, 4.5, 4.6, 6; section 9 cases 21-39).

Every case runs on the real engine. Helper errors are thrown as plain strings, so an uncaught
one becomes the cell's error text verbatim, and a caught one is a string (`e.message` is
undefined).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest

from codemode import CodeMode, ExecResult, Notification, SyncCodeMode
from codemode._output import model_items

from ._support import MakeCodeMode, model_texts, texts

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8/5+hHgAHggJ/PchI7wAAAABJRU5ErkJggg=="
IMAGE_GENERIC = (
    "image expects a non-empty image URL string, an object with image_url and optional detail, "
    "or a raw MCP image block"
)
IMAGE_INVALID = "Tool call failed: invalid image output. Pass a base64 data URI instead"
IMAGE_REMOTE = (
    "Tool call failed: remote image URLs are not supported in tool outputs. Pass a base64 data URI instead"
)
DETAIL_NOT_STRING = "image detail must be a string when provided"
DETAIL_INVALID = "image detail must be one of: auto, low, high, original"
AUDIO_GENERIC = "audio expects a non-empty audio URL string, an object with audio_url, or a raw MCP audio block"
AUDIO_INVALID = "Tool call failed: invalid audio output. Pass a base64 data URI instead"
FORWARD_GENERIC = (
    "forward_output expects a direct tool output with `content` or `content_items`, a text/image "
    "content item, an image_url object, or a string output"
)


@pytest.fixture(scope="module")
def shared() -> Iterator[SyncCodeMode]:
    """One session for the stateless table cases (it runs its own event-loop thread)."""
    with SyncCodeMode() as session:
        yield session


def s_completed(session: SyncCodeMode, code: str) -> list[str]:
    result = session.exec(code)
    assert (result.status, result.error) == ("completed", None)
    return texts(result)


def s_failure(session: SyncCodeMode, code: str) -> ExecResult:
    result = session.exec(code)
    assert result.status == "failed", texts(result)
    return result


def s_caught(session: SyncCodeMode, statement: str) -> str:
    out = s_completed(session, _catching(statement))
    assert out[0] == "string", out
    return out[1]


def _catching(statement: str) -> str:
    return (
        f"try {{ {statement}; text('no error') }} "
        "catch (e) { text(typeof e); text(e?.message === undefined ? String(e) : 'has message') }"
    )


async def completed(cm: CodeMode, code: str) -> list[str]:
    result = await cm.exec(code)
    assert (result.status, result.error) == ("completed", None)
    return texts(result)


async def failure(cm: CodeMode, code: str) -> ExecResult:
    result = await cm.exec(code)
    assert result.status == "failed", texts(result)
    return result


async def caught(cm: CodeMode, statement: str) -> str:
    """Run `statement`, expecting it to throw a plain string; return that string."""
    out = await completed(cm, _catching(statement))
    assert out[0] == "string", out
    return out[1]


# -- exit (case 21, spec 2.8) -------------------------------------------------------------------


async def test_case21_exit_stops_the_script_successfully(cm: CodeMode) -> None:
    result = await cm.exec('text("before"); exit(); text("after");')
    assert (result.status, texts(result), result.error) == ("completed", ["before"], None)
    assert result.ok
    assert len(model_items(result)) == 2
    assert model_texts(result)[0].startswith("Script completed\n")


async def test_exit_after_await_completes_successfully(cm: CodeMode) -> None:
    code = 'text("a"); await new Promise((r) => setTimeout(r, 1)); exit(); text("b");'
    assert await completed(cm, code) == ["a"]


async def test_exit_inside_awaited_async_function(cm: CodeMode) -> None:
    code = 'async function f() { await null; text("in"); exit(); }\nawait f(); text("after");'
    assert await completed(cm, code) == ["in"]


async def test_exit_caught_by_try_is_swallowed(cm: CodeMode) -> None:
    # Quirk of the reference (spec 2.8): a try/catch around exit() swallows it.
    assert await completed(cm, 'try { exit(); } catch (e) {}\ntext("after");') == ["after"]


async def test_exit_in_a_timer_callback_completes_the_cell(cm: CodeMode) -> None:
    # Deviation (spec 2.8 quirk): the reference reports `__codex_code_mode_exit__` as a failure
    # here; codemode ends the cell successfully, as exit() does everywhere else.
    code = 'text("a");\nsetTimeout(() => { text("b"); exit(); text("c"); }, 1);\nawait new Promise(() => {});'
    assert await completed(cm, code) == ["a", "b"]


async def test_exit_in_detached_promise_does_nothing(cm: CodeMode) -> None:
    code = 'Promise.resolve().then(() => exit()).catch(() => {});\nawait null; await null; text("after");'
    assert await completed(cm, code) == ["after"]


# -- globals that must be missing (case 22) -----------------------------------------------------


async def test_case22_console_is_not_a_global(cm: CodeMode) -> None:
    assert await completed(cm, 'text(String(Object.hasOwn(globalThis, "console")))') == ["false"]


# -- helpers return undefined, notify adds no item (case 23) ------------------------------------


async def test_case23_helpers_return_undefined_in_call_order(cm: CodeMode) -> None:
    code = (
        'const r = [text("first"), image("data:image/png;base64,AAA"), '
        'audio("data:audio/wav;base64,YXVkaW8="), notify("ping")].map((v) => v === undefined);\n'
        "text(JSON.stringify(r));"
    )
    assert await completed(cm, code) == [
        "first",
        "image:data:image/png;base64,AAA:high",
        "audio:data:audio/wav;base64,YXVkaW8=",
        "[true,true,true,true]",
    ]
    assert cm.notifications == [Notification("1", "ping")]


async def test_remaining_helpers_return_undefined(cm: CodeMode) -> None:
    code = (
        'const r = [store("k", 1), forward_output("x"), clearTimeout(1), '
        'generatedImage({image_url: "data:image/png;base64,AAA"})];\n'
        "text(JSON.stringify(r.map((v) => v === undefined)));"
    )
    out = await completed(cm, code)
    assert out[-1] == "[true,true,true,true]"


# -- text() stringification (cases 24, 25; spec 2.3) -------------------------------------------


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("", "undefined"),
        ("undefined", "undefined"),
        ("null", "null"),
        ("true", "true"),
        ("false", "false"),
        ("12n", "12"),
        ("-0", "0"),
        ("1.5", "1.5"),
        ("1e21", "1e+21"),
        ("NaN", "NaN"),
        ("Infinity", "Infinity"),
        ('"plain"', "plain"),
        ('""', ""),
        ("{ json: true }", '{"json":true}'),  # case 24
        ("[1, 'a', null, undefined]", '[1,"a",null,null]'),
        ("{ a: NaN, b: undefined, c: Infinity }", '{"a":null,"c":null}'),
        ("{ toJSON() { return 'custom'; } }", '"custom"'),
        ('new Date("2025-01-02T03:04:05Z")', '"2025-01-02T03:04:05.000Z"'),
        ("new Map([[1, 2]])", "{}"),
        ("() => 1", "() => 1"),
        ("function named() { return 2; }", "function named() { return 2; }"),
        ("new String('boxed')", '"boxed"'),
        ("{ nested: { deep: [1, { x: 'y' }] } }", '{"nested":{"deep":[1,{"x":"y"}]}}'),
    ],
)
def test_text_stringification(shared: SyncCodeMode, expression: str, expected: str) -> None:
    assert s_completed(shared, f"text({expression});") == [expected]


async def test_case25_text_of_circular_value_fails_the_cell(cm: CodeMode) -> None:
    result = await failure(cm, "const c = {}; c.self = c; text(c);")
    assert result.items == ()
    assert result.error is not None and "Converting circular structure to JSON" in result.error
    assert result.status == "failed"
    assert len(model_items(result)) == 2


async def test_text_of_bigint_inside_object_throws_a_string(cm: CodeMode) -> None:
    message = await caught(cm, "text({ n: 1n })")
    assert "BigInt" in message


async def test_text_keeps_unicode_and_replaces_lone_surrogates(cm: CodeMode) -> None:
    assert await completed(cm, r'text("héllo 😀"); text("\ud800");') == ["héllo 😀", "\ufffd"]


async def test_text_output_is_never_repeated_across_observations(cm: CodeMode) -> None:
    first = await cm.exec('// @exec: {"yield_time_ms": 60000}\ntext("a"); yield_control(); text("b");')
    assert (first.status, texts(first)) == ("running", ["a"])
    assert first.cell_id is not None
    second = await cm.wait(first.cell_id)
    assert (second.status, texts(second)) == ("completed", ["b"])


# -- notify (spec 2.5) --------------------------------------------------------------------------


async def test_notify_reaches_the_callback_and_the_list(make_cm: MakeCodeMode) -> None:
    received: list[tuple[str, str]] = []

    def on_notify(cell_id: str, text: str) -> None:
        received.append((cell_id, text))

    session = await make_cm(on_notify=on_notify)
    result = await session.exec('notify("code_mode_notify_marker"); notify({ a: 1 }); text("done");')
    assert (result.status, texts(result)) == ("completed", ["done"])
    assert received == [("1", "code_mode_notify_marker"), ("1", '{"a":1}')]
    assert session.notifications == [Notification("1", "code_mode_notify_marker"), Notification("1", '{"a":1}')]


async def test_async_notify_callback_is_awaited_before_the_result(make_cm: MakeCodeMode) -> None:
    delivered: list[str] = []

    async def on_notify(cell_id: str, text: str) -> None:
        await asyncio.sleep(0.05)
        delivered.append(text)

    session = await make_cm(on_notify=on_notify)
    result = await session.exec('notify("slow"); text("done");')
    assert (result.status, texts(result)) == ("completed", ["done"])
    assert delivered == ["slow"]


@pytest.mark.parametrize("value", ['""', '"   \\n\\t"', "''"])
def test_notify_rejects_empty_text(shared: SyncCodeMode, value: str) -> None:
    assert s_caught(shared, f"notify({value})") == "notify expects non-empty text"


async def test_notify_uncaught_error_fails_the_cell_verbatim(cm: CodeMode) -> None:
    result = await failure(cm, 'text("x"); notify("");')
    assert (texts(result), result.error) == (["x"], "notify expects non-empty text")


# -- store / load (cases 26, 27; spec 3.4) -------------------------------------------------------


async def test_case26_stored_values_are_shared_per_session(make_cm: MakeCodeMode) -> None:
    session_a = await make_cm()
    session_b = await make_cm()
    assert await completed(session_a, 'store("key", "visible");') == []
    second = await session_a.exec('text(String(load("key")));')
    assert (second.cell_id, texts(second)) == ("2", ["visible"])
    other = await session_b.exec('text(String(load("key")));')
    assert (other.cell_id, texts(other)) == ("1", ["undefined"])
    assert session_a.stored_values == {"key": "visible"}
    assert session_b.stored_values == {}


async def test_case27_store_round_trips_json(cm: CodeMode) -> None:
    await completed(cm, 'store("nb", { title: "Notebook", items: [1, true, null] });')
    out = await completed(cm, 'text(JSON.stringify(load("nb")));')
    assert out == ['{"title":"Notebook","items":[1,true,null]}']
    assert cm.stored_values == {"nb": {"title": "Notebook", "items": [1, True, None]}}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("NaN", "null"),
        ("[Infinity, -Infinity]", "[null,null]"),
        ('new Date("2025-01-02T03:04:05Z")', '"2025-01-02T03:04:05.000Z"'),
        ("new Map([[1, 2]])", "{}"),
        ("new Set([1])", "{}"),
        ("{ a: undefined, b: () => 1, c: 1 }", '{"c":1}'),
        ("null", "null"),
        ('"s"', '"s"'),
        ("0", "0"),
        ("{ toJSON() { return [1]; } }", "[1]"),
    ],
)
async def test_store_uses_json_semantics(cm: CodeMode, value: str, expected: str) -> None:
    assert await completed(cm, f'store("k", {value}); text(JSON.stringify(load("k")));') == [expected]
    # The committed value is the same JSON.
    assert cm.stored_values == {"k": json.loads(expected)}


async def test_store_coerces_keys_to_strings(cm: CodeMode) -> None:
    code = 'store(1, "one"); store(null, "n"); text(load("1")); text(load(1)); text(load("null"));'
    assert await completed(cm, code) == ["one", "one", "n"]
    assert cm.stored_values == {"1": "one", "null": "n"}


@pytest.mark.parametrize(
    ("value", "key", "message"),
    [
        ("undefined", '"k"', 'Unable to store "k". Only plain serializable objects can be stored.'),
        ("() => 1", '"k"', 'Unable to store "k". Only plain serializable objects can be stored.'),
        ("Symbol('s')", '"k"', 'Unable to store "k". Only plain serializable objects can be stored.'),
        ("undefined", "'a\"b'", 'Unable to store "a\\"b". Only plain serializable objects can be stored.'),
    ],
)
async def test_store_rejects_unserializable_values(cm: CodeMode, value: str, key: str, message: str) -> None:
    assert await caught(cm, f"store({key}, {value})") == message
    assert cm.stored_values == {}


async def test_store_of_circular_value_throws_the_stringify_error(cm: CodeMode) -> None:
    message = await caught(cm, "const c = {}; c.c = c; store('k', c)")
    assert "Converting circular structure to JSON" in message


async def test_store_and_load_key_conversion_errors(cm: CodeMode) -> None:
    bad_key = "{ toString() { throw new Error('no'); } }"
    assert await caught(cm, f"store({bad_key}, 1)") == "store key must be a string"
    assert await caught(cm, f"load({bad_key})") == "load key must be a string"


async def test_load_returns_a_fresh_copy_or_undefined(cm: CodeMode) -> None:
    code = (
        'store("o", { list: [1] });\n'
        'const a = load("o"); a.list.push(2);\n'
        'text(JSON.stringify(load("o"))); text(String(load("o") === load("o"))); text(String(load("missing")));'
    )
    assert await completed(cm, code) == ['{"list":[1]}', "false", "undefined"]


async def test_own_writes_are_visible_before_completion(cm: CodeMode) -> None:
    assert await completed(cm, 'store("k", 1); store("k", 2); text(load("k"));') == ["2"]
    assert cm.stored_values == {"k": 2}


async def test_failed_cell_still_commits_its_writes(cm: CodeMode) -> None:
    result = await failure(cm, 'store("k", "kept"); throw new Error("boom");')
    assert result.error is not None and result.error.startswith("Error: boom")
    assert cm.stored_values == {"k": "kept"}


async def test_cell_sees_a_snapshot_taken_at_its_start(cm: CodeMode) -> None:
    await completed(cm, 'store("k", "old");')
    slow = await cm.exec('// @exec: {"yield_time_ms": 60000}\nyield_control();\n'
                         'await new Promise((r) => setTimeout(r, 200));\ntext(load("k"));')
    assert slow.status == "running" and slow.cell_id is not None
    await completed(cm, 'store("k", "new");')
    done = await cm.wait(slow.cell_id)
    assert (done.status, texts(done)) == ("completed", ["old"])
    # The slow cell wrote nothing, so the newer value stays.
    assert cm.stored_values == {"k": "new"}


# -- images (cases 30-35, 39; spec 4.5) ---------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        ('image("data:image/png;base64,AAA")', "image:data:image/png;base64,AAA:high"),
        ('image("DATA:image/png;base64,AAA")', "image:DATA:image/png;base64,AAA:high"),
        ('image("data:image/png;base64,AAA", "LOW")', "image:data:image/png;base64,AAA:low"),
        ('image("data:image/png;base64,AAA", null)', "image:data:image/png;base64,AAA:high"),
        ('image("data:image/png;base64,AAA", "auto")', "image:data:image/png;base64,AAA:auto"),
        ('image({ image_url: "data:image/png;base64,AAA" })', "image:data:image/png;base64,AAA:high"),
        ('image({ image_url: "data:image/png;base64,AAA", detail: null })', "image:data:image/png;base64,AAA:high"),
        # case 31
        ('image({ image_url: "data:image/png;base64,AAA", detail: "high" }, "original")',
         "image:data:image/png;base64,AAA:original"),
        ('image({ image_url: "data:image/png;base64,AAA", detail: "low" })', "image:data:image/png;base64,AAA:low"),
        ('image({ type: "image", data: "AAA", mimeType: "image/png", _meta: { "codex/imageDetail": "original" } }, "high")',
         "image:data:image/png;base64,AAA:high"),
        # MCP blocks (case 30)
        (f'image({{ type: "image", data: "{PNG}", mimeType: "image/png", _meta: {{ "codex/imageDetail": "original" }} }})',
         f"image:data:image/png;base64,{PNG}:original"),
        ('image({ type: "image", data: "AAA", mime_type: "image/jpeg" })', "image:data:image/jpeg;base64,AAA:high"),
        ('image({ type: "image", data: "AAA" })', "image:data:application/octet-stream;base64,AAA:high"),
        ('image({ type: "image", data: "data:image/gif;base64,R0" })', "image:data:image/gif;base64,R0:high"),
        ('image({ type: "image", data: "AAA", mimeType: "image/png", _meta: { "codex/imageDetail": "huge" } })',
         "image:data:image/png;base64,AAA:high"),
        ('image({ type: "image", data: "AAA", mimeType: "image/png", _meta: { "codex/imageDetail": "low" } })',
         "image:data:image/png;base64,AAA:low"),
    ],
)
def test_image_items(shared: SyncCodeMode, call: str, expected: str) -> None:
    assert s_completed(shared, call) == [expected]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ("image()", IMAGE_GENERIC),
        ("image(undefined)", IMAGE_GENERIC),
        ("image(null)", IMAGE_GENERIC),
        ("image(5)", IMAGE_GENERIC),
        ("image([])", IMAGE_GENERIC),
        ('image(["data:image/png;base64,AAA"])', IMAGE_GENERIC),
        ('image("")', IMAGE_GENERIC),
        ("image({})", IMAGE_GENERIC),
        ("image({ type: 5 })", IMAGE_GENERIC),
        ("image({ image_url: 5 })", IMAGE_GENERIC),
        ('image({ image_url: "" })', IMAGE_GENERIC),
        # case 35: a whole CallToolResult is not an image block
        ('image({ content: [{ type: "image", data: "AAA", mimeType: "image/png" }], isError: false })', IMAGE_GENERIC),
        # case 32
        ('image("https://example.com/image.jpg")', IMAGE_REMOTE),
        ('image("http://example.com/image.jpg")', IMAGE_REMOTE),
        ('image("HTTPS://example.com/image.jpg")', IMAGE_REMOTE),
        ('image({ image_url: "https://example.com/image.jpg" })', IMAGE_REMOTE),
        ('generatedImage({ image_url: "https://example.com/image.jpg" })', IMAGE_REMOTE),
        # case 33
        ('image("Error executing tool exec: boom", "original")', IMAGE_INVALID),
        ('generatedImage({ image_url: "Error executing tool exec: boom" })', IMAGE_INVALID),
        ('image("ftp://example.com/a.png")', IMAGE_INVALID),
        ('image("file:///tmp/a.png")', IMAGE_INVALID),
        # case 34 and the detail rules
        ('image({ image_url: "data:image/png;base64,AAA", detail: "medium" })', DETAIL_INVALID),
        ('image("data:image/png;base64,AAA", "medium")', DETAIL_INVALID),
        ('image("data:image/png;base64,AAA", 5)', DETAIL_NOT_STRING),
        ('image({ image_url: "data:image/png;base64,AAA", detail: 5 })', DETAIL_NOT_STRING),
        ('image({ type: "image", data: "AAA" }, {})', DETAIL_NOT_STRING),
        # MCP blocks
        ('image({ type: "text", text: "hi" })', 'image only accepts MCP image blocks, got "text"'),
        ('image({ type: "audio", data: "AAA" })', 'image only accepts MCP image blocks, got "audio"'),
        ('image({ type: "image" })', "image expected MCP image data"),
        ('image({ type: "image", data: "" })', "image expected MCP image data"),
        ('image({ type: "image", data: 5 })', "image expected MCP image data"),
        ("const c = { type: 'image' }; c.c = c; image(c)", IMAGE_GENERIC),
    ],
)
def test_image_errors(shared: SyncCodeMode, call: str, message: str) -> None:
    result = s_failure(shared, call)
    assert (result.items, result.error) == ((), message)


async def test_image_error_is_a_catchable_string(cm: CodeMode) -> None:
    assert await caught(cm, 'image("https://example.com/a.png")') == IMAGE_REMOTE


async def test_case32_remote_image_model_output(cm: CodeMode) -> None:
    result = await failure(cm, 'image("https://example.com/image.jpg");')
    model = model_texts(result)
    assert [m.split("\n")[0] for m in model] == ["Script failed", "Script error:"]
    assert model[1] == f"Script error:\n{IMAGE_REMOTE}"


# -- generatedImage (case 36) --------------------------------------------------------------------


async def test_case36_generated_image_appends_image_then_hint(cm: CodeMode) -> None:
    code = 'generatedImage({ image_url: "data:image/png;base64,AAA", output_hint: "generated image save hint" });'
    assert await completed(cm, code) == ["image:data:image/png;base64,AAA:high", "generated image save hint"]


async def test_generated_image_without_hint_and_with_detail(cm: CodeMode) -> None:
    code = 'generatedImage({ image_url: "data:image/png;base64,AAA", detail: "low" });'
    assert await completed(cm, code) == ["image:data:image/png;base64,AAA:low"]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ("generatedImage()", "generatedImage expects an image generation result object"),
        ("generatedImage(null)", "generatedImage expects an image generation result object"),
        ('generatedImage("data:image/png;base64,AAA")', "generatedImage expects an image generation result object"),
        ('generatedImage({ image_url: "data:image/png;base64,AAA", output_hint: 5 })',
         "generatedImage output_hint must be a string when provided"),
        ("generatedImage({})", IMAGE_GENERIC),
        ("generatedImage([])", IMAGE_GENERIC),
    ],
)
def test_generated_image_errors(shared: SyncCodeMode, call: str, message: str) -> None:
    result = s_failure(shared, call)
    assert (result.items, result.error) == ((), message)


# -- audio (case 37) ----------------------------------------------------------------------------


async def test_case37_audio_items(cm: CodeMode) -> None:
    code = (
        'audio({ audio_url: "data:audio/mpeg;base64,YXVkaW8=" });\n'
        'audio({ type: "audio", data: "YXVkaW8=", mimeType: "audio/wav" });\n'
        'audio({ type: "audio", data: "YXVkaW8=" });\n'
        'audio("DATA:audio/wav;base64,YXVkaW8=");'
    )
    assert await completed(cm, code) == [
        "audio:data:audio/mpeg;base64,YXVkaW8=",
        "audio:data:audio/wav;base64,YXVkaW8=",
        "audio:data:application/octet-stream;base64,YXVkaW8=",
        "audio:DATA:audio/wav;base64,YXVkaW8=",
    ]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ('audio("https://example.com/a.wav")', AUDIO_INVALID),
        ('audio({ audio_url: "file:///tmp/a.wav" })', AUDIO_INVALID),
        ('audio("not a url")', AUDIO_INVALID),
        ("audio()", AUDIO_GENERIC),
        ("audio(5)", AUDIO_GENERIC),
        ("audio([])", AUDIO_GENERIC),
        ("audio(null)", AUDIO_GENERIC),
        ('audio("")', AUDIO_GENERIC),
        ("audio({ audio_url: 5 })", AUDIO_GENERIC),
        ("audio({})", AUDIO_GENERIC),
        ('audio({ type: "image", data: "AAA" })', 'audio only accepts MCP audio blocks, got "image"'),
        ('audio({ type: "audio" })', "audio expected MCP audio data"),
        ('audio({ type: "audio", data: "" })', "audio expected MCP audio data"),
    ],
)
def test_audio_errors(shared: SyncCodeMode, call: str, message: str) -> None:
    result = s_failure(shared, call)
    assert (result.items, result.error) == ((), message)


# -- forward_output (spec 4.6) -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        ('forward_output("plain")', ["plain"]),
        ('forward_output("a", "b")', ["a", "b"]),
        ("forward_output()", []),
        ('forward_output({ content: [{ type: "text", text: "t" }, { type: "image", data: "AAA", mimeType: "image/png" }] })',
         ["t", "image:data:image/png;base64,AAA:high"]),
        ('forward_output({ content: [{ type: "image", data: "AAA", mimeType: "image/png", _meta: { "codex/imageDetail": "ORIGINAL" } }] })',
         ["image:data:image/png;base64,AAA:original"]),
        ('forward_output({ content: [{ type: "image", data: "AAA", mimeType: "image/png", _meta: { "codex/imageDetail": "huge" } }] })',
         ["image:data:image/png;base64,AAA:high"]),
        ('forward_output({ content_items: [{ type: "input_text", text: "x" }, { type: "input_image", image_url: "data:image/png;base64,AAA", detail: "low" }] })',
         ["x", "image:data:image/png;base64,AAA:low"]),
        ('forward_output({ contentItems: [{ type: "inputText", text: "y" }, { type: "inputImage", imageUrl: "data:image/png;base64,AAA" }] })',
         ["y", "image:data:image/png;base64,AAA:high"]),
        ('forward_output({ type: "text", text: "item" })', ["item"]),
        ('forward_output({ image_url: "data:image/png;base64,AAA" })', ["image:data:image/png;base64,AAA:high"]),
        ('forward_output({ content: [{ image_url: "data:image/png;base64,AAA" }] })', ["image:data:image/png;base64,AAA:high"]),
        ('forward_output({ output: "from output" })', ["from output"]),
        ("forward_output({ content: [] })", []),
        # Beyond spec 4.6 (text and image only): audio blocks are forwarded like audio() would.
        ('forward_output({ content: [{ type: "audio", data: "YXVkaW8=", mimeType: "audio/wav" }] })',
         ["audio:data:audio/wav;base64,YXVkaW8="]),
    ],
)
def test_forward_output_items(shared: SyncCodeMode, call: str, expected: list[str]) -> None:
    assert s_completed(shared, call) == expected


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ("forward_output(5)", FORWARD_GENERIC),
        ("forward_output(undefined)", FORWARD_GENERIC),
        ("forward_output(null)", FORWARD_GENERIC),
        ("forward_output([1])", FORWARD_GENERIC),
        ("forward_output({})", FORWARD_GENERIC),
        ("forward_output({ output: 5 })", FORWARD_GENERIC),
        ("forward_output(() => 1)", FORWARD_GENERIC),
        ('forward_output({ content: "x" })', "output expected `content` to be an array"),
        ('forward_output({ content_items: "x" })', "output expected `content_items` to be an array"),
        ('forward_output({ contentItems: "x" })', "output expected `content_items` to be an array"),
        ('forward_output({ content: ["x"] })', "forward_output expected content entries to be text/image objects"),
        ("forward_output({ content: [null] })", "forward_output expected content entries to be text/image objects"),
        ("forward_output({ content: [{}] })", FORWARD_GENERIC),
        ('forward_output({ content: [{ type: "resource", uri: "x" }] })',
         "forward_output only supports text and image content blocks, got `resource`"),
        ('forward_output({ content: [{ type: "text" }] })', "output expected `text` content to include `text`"),
        ('forward_output({ content: [{ type: "input_text", text: 5 }] })',
         "output expected `input_text` content to include `text`"),
        ('forward_output({ content: [{ type: "input_image" }] })', "output expected image content to include `image_url`"),
        ('forward_output({ content: [{ type: "input_image", image_url: 5 }] })', "output expected `image_url` to be a string"),
        ('forward_output({ content: [{ type: "input_image", image_url: "data:image/png;base64,AAA", detail: 5 }] })',
         DETAIL_NOT_STRING),
        ('forward_output({ content: [{ type: "input_image", image_url: "data:image/png;base64,AAA", detail: "medium" }] })',
         DETAIL_INVALID),
        ('forward_output({ content: [{ type: "input_image", image_url: "https://example.com/a.png" }] })', IMAGE_REMOTE),
        ('forward_output({ content: [{ type: "image" }] })', "output expected `image` content to include `data`"),
        ('forward_output({ content: [{ type: "image", data: "" }] })', "output expected MCP image data"),
        ("const c = {}; c.c = c; forward_output(c)", FORWARD_GENERIC),
    ],
)
def test_forward_output_errors(shared: SyncCodeMode, call: str, message: str) -> None:
    result = s_failure(shared, call)
    assert (result.items, result.error) == ((), message)


async def test_forward_output_is_all_or_nothing(cm: CodeMode) -> None:
    code = 'try { forward_output("first", { content: [{ type: "text", text: "ok" }, 5] }); } catch (e) { text(e); }'
    assert await completed(cm, code) == ["forward_output expected content entries to be text/image objects"]


# -- setTimeout / clearTimeout (case 38; spec 6) ------------------------------------------------


async def test_case38_timer_resolves_a_promise(cm: CodeMode) -> None:
    assert await completed(cm, 'await new Promise((r) => setTimeout(r, 10)); text("timer done");') == ["timer done"]


async def test_case38_timer_waits_at_least_its_delay(cm: CodeMode) -> None:
    code = "const t0 = Date.now(); await new Promise((r) => setTimeout(r, 100)); text(Date.now() - t0 >= 100);"
    assert await completed(cm, code) == ["true"]


async def test_timer_ids_count_from_one(cm: CodeMode) -> None:
    code = "const ids = [setTimeout(() => {}, 1), setTimeout(() => {}, 1), setTimeout(() => {})]; text(JSON.stringify(ids));"
    assert await completed(cm, code) == ["[1,2,3]"]


async def test_timers_fire_in_delay_order(cm: CodeMode) -> None:
    code = (
        "const order = [];\n"
        "await new Promise((done) => {\n"
        "  setTimeout(() => { order.push('slow'); done(); }, 150);\n"
        "  setTimeout(() => order.push('fast'), 10);\n"
        "});\n"
        "text(order.join(','));"
    )
    assert await completed(cm, code) == ["fast,slow"]


async def test_timer_callback_gets_no_arguments_and_no_this(cm: CodeMode) -> None:
    code = (
        "await new Promise((done) => setTimeout(function (...args) {\n"
        "  text(JSON.stringify(args)); text(String(this)); done();\n"
        "}, 1, 'extra', 'args'));"
    )
    assert await completed(cm, code) == ["[]", "undefined"]


@pytest.mark.parametrize("delay", ["undefined", "NaN", "-5", "'abc'", "Infinity", "null", "'7'", "3.9"])
def test_timer_delays_are_coerced(shared: SyncCodeMode, delay: str) -> None:
    assert s_completed(shared, f"await new Promise((r) => setTimeout(r, {delay})); text('ok');") == ["ok"]


async def test_clear_timeout_cancels_the_callback(cm: CodeMode) -> None:
    code = (
        "const id = setTimeout(() => text('should not run'), 20);\n"
        "clearTimeout(id); clearTimeout(String(id)); clearTimeout(id + 0.5);\n"
        "await new Promise((r) => setTimeout(r, 80));\ntext('done');"
    )
    assert await completed(cm, code) == ["done"]


async def test_clear_timeout_accepts_numeric_strings_and_fractions(cm: CodeMode) -> None:
    code = (
        "const a = setTimeout(() => text('a ran'), 20); const b = setTimeout(() => text('b ran'), 20);\n"
        "clearTimeout(String(a)); clearTimeout(b + 0.9);\n"
        "await new Promise((r) => setTimeout(r, 80));\ntext('done');"
    )
    assert await completed(cm, code) == ["done"]


@pytest.mark.parametrize("value", ["", "undefined", "null", "NaN", "-1", "0", "Infinity", "999", "'abc'", "{}"])
def test_clear_timeout_ignores_odd_ids(shared: SyncCodeMode, value: str) -> None:
    assert s_completed(shared, f"text(String(clearTimeout({value})));") == ["undefined"]


@pytest.mark.parametrize("value", ["Symbol('s')", "{ valueOf() { throw new Error('no'); } }", "1n"])
def test_clear_timeout_rejects_unconvertible_ids(shared: SyncCodeMode, value: str) -> None:
    assert s_caught(shared, f"clearTimeout({value})") == "clearTimeout expects a numeric timeout id"


@pytest.mark.parametrize("callback", ["", "undefined", "'text(1)'", "5", "{}"])
def test_set_timeout_needs_a_function(shared: SyncCodeMode, callback: str) -> None:
    assert s_caught(shared, f"setTimeout({callback})") == "setTimeout expects a function callback"


async def test_set_timeout_with_unconvertible_delay_throws(cm: CodeMode) -> None:
    result = await failure(cm, "setTimeout(() => {}, Symbol('s'));")
    assert result.error is not None and result.error.startswith("TypeError: Cannot convert a Symbol value to a number")


async def test_exception_in_timer_callback_fails_the_cell(cm: CodeMode) -> None:
    code = 'text("before");\nsetTimeout(() => { throw new Error("in timer"); }, 1);\nawait new Promise(() => {});'
    result = await failure(cm, code)
    assert texts(result) == ["before"]
    assert result.error is not None
    assert result.error.split("\n")[:2] == ["Error: in timer", "    at exec_main.mjs:2:26"]


async def test_string_thrown_in_timer_callback_is_the_error(cm: CodeMode) -> None:
    result = await failure(cm, 'setTimeout(() => { throw "plain"; }, 1); await new Promise(() => {});')
    assert result.error == "plain"


async def test_pending_timers_are_dropped_when_the_cell_completes(cm: CodeMode) -> None:
    assert await completed(cm, 'setTimeout(() => text("late"), 30); text("done");') == ["done"]
    await asyncio.sleep(0.1)  # past the timer's time: it must not fire (only waiting shows that)
    assert await completed(cm, 'text("next");') == ["next"]


async def test_timers_keep_running_while_nobody_observes(cm: CodeMode) -> None:
    code = (
        '// @exec: {"yield_time_ms": 60000}\n'
        'yield_control();\n'
        'setTimeout(() => store("fired", true), 20);\n'
        "await new Promise((r) => setTimeout(r, 100));\n"
        'text("done");'
    )
    first = await cm.exec(code)
    assert first.status == "running" and first.cell_id is not None
    # The cell finishes in the background; the completion is buffered until observed.
    for _ in range(250):
        if "fired" in cm.stored_values:
            break
        await asyncio.sleep(0.02)
    assert cm.stored_values == {"fired": True}  # committed at completion, before any wait
    final = await cm.wait(first.cell_id, yield_time_ms=0)
    assert (final.status, texts(final)) == ("completed", ["done"])


async def test_set_timeout_zero_runs_after_current_job(cm: CodeMode) -> None:
    code = "await new Promise((r) => { setTimeout(() => { text('timer'); r(); }, 0); text('sync'); });"
    assert await completed(cm, code) == ["sync", "timer"]
