"""How a syntax error shows the model its offending line: the line under a numbered gutter,
carets under the token, after the reference's `SyntaxError: msg` / `at exec_main.mjs:L:C` lines.

Both places that report syntax errors use it: the engine (V8's compile errors) and the module
rewrite (`_imports`, whose top-level `return` error is V8's). Pure text; imports nothing.
"""

from __future__ import annotations

__all__ = ["EXCERPT_CHARS", "UNFINISHED_SCRIPT", "source_excerpt"]

EXCERPT_CHARS = 160
"""Of a long offending line (a minified script), this much around the error is shown."""

UNFINISHED_SCRIPT = "    (past the script's end: something it opens is not closed, or its last statement is unfinished)"
"""Said instead of a line when V8 found the error after the script's last line."""


def source_excerpt(line: int, source: str, start: int, width: int = 1) -> str:
    """`source` (line `line` of the script) in a numbered gutter, `width` carets under the token
    that starts `start` UTF-16 units into it (V8's unit); a long line is cut around the token."""
    index = len(source.encode("utf-16-le", errors="surrogatepass")[: start * 2].decode("utf-16-le", errors="ignore"))
    begin = max(0, min(index - EXCERPT_CHARS // 2, len(source) - EXCERPT_CHARS))
    end = begin + EXCERPT_CHARS
    shown = ("…" if begin else "") + source[begin:end] + ("…" if end < len(source) else "")
    lead = ("…" if begin else "") + source[begin:index]
    padding = "".join(c if c == "\t" else " " for c in lead)  # a tab stays a tab, so carets align
    gutter = " " * len(str(line))
    return f"    {line} | {shown}\n    {gutter} | {padding}{'^' * max(1, width)}"
