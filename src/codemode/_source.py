"""Parsing of the raw `exec` input: the optional first-line pragma, and the yield-time rule.

The input is the model's freeform tool text. If its first line (after leading whitespace)
starts with `// @exec:`, that line is a JSON pragma carrying `yield_time_ms` and/or
`max_output_tokens`, and the JavaScript is everything after the first `\\n`. Otherwise the
whole input, untouched, is the JavaScript.

Invariants:
* `parse_exec_source` either returns an `ExecRequest` or raises `SourceError`, whose message
  is the exact model-facing text of the reference (spec 1.1). A rejected input creates no cell.
* Checks run in the reference's order, so an input with several problems gets the same error.
* "Whitespace" is Unicode White_Space, as Rust's `str::trim` uses it (not Python's `isspace`,
  which also counts the ASCII separators U+001C..U+001F).
* Pure: no I/O, no imports from codemode.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, cast

__all__ = [
    "MAX_SAFE_INTEGER",
    "PRAGMA_PREFIX",
    "YIELD_GRACE_MS",
    "YIELD_GRACE_THRESHOLD_MS",
    "ExecRequest",
    "SourceError",
    "effective_yield_time_ms",
    "parse_exec_source",
]

PRAGMA_PREFIX = "// @exec:"
MAX_SAFE_INTEGER = 2**53 - 1
"""Largest integer JavaScript represents exactly; pragma values above it are refused."""

YIELD_GRACE_THRESHOLD_MS = 10_000
YIELD_GRACE_MS = 1_000

_FIELDS = ("yield_time_ms", "max_output_tokens")
# The Rust integer type each field deserializes into; named in the deserializer error text.
_RUST_TYPES = {"yield_time_ms": "u64", "max_output_tokens": "usize"}

# Unicode White_Space, the set Rust's `trim`/`trim_start` strip.
_WHITESPACE = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
    "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)

_EMPTY_SOURCE = (
    "exec expects raw JavaScript source text (non-empty). Provide JS only, optionally with "
    'first-line `// @exec: {"yield_time_ms": 10000, "max_output_tokens": 1000}`.'
)
_NO_SOURCE_AFTER_PRAGMA = "exec pragma must be followed by JavaScript source on subsequent lines"
_NOT_AN_OBJECT = (
    "exec pragma must be a JSON object with supported fields `yield_time_ms` and "
    "`max_output_tokens`"
)
_INVALID_JSON = (
    "exec pragma must be valid JSON with supported fields `yield_time_ms` and "
    "`max_output_tokens`: {detail}"
)
_UNKNOWN_KEY = "exec pragma only supports `yield_time_ms` and `max_output_tokens`; got `{key}`"
_BAD_VALUE = (
    "exec pragma fields `yield_time_ms` and `max_output_tokens` must be non-negative safe "
    "integers: {detail}"
)
_UNSAFE_VALUE = "exec pragma field `{field}` must be a non-negative safe integer"


@dataclass(frozen=True)
class ExecRequest:
    """A parsed `exec` input.

    Attributes:
        code: the JavaScript source (the pragma line removed if there was one).
        yield_time_ms: the pragma's yield time, None when absent (the caller applies its default).
        max_output_tokens: the pragma's output budget, None when absent.
        pragma_lines: 1 if a pragma line was removed, else 0; add it to script line numbers
            to get line numbers in the model's input.
    """

    code: str
    yield_time_ms: int | None = None
    max_output_tokens: int | None = None
    pragma_lines: int = 0


class SourceError(ValueError):
    """The `exec` input was rejected; the message is exactly what the model should read."""


def parse_exec_source(raw: str) -> ExecRequest:
    """Split the raw `exec` input into its optional pragma and its JavaScript.

    Raises:
        SourceError: the input is blank, or the pragma is malformed (spec 1.1 steps 1-9).
    """
    if not raw.strip(_WHITESPACE):
        raise SourceError(_EMPTY_SOURCE)

    first_line, _, rest = raw.partition("\n")
    first_line = first_line.lstrip(_WHITESPACE)
    if not first_line.startswith(PRAGMA_PREFIX):
        return ExecRequest(code=raw)

    if not rest.strip(_WHITESPACE):
        raise SourceError(_NO_SOURCE_AFTER_PRAGMA)

    directive = first_line[len(PRAGMA_PREFIX) :].strip(_WHITESPACE)
    if not directive:
        raise SourceError(_NOT_AN_OBJECT)
    pragma = _load_json(directive)
    if not isinstance(pragma, dict):
        raise SourceError(_NOT_AN_OBJECT)
    fields = cast("dict[str, object]", pragma)

    for key in fields:
        if key not in _FIELDS:
            raise SourceError(_UNKNOWN_KEY.format(key=key))
    # Every value must be an unsigned integer before any is range-checked (reference order).
    values = {key: _unsigned(key, value) for key, value in fields.items()}
    for field in _FIELDS:
        value = values.get(field)
        if value is not None and value > MAX_SAFE_INTEGER:
            raise SourceError(_UNSAFE_VALUE.format(field=field))

    return ExecRequest(
        code=rest,
        yield_time_ms=values.get("yield_time_ms"),
        max_output_tokens=values.get("max_output_tokens"),
        pragma_lines=1,
    )


def effective_yield_time_ms(requested: int, cap: int | None) -> int:
    """The yield time actually used for a requested (non-negative) one.

    Long requests get a 1 s grace, so work that finishes just after the requested time is
    reported complete instead of yielding; the session cap then only makes a cell yield
    sooner, it never terminates it.
    """
    effective = requested + YIELD_GRACE_MS if requested >= YIELD_GRACE_THRESHOLD_MS else requested
    return effective if cap is None else min(effective, cap)


def _reject_constant(name: str) -> Any:
    # Python's json accepts NaN/Infinity; the reference's JSON parser does not.
    raise ValueError(f"invalid JSON constant {name}")


def _load_json(directive: str) -> Any:
    try:
        return json.loads(directive, parse_constant=_reject_constant)
    except RecursionError:
        raise SourceError(_INVALID_JSON.format(detail="recursion limit exceeded")) from None
    except ValueError as error:  # includes json.JSONDecodeError
        raise SourceError(_INVALID_JSON.format(detail=str(error))) from None


def _unsigned(field: str, value: object) -> int | None:
    """The field's value as a non-negative int; JSON null counts as absent."""
    if value is None:
        return None
    # bool is an int subclass in Python, but `true` is not a number in JSON.
    if isinstance(value, int) and not isinstance(value, bool):
        if value >= 0:
            return value
        found = f"invalid value: integer `{value}`"
    elif isinstance(value, bool):
        found = f"invalid type: boolean `{'true' if value else 'false'}`"
    elif isinstance(value, float):
        found = f"invalid type: floating point `{value!r}`"
    elif isinstance(value, str):
        found = f"invalid type: string {json.dumps(value, ensure_ascii=False)}"
    elif isinstance(value, list):
        found = "invalid type: sequence"
    else:
        found = "invalid type: map"
    detail = f"{found}, expected {_RUST_TYPES[field]} for `{field}`"
    raise SourceError(_BAD_VALUE.format(detail=detail))
