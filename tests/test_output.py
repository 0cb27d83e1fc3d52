"""Model-facing rendering: header, error item, token truncation (spec 2.2, 2.4; §9 55, 56, 58)."""

from __future__ import annotations

import gc
import math
import re
import time
from collections.abc import Callable
from typing import Any, TypeVar, get_args

import pytest
from hypothesis import given, strategies as st

from codemode._output import approx_tokens, header_text, model_items, truncate_items
from codemode._protocol.calls import PendingApproval
from codemode._protocol.config import DEFAULT_MAX_OUTPUT_TOKENS
from codemode._protocol.types import AudioItem, ErrorKind, ExecResult, ImageItem, OutputItem, Status, TextItem
from codemode.formats import Api, to_model

DIGITS40 = "0123456789" * 4
AUDIO_100 = AudioItem("data:audio/wav;base64," + "A" * 100)  # 122 bytes -> 31 tokens
IMAGE = ImageItem("data:image/png;base64,AAA")
T = TypeVar("T")


def texts(items: list[OutputItem]) -> list[str]:
    return [item.text if isinstance(item, TextItem) else item.type for item in items]


# --- approx_tokens ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "tokens"),
    [("", 0), ("a", 1), ("abcd", 1), ("abcde", 2), ("é", 1), ("😀", 1), ("😀a", 2), ("\ud800", 1)],
)
def test_approx_tokens(text: str, tokens: int) -> None:
    assert approx_tokens(text) == tokens


# --- header -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "first_line"),
    [
        ("running", "Script running with cell ID 7"),
        ("terminated", "Script terminated"),
        ("completed", "Script completed"),
        ("failed", "Script failed"),
    ],
)
def test_header_statuses(status: Status, first_line: str) -> None:
    assert header_text(status, "7", 0.0) == f"{first_line}\nWall time 0.0 seconds\nOutput:\n"


@pytest.mark.parametrize(
    ("seconds", "printed"),
    [
        (0.0, "0.0"),
        (0.04, "0.0"),
        (0.05, "0.1"),
        (0.1, "0.1"),
        (0.25, "0.3"),
        (12.34, "12.3"),
        (12.35, "12.4"),
        (9.96, "10.0"),
        (123.0, "123.0"),
    ],
)
def test_header_wall_time_one_decimal(seconds: float, printed: str) -> None:
    assert (
        header_text("completed", "1", seconds)
        == f"Script completed\nWall time {printed} seconds\nOutput:\n"
    )


# --- model_items --------------------------------------------------------------------------


def test_text_a_completed() -> None:
    result = ExecResult("completed", "1", (TextItem("a"),))
    assert texts(model_items(result)) == ["Script completed\nWall time 0.0 seconds\nOutput:\n", "a"]


def test_no_output_is_just_the_header() -> None:
    assert texts(model_items(ExecResult("completed", "1"))) == [
        "Script completed\nWall time 0.0 seconds\nOutput:\n"
    ]


def test_running_header_carries_cell_id() -> None:
    result = ExecResult("running", "1", (TextItem("phase 1"),), wall_time_s=0.1)
    assert texts(model_items(result)) == [
        "Script running with cell ID 1\nWall time 0.1 seconds\nOutput:\n",
        "phase 1",
    ]


def test_error_item_comes_last() -> None:
    result = ExecResult(
        "failed",
        "3",
        (TextItem("before crash"), IMAGE, TextItem("still before crash")),
        error="Error: boom\n    at exec_main.mjs:3:7",
    )
    items = model_items(result)
    assert texts(items) == [
        "Script failed\nWall time 0.0 seconds\nOutput:\n",
        "before crash",
        "image",
        "still before crash",
        "Script error:\nError: boom\n    at exec_main.mjs:3:7",
    ]
    assert items[2] == IMAGE


def test_missing_cell_is_failed_with_error_item() -> None:
    result = ExecResult("failed", "999999", error="exec cell 999999 not found")
    assert texts(model_items(result)) == [
        "Script failed\nWall time 0.0 seconds\nOutput:\n",
        "Script error:\nexec cell 999999 not found",
    ]


