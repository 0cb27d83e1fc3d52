"""The TypeScript stripper of one engine: the bundled strippers (`codemode._typescript`) in a V8
context of their own, apart from every script's isolate (no script can see or reach it).

Made on the first TypeScript script and kept until the engine closes: about 0.7 s and 43 MiB
(plus V8 itself, in a process that had no isolate yet); a strip then takes about 0.3 ms. It runs
on one thread of its own, one evaluation at a time (a V8 context runs one at a time anyway), so
the event loop keeps serving cells meanwhile. In an engine worker this is the worker's stripper,
so a host using worker processes never evaluates model input in V8.
"""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from typing import cast

from codemode._engine.miniracer._compat import JSEvalException, V8Context
from codemode._typescript import VERSIONS_EXPRESSION, bundle_source, strip_expression
from codemode.errors import EngineError


class TypeStripper:
    """Removes TypeScript types from scripts, in a context made on first use."""

    def __init__(self) -> None:
        # The one thread that makes, uses and frees the context.
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="codemode-typescript")
        self._context: V8Context | None = None
        self._closed = False

    async def strip_types(self, code: str) -> str:
        """`code` as JavaScript: its TypeScript syntax removed, or `code` itself when TypeScript
        does not parse it either (then V8 reports the syntax error on the model's own text).

        Raises `EngineError` once closed, or when the stripper fails on `code` (its own
        JavaScript error, such as a stack overflow on a deeply nested script)."""
        try:
            stripped = await self._evaluate(strip_expression(code))
        except JSEvalException as exc:
            raise EngineError(f"The TypeScript in this script could not be removed: {exc}") from exc
        return code if stripped is None else cast("str", stripped)

    async def versions(self) -> dict[str, str]:
        """The versions of the strippers in the bundle, as the bundle itself reports them."""
        return cast("dict[str, str]", json.loads(cast("str", await self._evaluate(VERSIONS_EXPRESSION))))

    async def aclose(self) -> None:
        """Free the context (after the evaluations already queued); later strips fail."""
        if self._closed:
            return
        self._closed = True
        await asyncio.get_running_loop().run_in_executor(self._thread, self._free)
        self._thread.shutdown(wait=False)

    async def _evaluate(self, expression: str) -> object:
        if self._closed:
            raise EngineError("The JavaScript engine is closed: it cannot read TypeScript any more.")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, self._evaluate_here, loop, expression)

    def _evaluate_here(self, loop: asyncio.AbstractEventLoop, expression: str) -> object:
        if self._context is None:
            # It only ever evaluates blocking, so the loop it is given is never called back
            # (V8Context wants one for `submit`).
            context = V8Context(loop, lambda: None)
            context.eval_blocking(bundle_source())
            self._context = context
        return cast("object", self._context.eval_blocking(expression))

    def _free(self) -> None:
        context, self._context = self._context, None
        if context is not None:
            context.free()
