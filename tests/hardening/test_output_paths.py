"""Output paths stay bounded and lose nothing: notifications, stored values, floods, tampering."""

from __future__ import annotations

import asyncio
import time

import pytest
from tests.conftest import MakeCodeMode
from tests.hardening._support import texts

from codemode import CodeMode, Limits
from codemode._session.limits import store_limit_error
from codemode._session.session import KEPT_NOTIFICATION_CHARS


async def test_kept_notifications_are_bounded_by_size_but_the_callback_sees_every_one(make_cm: MakeCodeMode) -> None:
    seen: list[int] = []
    cm = await make_cm(on_notify=lambda cell_id, text: seen.append(len(text)))
    result = await cm.exec('for (let i = 0; i < 12; i++) notify(String(i).repeat(1024 * 1024)); text("done")')
    assert (result.status, texts(result)) == ("completed", ["done"])
    assert seen == [1024 * 1024] * 10 + [2 * 1024 * 1024] * 2
    kept = cm.notifications
    assert sum(len(n.text) for n in kept) <= KEPT_NOTIFICATION_CHARS
    assert kept[-1].text == "11" * 1024 * 1024  # the newest are the ones kept


async def test_a_store_over_the_size_limit_throws_and_keeps_what_fits(make_cm: MakeCodeMode) -> None:
    cm = await make_cm(limits=Limits(max_stored_bytes=1000))
    over = await cm.exec(
        'store("small", "x".repeat(100));'
        'try { store("big", "x".repeat(2000)) } catch (e) { text(e) }'
        'store("small", "y".repeat(800));'  # an overwrite counts only its growth
        'try { store("more", "z".repeat(300)) } catch (e) { text("refused") }'
    )
    assert over.status == "completed"
    assert texts(over) == [store_limit_error(1000), "refused"]
    assert cm.stored_values == {"small": "y" * 800}
    assert cm.delete_stored_value("small") and not cm.delete_stored_value("small")
    again = await cm.exec('store("more", "z".repeat(500)); text(String(load("small")))')
    assert (again.status, texts(again)) == ("completed", ["undefined"])
    assert cm.stored_values == {"more": "z" * 500}


@pytest.mark.slow
async def test_many_stored_keys_do_not_slow_later_execs_down(make_cm: MakeCodeMode) -> None:
    cm = await make_cm()
    filled = await cm.exec("for (let i = 0; i < 200000; i++) store('k' + i, i); text('stored')")
    assert texts(filled) == ["stored"]
    started = time.monotonic()
    for _ in range(20):
        assert texts(await cm.exec("text(1)")) == ["1"]
    later = (time.monotonic() - started) / 20
    assert later < 2.0  # liveness: it was a copy of every key per exec (30 s at 1e6 keys)
    assert texts(await cm.exec("text(load('k199999'))")) == ["199999"]


async def test_a_replaced_char_code_at_no_longer_corrupts_the_channel(make_cm: MakeCodeMode) -> None:
    """(It did: the prelude used the script's `charCodeAt`. A ring holding a corrupted message
    is test_forgery.py's `test_messages_read_before_a_corrupted_one_are_kept`.)"""
    cm = await make_cm()
    for _ in range(10):
        result = await cm.exec('text("a"); text("b"); String.prototype.charCodeAt = () => 65; text("c")')
        assert (result.status, texts(result), result.error) == ("completed", ["a", "b", "c"], None)
    assert texts(await cm.exec('text("next")')) == ["next"]


async def test_a_replaced_array_push_does_not_lose_output_or_hang(make_cm: MakeCodeMode) -> None:
    cm = await make_cm()
    result = await cm.exec(
        '// @exec: {"yield_time_ms": 30000}\n'
        'Array.prototype.push = () => 0; for (let i = 0; i < 5000; i++) text("x".repeat(1000)); text("end")'
    )
    assert result.status == "completed"
    assert texts(result) == ["x" * 1000] * 5000 + ["end"]


async def test_exit_inside_a_getter_or_to_json_ends_the_cell_like_exit(make_cm: MakeCodeMode) -> None:
    cm = await make_cm(tools=[lambda_tool()])
    scripts = [
        'text("a"); text({ toJSON() { exit() } }); text("not reached")',
        'text("a"); notify({ toJSON() { exit() } }); text("not reached")',
        'text("a"); store({ toString() { exit() } }, 1); text("not reached")',
        'text("a"); store("k", { get x() { exit() } }); text("not reached")',
        'text("a"); image({ get image_url() { exit() } }); text("not reached")',
        'text("a"); await tools.echo({ toJSON() { exit() } }); text("not reached")',
        'text("a"); forward_output({ toJSON() { exit() } }); text("not reached")',
        'text("a"); clearTimeout({ valueOf() { exit() } }); text("not reached")',
        'text("a"); throw { get stack() { exit() } }',
    ]
    for script in scripts:
        result = await cm.exec(script)
        assert (result.status, texts(result), result.error) == ("completed", ["a"], None), script


def lambda_tool() -> object:
    def echo(value: str = "") -> str:
        """Echo."""
        return value

    return echo


@pytest.mark.slow
async def test_a_flood_of_output_does_not_stall_other_sessions(make_cm: MakeCodeMode) -> None:
    flooding, other = await make_cm(), await make_cm()
    await other.exec("1")
    gaps: list[float] = []
    stop = asyncio.Event()

    async def tick() -> None:
        last = time.monotonic()
        while not stop.is_set():
            await asyncio.sleep(0.01)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    ticker = asyncio.ensure_future(tick())
    flood = await flooding.exec(
        '// @exec: {"yield_time_ms": 60000}\nfor (let i = 0; i < 200000; i++) text("x".repeat(100)); text("end")',
        max_output_tokens=100,
    )
    meanwhile = await other.exec('text("still here")')
    stop.set()
    await ticker
    assert flood.status == "completed" and texts(flood)[-1].endswith("end")
    assert texts(meanwhile) == ["still here"]
    assert max(gaps) < 1.0  # liveness: the loop kept running while 20 MB of output arrived


async def test_sessions_share_one_engine_and_keep_their_own_tools(make_cm: MakeCodeMode) -> None:
    def first() -> str:
        """First."""
        return "first"

    def second() -> str:
        """Second."""
        return "second"

    a: CodeMode = await make_cm(tools=[first])
    b: CodeMode = await make_cm(tools=[second])
    ra, rb = await asyncio.gather(
        a.exec("text(await tools.first({})); text(Object.keys(tools).join())"),
        b.exec("text(await tools.second({})); text(Object.keys(tools).join())"),
    )
    assert texts(ra) == ["first", "first"] and texts(rb) == ["second", "second"]
