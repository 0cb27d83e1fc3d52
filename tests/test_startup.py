"""The README quick start, run as a user would: each time in a fresh Python process.

A fresh process is the only place where engine start-up (worker processes, V8 initialisation,
the first isolate) happens from nothing, so start-up races show here and nowhere else. A few
processes run at once to make such races likelier. The code is read from README.md at test
time, so this test breaks if the README's first example does.
"""

from __future__ import annotations

import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
RUNS = 15
PARALLEL = 3
TIMEOUT_S = 60  # a liveness bound per process, not a speed requirement
SESSION_CALL = "CodeMode(tools=[add])"


def readme_quick_start() -> str:
    """The first ```python block of README.md."""
    match = re.search(r"^```python\n(.*?)^```", (REPO / "README.md").read_text(encoding="utf-8"), re.S | re.M)
    assert match is not None, "README.md has no ```python block"
    return match.group(1)


def quick_start(isolation: str | None) -> str:
    """The quick start, with `isolation=` added to its `CodeMode(...)` call when given."""
    code = readme_quick_start()
    assert code.count(SESSION_CALL) == 1, f"the README quick start no longer calls {SESSION_CALL}"
    if isolation is not None:
        code = code.replace(SESSION_CALL, f"CodeMode(tools=[add], isolation={isolation!r})")
    return code


@dataclass(frozen=True)
class Failure:
    """What went wrong in one run: a one-line summary, and the full output for the first one."""

    summary: str
    output: str


def run_once(code: str) -> Failure | None:
    """Run the code in a fresh interpreter; None if it behaved."""
    try:
        done = subprocess.run(
            [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=TIMEOUT_S
        )
    except subprocess.TimeoutExpired as exc:
        return Failure(f"no exit within {TIMEOUT_S} s", f"stdout={exc.stdout!r}\nstderr={exc.stderr!r}")
    problems = []
    if done.returncode != 0:
        problems.append(f"exit code {done.returncode}")
    if "Script completed" not in done.stdout or "5" not in done.stdout:
        problems.append("no completed result with 5 in the output")
    if "Traceback" in done.stderr:
        problems.append("a traceback on stderr")  # e.g. a callback failing at shutdown
    if not problems:
        return None
    last_line = done.stderr.strip().splitlines()[-1:] or [""]
    return Failure(f"{', '.join(problems)}: {last_line[0]}", f"stdout:\n{done.stdout}\nstderr:\n{done.stderr[-6000:]}")


@pytest.mark.slow
@pytest.mark.parametrize("isolation", [None, "in-process"], ids=["default", "in-process"])
def test_readme_quick_start_in_fresh_processes(isolation: str | None) -> None:
    code = quick_start(isolation)
    with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        outcomes = list(pool.map(run_once, [code] * RUNS))
    failures = [(i + 1, failure) for i, failure in enumerate(outcomes) if failure is not None]
    if failures:
        lines = [f"run {run}: {failure.summary}" for run, failure in failures]
        first_run, first = failures[0]
        pytest.fail(
            f"{len(failures)} of {RUNS} runs failed:\n" + "\n".join(lines) + f"\n\nrun {first_run}'s output:\n{first.output}",
            pytrace=False,
        )