def test_error_item_is_truncated_with_the_rest_but_header_is_not() -> None:
    result = ExecResult("failed", "1", (TextItem("x" * 8),), error="y" * 30, max_output_tokens=5)
    header, body = model_items(result)
    assert isinstance(header, TextItem) and isinstance(body, TextItem)
    assert header.text == "Script failed\nWall time 0.0 seconds\nOutput:\n"
    # "xxxxxxxx\nScript error:\nyyy…" is 53 bytes = 14 tokens; budget 20 bytes.
    assert body.text == (
        "Warning: truncated output (original token count: 14)\nTotal output lines: 3\n\n"
        "xxxxxxxx\nS…9 tokens truncated…yyyyyyyyyy"
    )


def test_terminated_keeps_items() -> None:
    result = ExecResult("terminated", "2", (TextItem("queued output"),))
    assert texts(model_items(result)) == [
        "Script terminated\nWall time 0.0 seconds\nOutput:\n",
        "queued output",
    ]


def test_rejected_before_a_cell_is_just_the_message() -> None:
    message = "exec pragma must be followed by JavaScript source on subsequent lines"
    result = ExecResult("rejected", None, error=message, wall_time_s=3.0)
    assert model_items(result) == [TextItem(message)]


def test_rejected_message_is_not_truncated() -> None:
    result = ExecResult("rejected", None, error="z" * 100, max_output_tokens=1)
    assert model_items(result) == [TextItem("z" * 100)]


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("busy", "exec cell 1 already has an active observer"),
        ("terminating", "exec cell 1 is already terminating"),
        ("shutting_down", "code mode session is shutting down"),
    ],
)
def test_wait_refused_for_the_cell_state_is_just_the_message(kind: ErrorKind, message: str) -> None:
    result = ExecResult("failed", "1", error=message, error_kind=kind, wall_time_s=1.0)
    assert model_items(result) == [TextItem(message)]


def test_missing_cell_keeps_the_failed_header() -> None:
    result = ExecResult("failed", "7", error="exec cell 7 not found", error_kind="not_found")
    assert texts(model_items(result)) == [
        "Script failed\nWall time 0.0 seconds\nOutput:\n",
        "Script error:\nexec cell 7 not found",
    ]


def test_pending_approvals_follow_the_truncated_items() -> None:
    pending = PendingApproval("1", "3", "delete_file", {"path": "/tmp/x"})
    result = ExecResult("running", "1", (TextItem("x" * 100),), max_output_tokens=1, pending_approvals=(pending,))
    *_, last = texts(model_items(result))
    assert last == 'Waiting for approval: call 3 tools.delete_file({"path":"/tmp/x"})'


@pytest.mark.parametrize("status", get_args(Status))
def test_ok_only_for_completed(status: Status) -> None:
    result = ExecResult(status, None if status == "rejected" else "1")
    assert result.ok is (status == "completed")


@pytest.mark.parametrize("status", get_args(Status))
def test_only_rejected_results_have_no_cell(status: Status) -> None:
    with pytest.raises(ValueError, match="cell"):
        ExecResult(status, "1" if status == "rejected" else None)


# --- all-text truncation (spec 2.4) -------------------------------------------------------


def test_case_55_forty_chars_budget_5() -> None:
    result = ExecResult("completed", "1", (TextItem(DIGITS40),), max_output_tokens=5)
    assert texts(model_items(result))[1] == (
        "Warning: truncated output (original token count: 10)\nTotal output lines: 1\n\n"
        "0123456789…5 tokens truncated…0123456789"
    )


def test_case_56_wait_budget_6_on_long_final_text() -> None:
    final = "token one token two token three token four token five token six token seven"
    assert len(final) == 75
    (item,) = truncate_items([TextItem(final)], 6)
    assert item == TextItem(
        "Warning: truncated output (original token count: 19)\nTotal output lines: 1\n\n"
        "token one to…13 tokens truncated… token seven"
    )


