"""`parse_exec_source` and `effective_yield_time_ms` (spec 1.1; §9 cases 1-9)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, strategies as st

from codemode._source import (
    MAX_SAFE_INTEGER,
    ExecRequest,
    SourceError,
    effective_yield_time_ms,
    parse_exec_source,
)

EMPTY = (
    "exec expects raw JavaScript source text (non-empty). Provide JS only, optionally with "
    'first-line `// @exec: {"yield_time_ms": 10000, "max_output_tokens": 1000}`.'
)
NO_SOURCE = "exec pragma must be followed by JavaScript source on subsequent lines"
NOT_OBJECT = (
    "exec pragma must be a JSON object with supported fields `yield_time_ms` and "
    "`max_output_tokens`"
)
INVALID_JSON = (
    "exec pragma must be valid JSON with supported fields `yield_time_ms` and `max_output_tokens`: "
)
BAD_VALUE = (
    "exec pragma fields `yield_time_ms` and `max_output_tokens` must be non-negative safe "
    "integers: "
)


def error_of(raw: str) -> str:
    with pytest.raises(SourceError) as info:
        parse_exec_source(raw)
    return str(info.value)


# --- spec §9 cases 1-9 --------------------------------------------------------------------


def test_case_1_no_pragma() -> None:
    assert parse_exec_source("text('hi')") == ExecRequest("text('hi')", None, None, 0)


def test_case_2_yield_only() -> None:
    assert parse_exec_source("// @exec: {\"yield_time_ms\": 10}\ntext('hi')") == ExecRequest(
        "text('hi')", 10, None, 1
    )


def test_case_3_both_fields() -> None:
    raw = '// @exec: {"yield_time_ms": 15000, "max_output_tokens": 2000}\noutput_text(\'ok\');'
    assert parse_exec_source(raw) == ExecRequest("output_text('ok');", 15000, 2000, 1)


def test_case_4_unknown_key() -> None:
    assert error_of('// @exec: {"nope": 1}\nx') == (
        "exec pragma only supports `yield_time_ms` and `max_output_tokens`; got `nope`"
    )


def test_case_5_pragma_without_source() -> None:
    assert error_of('// @exec: {"yield_time_ms": 10}') == NO_SOURCE


def test_case_6_blank_input() -> None:
    assert error_of("   \n  ") == EMPTY


@pytest.mark.parametrize("directive", ["", "   ", "[1]", "1", '"x"', "null", "true"])
def test_case_7_not_an_object(directive: str) -> None:
    assert error_of(f"// @exec:{directive}\ntext(1)") == NOT_OBJECT


def test_case_7_invalid_json() -> None:
    assert error_of("// @exec: {bad\ntext(1)") == INVALID_JSON + (
        "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"
    )


@pytest.mark.parametrize(
    ("pragma", "detail"),
    [
        ('{"yield_time_ms": -5}', "invalid value: integer `-5`, expected u64 for `yield_time_ms`"),
        (
            '{"max_output_tokens": 1.5}',
            "invalid type: floating point `1.5`, expected usize for `max_output_tokens`",
        ),
        (
            '{"yield_time_ms": 10.0}',
            "invalid type: floating point `10.0`, expected u64 for `yield_time_ms`",
        ),
        ('{"yield_time_ms": "x"}', 'invalid type: string "x", expected u64 for `yield_time_ms`'),
        (
            '{"yield_time_ms": true}',
            "invalid type: boolean `true`, expected u64 for `yield_time_ms`",
        ),
        (
            '{"yield_time_ms": false}',
            "invalid type: boolean `false`, expected u64 for `yield_time_ms`",
        ),
        ('{"yield_time_ms": [1]}', "invalid type: sequence, expected u64 for `yield_time_ms`"),
        ('{"max_output_tokens": {}}', "invalid type: map, expected usize for `max_output_tokens`"),
    ],
)
def test_case_8_bad_values(pragma: str, detail: str) -> None:
    assert error_of(f"// @exec: {pragma}\ntext(1)") == BAD_VALUE + detail


@pytest.mark.parametrize("field", ["yield_time_ms", "max_output_tokens"])
def test_case_8_unsafe_integers(field: str) -> None:
    assert error_of(f'// @exec: {{"{field}": 9007199254740992}}\nx') == (
        f"exec pragma field `{field}` must be a non-negative safe integer"
    )
    assert error_of(f'// @exec: {{"{field}": {10**30}}}\nx') == (
        f"exec pragma field `{field}` must be a non-negative safe integer"
    )


def test_case_8_largest_safe_integer_is_accepted() -> None:
    parsed = parse_exec_source(f'// @exec: {{"yield_time_ms": {MAX_SAFE_INTEGER}}}\nx')
    assert parsed.yield_time_ms == MAX_SAFE_INTEGER


def test_case_9_leading_spaces_before_pragma() -> None:
    assert parse_exec_source('   // @exec: {"yield_time_ms": 5}\ntext(1)') == ExecRequest(
        "text(1)", 5, None, 1
    )


# --- edge cases ---------------------------------------------------------------------------


def test_leading_tabs_and_unicode_spaces_before_pragma() -> None:
    assert parse_exec_source('\t \u3000// @exec: {"yield_time_ms": 5}\nx').yield_time_ms == 5


def test_crlf_line_endings() -> None:
    raw = '// @exec: {"max_output_tokens": 7}\r\ntext(1);\r\ntext(2);\r\n'
    assert parse_exec_source(raw) == ExecRequest("text(1);\r\ntext(2);\r\n", None, 7, 1)


def test_carriage_return_after_directive_is_trimmed() -> None:
    assert parse_exec_source("// @exec: {}\r\nx") == ExecRequest("x", None, None, 1)


def test_empty_object_is_a_valid_pragma() -> None:
    assert parse_exec_source("// @exec: {}\nx") == ExecRequest("x", None, None, 1)


def test_null_counts_as_absent() -> None:
    raw = '// @exec: {"yield_time_ms": null, "max_output_tokens": 3}\nx'
    assert parse_exec_source(raw) == ExecRequest("x", None, 3, 1)


def test_zero_is_allowed() -> None:
    raw = '// @exec: {"yield_time_ms": 0, "max_output_tokens": 0}\nx'
    assert parse_exec_source(raw) == ExecRequest("x", 0, 0, 1)


def test_duplicate_keys_last_wins() -> None:
    raw = '// @exec: {"yield_time_ms": 1, "yield_time_ms": 2}\nx'
    assert parse_exec_source(raw).yield_time_ms == 2


def test_pragma_not_on_first_line_is_just_code() -> None:
    raw = 'text(1)\n// @exec: {"yield_time_ms": 5}\ntext(2)'
    assert parse_exec_source(raw) == ExecRequest(raw, None, None, 0)


def test_pragma_after_blank_first_line_is_just_code() -> None:
    raw = '\n// @exec: {"nope": 1}\ntext(2)'
    assert parse_exec_source(raw) == ExecRequest(raw, None, None, 0)


def test_code_without_pragma_is_kept_verbatim() -> None:
    raw = "  \n\ttext(1)  \n"
    assert parse_exec_source(raw).code == raw


def test_prefix_must_match_exactly() -> None:
    for raw in [
        '//@exec: {"nope": 1}\nx',
        '// @EXEC: {"nope": 1}\nx',
        '/* // @exec: {"nope": 1} */\nx',
    ]:
        assert parse_exec_source(raw) == ExecRequest(raw, None, None, 0)


def test_pragma_followed_only_by_whitespace() -> None:
    assert error_of('// @exec: {"yield_time_ms": 10}\n  \n\t') == NO_SOURCE


def test_missing_source_is_reported_before_bad_json() -> None:
    assert error_of("// @exec: {bad") == NO_SOURCE


def test_code_keeps_its_leading_whitespace() -> None:
    assert parse_exec_source("// @exec: {}\n\n  text(1)").code == "\n  text(1)"


def test_first_unknown_key_in_source_order_is_named() -> None:
    assert error_of('// @exec: {"yield_time_ms": 1, "zeta": 1, "alpha": 2}\nx').endswith(
        "got `zeta`"
    )


def test_unknown_key_is_reported_before_bad_value() -> None:
    assert error_of('// @exec: {"yield_time_ms": -1, "nope": 1}\nx').endswith("got `nope`")


def test_bad_type_is_reported_before_unsafe_integer() -> None:
    raw = '// @exec: {"yield_time_ms": 9007199254740992, "max_output_tokens": -1}\nx'
    assert error_of(raw).startswith(BAD_VALUE)


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_non_standard_json_constants_are_invalid(constant: str) -> None:
    assert error_of(f'// @exec: {{"yield_time_ms": {constant}}}\nx').startswith(INVALID_JSON)


def test_deep_nesting_is_invalid_json_not_a_crash() -> None:
    assert error_of("// @exec: " + "[" * 100_000 + "\nx").startswith(INVALID_JSON)


def test_trailing_garbage_is_invalid_json() -> None:
    assert error_of("// @exec: {} {}\nx") == INVALID_JSON + "Extra data: line 1 column 4 (char 3)"


def test_python_whitespace_that_rust_keeps() -> None:
    # U+001F is whitespace to Python's str.strip but not to Rust's trim: not blank input.
    assert parse_exec_source("\x1f").code == "\x1f"


# --- yield time: grace then cap (spec 1.1 LATEST table) -----------------------------------


@pytest.mark.parametrize(
    ("requested", "cap", "effective"),
    [
        (0, None, 0),
        (9999, None, 9999),
        (10000, None, 11000),
        (10001, None, 11001),
        (10000, 0, 0),
        (9999, 5000, 5000),
        (10000, 10000, 10000),
        (10000, 10500, 10500),
        (10000, 11000, 11000),
        (10000, 12000, 11000),
        (5000, 10500, 5000),
    ],
)
def test_effective_yield_time(requested: int, cap: int | None, effective: int) -> None:
    assert effective_yield_time_ms(requested, cap) == effective


# --- properties ---------------------------------------------------------------------------

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(
            st.sampled_from(["yield_time_ms", "max_output_tokens", "x"]), children, max_size=3
        )
    ),
    max_leaves=8,
)


def _pragma_input(lead: str, value: object, sep: str, rest: str) -> str:
    return f"{lead}// @exec: {json.dumps(value)}{sep}{rest}"


_pragma_inputs = st.builds(
    _pragma_input,
    st.sampled_from(["", " ", "\t"]),
    _json_values,
    st.sampled_from(["\n", "\r\n", "", " \n"]),
    st.text(max_size=10),
)
_any_input = st.text(alphabet=st.characters(exclude_categories=())) | _pragma_inputs


@given(_any_input)
def test_parse_returns_request_or_source_error(raw: str) -> None:
    try:
        parsed = parse_exec_source(raw)
    except SourceError as error:
        assert str(error)
        return
    assert parsed.pragma_lines in (0, 1)
    if parsed.pragma_lines == 0:
        assert parsed.code == raw
    else:
        assert raw.endswith("\n" + parsed.code)
    for value in (parsed.yield_time_ms, parsed.max_output_tokens):
        assert value is None or (type(value) is int and 0 <= value <= MAX_SAFE_INTEGER)


@given(
    st.integers(min_value=0, max_value=10**7), st.none() | st.integers(min_value=0, max_value=10**7)
)
def test_effective_yield_time_never_exceeds_cap_or_grace(requested: int, cap: int | None) -> None:
    effective = effective_yield_time_ms(requested, cap)
    assert requested <= effective + (0 if cap is None else max(0, requested - cap))
    assert effective <= requested + 1000
    assert cap is None or effective <= cap
