"""Contract tests of what codemode uses of mini-racer's private parts (`_engine/miniracer/_compat`).

An upgrade of mini-racer that moves or changes one of these fails here, by name, instead of deep
inside a cell. The tests run the real library in this process (in-process engine code).
"""

from __future__ import annotations

import asyncio
import inspect
import re
from importlib import metadata
from pathlib import Path

import pytest

from codemode._engine.miniracer import _compat

SRC = Path(__file__).resolve().parents[1] / "src" / "codemode"

CONTEXT_ATTRIBUTES = (
    "_non_cancelable_mr_task_results_queue",
    "_active_cancelable_mr_task_callbacks",
    "_next_async_callback_id",
    "_wrap_raw_handle",
    "_value_handle_to_python",
    "_python_to_value_handle",
    "_handle_callback_from_v8_on_event_loop",
    "handle_callback_from_v8",
    "set_object_item",
    "_free",
)
LIBRARY_FUNCTIONS = (
    "mr_init_context",
    "mr_eval",
    "mr_free_value",
    "mr_free_context",
    "mr_make_js_callback",
    "mr_set_hard_memory_limit",
    "mr_hard_memory_limit_reached",
)


def test_the_installed_version_is_a_supported_one() -> None:
    assert metadata.version("mini-racer").startswith(_compat.SUPPORTED_VERSIONS)


def test_the_private_context_api_is_there() -> None:
    from py_mini_racer._context import Context

    fields = _dataclass_fields(Context)
    missing = [name for name in CONTEXT_ATTRIBUTES if not hasattr(Context, name) and name not in fields]
    assert missing == []
    signature = inspect.signature(Context)
    assert list(signature.parameters)[:5] == ["_dll", "_ctx", "event_loop", "_object_factory", "_next_async_callback_id"]


def _dataclass_fields(cls: type) -> set[str]:
    return set(getattr(cls, "__dataclass_fields__", {}))


def test_the_c_library_has_what_codemode_calls() -> None:
    dll = _compat.init_v8()
    assert _compat.init_v8() is dll  # once per process
    assert [name for name in LIBRARY_FUNCTIONS if not hasattr(dll, name)] == []


def test_only_the_compat_module_imports_mini_racer() -> None:
    importers = sorted(
        str(path.relative_to(SRC))
        for path in SRC.rglob("*.py")
        if re.search(r"^\s*(from|import) py_mini_racer", path.read_text(encoding="utf-8"), re.MULTILINE)
    )
    assert importers == ["_engine/miniracer/_compat.py"]


async def test_a_context_evaluates_pings_limits_and_frees_without_blocking_the_loop() -> None:
    loop = asyncio.get_running_loop()
    pings: list[int] = []
    pinged = asyncio.Event()

    def ping() -> None:
        pings.append(1)
        pinged.set()

    context = await loop.run_in_executor(None, lambda: _compat.V8Context(loop, ping))
    try:
        assert await loop.run_in_executor(None, context.eval_blocking, "6 * 7") == 42
        assert await context.submit("globalThis.__codemode_ping__(); 'queued'") == "queued"
        await asyncio.wait_for(pinged.wait(), 30)
        assert pings == [1]  # the native callback reached the loop
        context.set_heap_limit(16 * 1024 * 1024)
        with pytest.raises(_compat.JSOOMException):
            await context.submit("const a = []; for (;;) a.push(new Array(1e5).fill(1));")
        assert context.heap_limit_reached()
        with pytest.raises(_compat.JSParseException):
            await context.submit("(")
    finally:
        await loop.run_in_executor(None, context.free)
    assert _compat.longest_free_s() == 0.0


async def test_freeing_stops_a_script_that_never_goes_idle() -> None:
    loop = asyncio.get_running_loop()
    started = asyncio.Event()
    context = await loop.run_in_executor(None, lambda: _compat.V8Context(loop, started.set))
    running = context.submit("globalThis.__codemode_ping__(); for (;;) {}")
    await asyncio.wait_for(started.wait(), 30)  # the script runs
    await asyncio.wait_for(loop.run_in_executor(None, context.free), 10)
    running.cancel()
