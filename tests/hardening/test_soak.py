"""A small soak (benchmarks/soak.py, `make soak` runs the full one): a long session stays flat.

In the suite's isolation mode (`make test` runs both). RSS and threads are the host's plus the engine worker processes' (with
`isolation="process"` the isolates and their threads live in the workers).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
from tests.conftest import ISOLATION
from tests.hardening._support import linux_only

pytestmark = [linux_only, pytest.mark.slow]

SOAK_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "soak.py"


def load_soak() -> ModuleType:
    spec = importlib.util.spec_from_file_location("codemode_soak", SOAK_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


async def test_small_soak_is_flat() -> None:
    isolation = ISOLATION
    soak = load_soak()
    report = await soak.soak(execs=500, terminates=50, concurrent=50, batches=2, warmup_batches=4,
                             isolation=isolation)
    print("\n".join(report.lines()))
    assert report.execs == 500 and report.terminates == 50 and report.concurrent_cells == 100
    assert report.open_cells_max == 50  # the concurrent cells really ran at once
    if isolation == "process":
        # The isolates of the concurrent cells are the engine workers' threads, not the host's.
        # (The workers' pools may already hold enough prepared isolates, each with its thread,
        # so their thread count need not rise above where it started.)
        assert report.engine_pids_start, "no engine worker processes were measured"
        assert report.engine_threads_max >= report.open_cells_max
        assert report.host_threads_max - report.host_threads_start <= 3
        assert report.engine_pids_end == report.engine_pids_start  # no worker died or was replaced
    else:
        assert not report.engine_pids_start and report.engine_threads_max == 0
        assert report.host_threads_max > report.host_threads_start  # more cells than its pool holds
    # Everything (host + workers) comes back flat once quiet.
    assert soak.check(report, rss_tolerance_mib=5, thread_tolerance=3, engine_rss_tolerance_mib=3) == []
