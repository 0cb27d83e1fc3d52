"""A small soak (benchmarks/soak.py, `make soak` runs the full one): a long session stays flat."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from tests.hardening._support import linux_only

pytestmark = linux_only

SOAK_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "soak.py"


def load_soak() -> ModuleType:
    spec = importlib.util.spec_from_file_location("codemode_soak", SOAK_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


async def test_small_soak_is_flat() -> None:
    soak = load_soak()
    report = await soak.soak(execs=500, terminates=50, concurrent=50, batches=2, warmup_batches=4)
    print("\n".join(report.lines()))
    assert report.execs == 500 and report.terminates == 50 and report.concurrent_cells == 100
    assert report.open_cells_max == 50  # the concurrent cells really ran at once
    assert report.threads_max > report.threads_start
    assert soak.check(report, rss_tolerance_mib=5, thread_tolerance=3) == []
