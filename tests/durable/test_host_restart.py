"""Issue 22 point 4: a host SIGKILLed mid-cell, and a new process resuming the cell from the store
by replay: output already returned is not returned again, a `Promise.all` of calls that completed
out of order, `Date`/`Math.random` read before the kill, a stored value, and the call that was in
flight (run again for a tool that says `retry_on_restart`, else rejected in the script)."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import ISOLATION
from tests.postgres_support import fresh_postgres_schema

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CHILD = [sys.executable, "-m", "tests.durable._children"]
ROOT = Path(__file__).resolve().parents[2]


def _lines(process: subprocess.Popen[str]) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    assert process.stdout is not None
    for line in process.stdout:
        seen.append(json.loads(line))
        if seen[-1].get("ready"):
            return seen
    raise AssertionError(f"the first host ended early: {seen}")


def _run_first_host_until_killed(url: str, session_id: str) -> list[dict[str, Any]]:
    """What the first host reported before it was SIGKILLed, its cell waiting in `tools.slow`."""
    with subprocess.Popen(
        [*CHILD, "first", url, session_id, ISOLATION], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        text=True,
    ) as first:
        try:
            return _lines(first)
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=30)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'codemode.db'}"
    else:
        with fresh_postgres_schema() as url:
            yield url


@pytest.mark.parametrize("retry", ["retry", "no-retry"])
def test_a_killed_host_s_cell_resumes_in_a_new_process(store_url: str, retry: str) -> None:
    url = store_url
    session_id = uuid.uuid4().hex
    seen = _run_first_host_until_killed(url, session_id)
    observed = [text for line in seen if "texts" in line for text in line["texts"]]
    cell_id = seen[0]["cell_id"]
    assert cell_id == "2"  # cell 1 stored a value and completed
    assert observed[0].startswith("start ") and observed[1].startswith("together ab ")
    assert observed[-1] == "before slow"
    _, t0, r0 = observed[0].split(" ")

    second = subprocess.run(
        [*CHILD, "second", url, session_id, ISOLATION, cell_id, retry], cwd=ROOT, capture_output=True, text=True,
        timeout=120, check=False,
    )
    assert second.returncode == 0, second.stderr[-3000:]
    result, stored, again = (json.loads(line) for line in second.stdout.strip().splitlines())
    assert result["status"] == "completed", result
    slow = "slow gave fast now" if retry == "retry" else "slow gave error: "
    # Only what the first host had not returned; the clock and Math.random as they were read before.
    assert result["texts"][0].startswith(slow), result
    assert result["texts"][1:] == [f"end {t0} {r0}"], result
    if retry == "no-retry":
        assert "restarted while tools.slow was running" in result["texts"][0]
    assert stored == {"stored": {"earlier": "kept", "k": {"v": 42, "at": int(t0)}}}
    assert again["status"] == "failed" and "not found" in again["error"]  # closed: forgotten


def test_a_new_process_sees_stored_values_and_a_fresh_session_id_starts_empty(store_url: str) -> None:
    code = """
import asyncio, json, sys
from codemode import CodeMode
async def main():
    async with CodeMode(store=sys.argv[1], session_id=sys.argv[2], isolation=sys.argv[3]) as cm:
        if sys.argv[4] == "write":
            r = await cm.exec('store("a", [1, 2]); store("b", "x")')
            assert r.status == "completed", r
            cm.delete_stored_value("b")
            r = await cm.exec('text(JSON.stringify(load("a")))')
        else:
            r = await cm.exec('text(JSON.stringify([load("a"), load("b")]))')
        print(json.dumps([cm.session_id, cm.stored_values, r.items[0].text]))
asyncio.run(main())
"""
    url = store_url

    def run(session_id: str, mode: str) -> list[Any]:
        done = subprocess.run([sys.executable, "-c", code, url, session_id, ISOLATION, mode], cwd=ROOT,
                              capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout.strip().splitlines()[-1])

    assert run("s1", "write") == ["s1", {"a": [1, 2]}, "[1,2]"]
    assert run("s1", "read") == ["s1", {"a": [1, 2]}, "[[1,2],null]"]
    assert run("s2", "read") == ["s2", {}, "[null,null]"]


def test_a_journal_that_does_not_match_the_script_fails_the_resumed_cell(tmp_path: Path) -> None:
    """A store whose record of a call differs from the call the replay makes (here: edited)."""
    path = tmp_path / "diverge.db"
    url = f"sqlite:///{path}"
    session_id = uuid.uuid4().hex
    seen = _run_first_host_until_killed(url, session_id)
    cell_id = seen[0]["cell_id"]
    with sqlite3.connect(path) as db:
        edited = db.execute(
            "UPDATE codemode_cell_records SET body = replace(body, '\"call\":2,\"tool\":\"later\"',"
            " '\"call\":2,\"tool\":\"other\"')"
            " WHERE body LIKE '%\"call\":2,%'"
        ).rowcount
    assert edited == 1
    second = subprocess.run(
        [*CHILD, "second", url, session_id, ISOLATION, cell_id, "retry"], cwd=ROOT, capture_output=True, text=True,
        timeout=120, check=False,
    )
    assert second.returncode == 0, second.stderr[-3000:]
    result = json.loads(second.stdout.strip().splitlines()[0])
    assert result["status"] == "failed", result
    assert result["error"].startswith("replay diverged at call 2 (tools.later)"), result
    assert result["texts"] == []  # nothing handed out again, nothing new made up