def test_under_budget_returns_separate_items_unchanged() -> None:
    items: list[OutputItem] = [TextItem("a"), TextItem("b"), TextItem("c")]  # joined: 5 bytes
    assert truncate_items(items, 2) == items


def test_exactly_at_budget_is_unchanged() -> None:
    items: list[OutputItem] = [TextItem("ab"), TextItem("cde")]  # joined: 6 bytes
    assert truncate_items(items, 2) == items
    (item,) = truncate_items(items, 1)
    assert isinstance(item, TextItem)
    assert item.text.endswith("\n\nab…1 tokens truncated…de")


def test_items_are_joined_with_newlines_before_truncation() -> None:
    (item,) = truncate_items([TextItem("a" * 10), TextItem("b" * 10)], 2)
    assert item == TextItem(
        "Warning: truncated output (original token count: 6)\nTotal output lines: 2\n\n"
        "aaaa…4 tokens truncated…bbbb"
    )


def test_no_separator_while_joined_text_is_empty() -> None:
    # The reference only adds "\n" once something has been written: ["", "", "x"] -> "x".
    assert truncate_items([TextItem(""), TextItem(""), TextItem("x")], 0) == [
        TextItem(
            "Warning: truncated output (original token count: 1)\nTotal output lines: 1\n\n"
            "…1 tokens truncated…"
        )
    ]
    empties: list[OutputItem] = [TextItem(""), TextItem("")]
    assert truncate_items(empties, 0) == empties


def test_budget_zero_is_just_the_marker() -> None:
    (item,) = truncate_items([TextItem("abcdef")], 0)
    assert item == TextItem(
        "Warning: truncated output (original token count: 2)\nTotal output lines: 1\n\n"
        "…2 tokens truncated…"
    )


def test_no_items() -> None:
    assert truncate_items([], 0) == []


@pytest.mark.parametrize(
    ("text", "lines"),
    [
        ("x" * 9, 1),
        ("x" * 9 + "\n", 1),
        ("a\n" * 5, 5),
        ("a\n\nb" * 3, 7),
        ("\n" * 9, 9),
        ("a\rb\rc\rd\re", 1),
        ("a\r\nb\r\ncde", 3),
        ("a\u2028b\x0cc\x85ddd", 1),
    ],
)
def test_total_output_lines_counts_like_rust_lines(text: str, lines: int) -> None:
    (item,) = truncate_items([TextItem(text)], 1)
    assert isinstance(item, TextItem)
    assert item.text.split("\n")[1] == f"Total output lines: {lines}"


def test_multibyte_cut_at_char_boundaries() -> None:
    # Ported from the reference's truncate tests.
    (item,) = truncate_items([TextItem("😀" * 10 + "\nsecond line with text\n")], 8)
    assert item == TextItem(
        "Warning: truncated output (original token count: 16)\nTotal output lines: 2\n\n"
        "😀😀😀😀…8 tokens truncated… line with text\n"
    )


def test_prefix_rounds_down_and_suffix_rounds_up() -> None:
    # "é" is 2 bytes: 13 of them = 26 bytes; budget 12 -> head 6 bytes (3 chars), tail 6 bytes.
    (item,) = truncate_items([TextItem("é" * 13)], 3)
    assert isinstance(item, TextItem)
    assert item.text.endswith("\n\nééé…4 tokens truncated…ééé")
    # Shifted by one byte, both cuts land mid-char: "a" + 12 "é" + "b" = 26 bytes, budget 12.
    # The head (6 bytes) backs off to 5 bytes; the tail start (byte 20) moves up to byte 21.
    (item,) = truncate_items([TextItem("a" + "é" * 12 + "b")], 3)
    assert isinstance(item, TextItem)
    assert item.text.endswith("\n\naéé…4 tokens truncated…ééb")
    # Emoji (4 bytes) with budget 1 token: head 2 bytes and tail 2 bytes both land mid-char.
    (item,) = truncate_items([TextItem("😀" * 5)], 1)
    assert isinstance(item, TextItem)
    assert item.text.endswith("\n\n…4 tokens truncated…")


