"""TypeScript in model code: remove its types so the script runs as the JavaScript it holds.

Models read their tools as TypeScript declarations and often write TypeScript back. Only a
script that does not parse as JavaScript comes here (the session asks `_imports` first, so valid
JavaScript is never touched and pays nothing more). `strippers.js` bundles two pinned, well-kept
npm strippers (versions and licences in its header and `NOTICE.md`; rebuilt by
`make typescript-bundle` from `scripts/typescript_bundle/`):

* ts-blank-space, over TypeScript's own parser, replaces every annotation, interface, type
  alias, `as`/`satisfies`, generic, `!` and `declare` with spaces: every line and column stays
  where the model wrote it, so error positions and stack traces need no mapping.
* sucrase, for what must generate code (`enum`, constructor parameter properties), keeps
  every line where it was (columns on lines it rewrote may move).

A script TypeScript does not parse either is returned unchanged, so V8 reports its own error on
what the model wrote. The bundle runs in one V8 context of this process, apart from every
script's isolate (a script cannot see or reach it), made on first need and kept: about 0.7 s on
its own thread and 43 MiB (plus V8 itself, about 40 MiB, in a process that had no isolate yet);
a strip then takes about 0.3 ms.
"""

from __future__ import annotations

import asyncio
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from typing import cast

from codemode._engine.miniracer._compat import V8Context

__all__ = ["bundled_versions", "strip_types"]

_GLOBAL = "__codemode_typescript__"

# One thread owns the stripper context: it is made there, and every evaluation runs there, one
# at a time (a V8 context runs one evaluation at a time anyway).
_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="codemode-typescript")
_context: V8Context | None = None
_context_lock = threading.Lock()


async def strip_types(code: str) -> str:
    """`code` as JavaScript: its TypeScript syntax removed, or `code` itself when TypeScript does
    not parse it either (then V8 reports the syntax error on the model's own text)."""
    loop = asyncio.get_running_loop()
    stripped = await loop.run_in_executor(_thread, _strip, loop, code)
    return code if stripped is None else stripped


async def bundled_versions() -> dict[str, str]:
    """The versions of the strippers in the bundle, as the bundle itself reports them."""
    loop = asyncio.get_running_loop()
    text = await loop.run_in_executor(_thread, _evaluate, loop, f"JSON.stringify({_GLOBAL}.versions)")
    return cast("dict[str, str]", json.loads(cast("str", text)))


def _strip(loop: asyncio.AbstractEventLoop, code: str) -> str | None:
    return cast("str | None", _evaluate(loop, f"{_GLOBAL}.strip({json.dumps(code)})"))


def _evaluate(loop: asyncio.AbstractEventLoop, expression: str) -> object:
    return _stripper_context(loop).eval_blocking(expression)


def _stripper_context(loop: asyncio.AbstractEventLoop) -> V8Context:
    """The context with the bundle loaded (made on first use). It only ever evaluates blocking,
    so the loop it is given is never called back (V8Context wants one for `submit`)."""
    global _context
    with _context_lock:
        if _context is None:
            context = V8Context(loop, lambda: None)
            context.eval_blocking(resources.files("codemode._typescript").joinpath("strippers.js").read_text(encoding="utf-8"))
            _context = context
        return _context