def test_lone_surrogates_are_counted_and_kept() -> None:
    text = "\ud800" * 10  # 3 bytes each, as U+FFFD would be; the 4-byte head and tail hold one
    (item,) = truncate_items([TextItem(text)], 2)
    assert item == TextItem(
        "Warning: truncated output (original token count: 8)\nTotal output lines: 1\n\n"
        "\ud800…6 tokens truncated…\ud800"
    )


# --- mixed truncation ---------------------------------------------------------------------


def test_case_58_audio_over_budget_is_omitted() -> None:
    assert truncate_items([AUDIO_100], 5) == [TextItem("[omitted 1 audio items ...]")]


def test_audio_within_budget_is_kept_and_charged() -> None:
    items: list[OutputItem] = [AUDIO_100, TextItem("x" * 8)]
    assert truncate_items(items, 33) == items
    assert texts(truncate_items(items, 32)) == ["audio", "xx…1 tokens truncated…xx"]


def test_images_are_free_and_always_kept() -> None:
    items: list[OutputItem] = [IMAGE, TextItem("abcdefgh"), IMAGE, TextItem("more"), IMAGE]
    out = truncate_items(items, 0)
    assert out == [IMAGE, IMAGE, IMAGE, TextItem("[omitted 2 text items ...]")]


def test_mixed_first_overflowing_text_is_middle_truncated_then_rest_dropped() -> None:
    items: list[OutputItem] = [
        TextItem("abcd"),  # 1 token, kept
        IMAGE,
        TextItem("0123456789" * 2),  # 5 tokens > 2 remaining: cut to 8 bytes, no Warning header
        TextItem("late"),  # dropped
        AUDIO_100,  # dropped
        TextItem(""),  # empty: neither kept nor counted
        TextItem("later"),  # dropped
    ]
    out = truncate_items(items, 3)
    assert texts(out) == [
        "abcd",
        "image",
        "0123…3 tokens truncated…6789",
        "[omitted 2 text items ...]",
        "[omitted 1 audio items ...]",
    ]


def test_mixed_under_budget_is_unchanged() -> None:
    items: list[OutputItem] = [TextItem("a"), IMAGE, TextItem("b")]
    assert truncate_items(items, 2) == items


def test_mixed_empty_text_is_dropped_silently() -> None:
    assert truncate_items([TextItem(""), IMAGE], 10) == [IMAGE]


def test_model_items_uses_mixed_mode_with_error_item() -> None:
    result = ExecResult("failed", "4", (IMAGE,), error="boom", max_output_tokens=1)
    assert texts(model_items(result)) == [
        "Script failed\nWall time 0.0 seconds\nOutput:\n",
        "image",
        "Sc…4 tokens truncated…om",
    ]


# --- properties ---------------------------------------------------------------------------

_text = st.text(alphabet=st.characters(exclude_categories=()), max_size=60)


@given(st.lists(_text, max_size=5), st.integers(min_value=0, max_value=40))
def test_all_text_truncation_is_bounded(parts: list[str], max_tokens: int) -> None:
    items: list[OutputItem] = [TextItem(part) for part in parts]
    out = truncate_items(items, max_tokens)
    joined = ""
    for part in parts:
        joined = f"{joined}\n{part}" if joined else part
    data = joined.encode("utf-8", "surrogatepass")
    budget = max_tokens * 4
    if len(data) <= budget:
        assert out == items
        return
    (item,) = out
    assert isinstance(item, TextItem)
    preamble = (
        f"Warning: truncated output (original token count: {math.ceil(len(data) / 4)})\n"
        f"Total output lines: {len(joined.split(chr(10))) - joined.endswith(chr(10))}\n\n"
    )
    assert item.text.startswith(preamble)
    body = item.text[len(preamble) :]
    marker = f"…{math.ceil((len(data) - budget) / 4)} tokens truncated…"
    splits = [
        (body[:i], body[i + len(marker) :]) for i in range(len(body)) if body.startswith(marker, i)
    ]
    assert any(
        joined.startswith(head)
        and joined.endswith(tail)
        and len((head + tail).encode("utf-8", "surrogatepass")) <= budget
        and len(head.encode("utf-8", "surrogatepass")) <= budget // 2
        for head, tail in splits
    )


_items = st.lists(
    st.one_of(
        _text.map(TextItem),
        st.just(IMAGE),
        st.text(alphabet="AB", max_size=40).map(
            lambda b64: AudioItem(f"data:audio/wav;base64,{b64}")
        ),
    ),
    max_size=6,
)


@pytest.mark.slow
@given(
    _items.filter(lambda items: not all(isinstance(item, TextItem) for item in items)),
    st.integers(min_value=0, max_value=40),
)
def test_mixed_truncation_keeps_images_and_respects_budget(
    items: list[OutputItem], max_tokens: int
) -> None:
    out = truncate_items(items, max_tokens)
    assert [i for i in out if isinstance(i, ImageItem)] == [
        i for i in items if isinstance(i, ImageItem)
    ]
    kept = [i for i in out if not isinstance(i, ImageItem)]
    notes = [i for i in kept if isinstance(i, TextItem) and i.text.startswith("[omitted ")]
    cost = sum(
        approx_tokens(i.audio_url) if isinstance(i, AudioItem) else approx_tokens(i.text)
        for i in kept
        if i not in notes and not (isinstance(i, TextItem) and "tokens truncated…" in i.text)
    )
    assert cost <= max_tokens



# --- scale: rendering is linear in the number of items ------------------------------------

APIS: tuple[Api, ...] = get_args(Api)
HEADER = "Script completed\nWall time 0.0 seconds\nOutput:\n"
LIVENESS_S = 30.0  # far above the ~1 s linear rendering takes here; quadratic took minutes
TRUNCATED = re.compile("…[0-9]+ tokens truncated…")
TEXT_BLOCK: dict[Api, str] = {
    "responses": "input_text",
    "chat": "text",
    "anthropic": "text",
    "mcp": "text",
}
IMAGE_BLOCK: dict[Api, str] = {
    "responses": "input_image",
    "chat": "text",  # tool messages carry only text: the image becomes a note
    "anthropic": "image",
    "mcp": "image",
}


def many_texts(n: int) -> tuple[OutputItem, ...]:
    return tuple(TextItem(f"line {i}") for i in range(n))


def many_mixed(n: int) -> tuple[OutputItem, ...]:
    """Mostly text with every tenth item an image, so truncation walks item by item."""
    return tuple(IMAGE if i % 10 == 9 else TextItem(f"line {i}") for i in range(n))


@pytest.fixture(scope="module")
def million_texts() -> ExecResult:
    return ExecResult("completed", "1", many_texts(1_000_000))


@pytest.fixture(scope="module")
def mixed_100k() -> ExecResult:
    return ExecResult("completed", "1", many_mixed(100_000))


def timed(render: Callable[[], T]) -> T:
    """`render()`, checked afterwards to have finished within the liveness bound."""
    start = time.perf_counter()
    value = render()
    elapsed = time.perf_counter() - start
    assert elapsed < LIVENESS_S, f"took {elapsed:.1f} s"
    return value


def blocks(api: Api, output: Any) -> list[dict[str, Any]]:
    """The content blocks of a list-valued `to_model` output, whatever the API."""
    return output["content"] if api == "mcp" else output


@pytest.mark.slow
def test_million_texts_collapse_into_one_truncated_item(million_texts: ExecResult) -> None:
    header, body = timed(lambda: model_items(million_texts))
    joined = "\n".join(f"line {i}" for i in range(1_000_000))  # ASCII: bytes are characters
    budget = DEFAULT_MAX_OUTPUT_TOKENS * 4
    assert header == TextItem(HEADER)
    assert body == TextItem(
        f"Warning: truncated output (original token count: {math.ceil(len(joined) / 4)})\n"
        "Total output lines: 1000000\n\n"
        f"{joined[: budget // 2]}…{math.ceil((len(joined) - budget) / 4)} tokens truncated…"
        f"{joined[len(joined) - budget // 2 :]}"
    )
    assert isinstance(body, TextItem)
    head, tail = TRUNCATED.split(body.text.split("\n\n", 1)[1])
    assert approx_tokens(head + tail) <= DEFAULT_MAX_OUTPUT_TOKENS


@pytest.mark.slow
@pytest.mark.parametrize("api", APIS)
def test_million_texts_to_model(million_texts: ExecResult, api: Api) -> None:
    output = timed(lambda: to_model(million_texts, api))
    header, body = model_items(million_texts)
    assert isinstance(header, TextItem) and isinstance(body, TextItem)
    assert blocks(api, output) == [
        {"type": TEXT_BLOCK[api], "text": header.text},
        {"type": TEXT_BLOCK[api], "text": body.text},
    ]
    assert body.text.startswith("Warning: truncated output (original token count: ")


def test_mixed_100k_keeps_images_in_place_and_fits_the_budget(mixed_100k: ExecResult) -> None:
    out = timed(lambda: model_items(mixed_100k))
    items = mixed_100k.items
    texts_in = [item for item in items if isinstance(item, TextItem)]
    kept = [item for item in out[1:-1] if isinstance(item, TextItem)]
    *whole, cut = kept
    # The first texts are kept whole, the next one is cut to the rest of the budget, the
    # others are counted in the note; every image stays in its place.
    assert whole == texts_in[: len(whole)]
    assert TRUNCATED.search(cut.text)
    stop = items.index(texts_in[len(whole)])
    assert out == [
        TextItem(HEADER),
        *items[:stop],
        cut,
        *(item for item in items[stop + 1 :] if isinstance(item, ImageItem)),
        TextItem(f"[omitted {len(texts_in) - len(kept)} text items ...]"),
    ]
    kept_tokens = sum(approx_tokens(TRUNCATED.sub("", item.text)) for item in kept)
    assert kept_tokens <= DEFAULT_MAX_OUTPUT_TOKENS


@pytest.mark.parametrize("api", APIS)
def test_mixed_100k_to_model(mixed_100k: ExecResult, api: Api) -> None:
    output = timed(lambda: to_model(mixed_100k, api))
    items = model_items(mixed_100k)
    got = blocks(api, output)
    assert [block["type"] for block in got] == [
        IMAGE_BLOCK[api] if isinstance(item, ImageItem) else TEXT_BLOCK[api] for item in items
    ]
    assert [block["text"] for block, item in zip(got, items, strict=True) if isinstance(item, TextItem)] == [
        item.text for item in items if isinstance(item, TextItem)
    ]


def best_render_time(result: ExecResult) -> float:
    """Fastest of three renderings for every API, with the garbage collector paused.

    The minimum and the paused collector keep a busy machine's noise out of the ratio.
    """
    times = []
    for _ in range(3):
        gc.disable()
        try:
            start = time.perf_counter()
            for api in APIS:
                to_model(result, api)
            times.append(time.perf_counter() - start)
        finally:
            gc.enable()
    return min(times)


@pytest.mark.slow
@pytest.mark.parametrize("make", [many_texts, many_mixed], ids=["text", "mixed"])
def test_rendering_time_grows_linearly(make: Callable[[int], tuple[OutputItem, ...]]) -> None:
    # Four times the items: about 4x the time if linear, 16x if quadratic.
    small, large = (ExecResult("completed", "1", make(n)) for n in (100_000, 400_000))
    ratio = best_render_time(large) / best_render_time(small)
    assert ratio < 12, f"400k items took {ratio:.1f}x as long as 100k"
