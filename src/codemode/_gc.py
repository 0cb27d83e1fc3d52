"""Garbage-collector settings for a process that serves many sessions (`codemode mcp`)."""

from __future__ import annotations

import gc

# Collect the youngest generation after this many net allocations (CPython's default: 700).
# Serving an exec allocates thousands of short-lived objects, nearly all freed by reference
# counting. At the default the collector ran about once per exec and took ~1 ms of the server's
# ~6 ms of CPU per exec under load (benchmarks/http_load.py, with start-up frozen: 0.8 ms); at
# this threshold it takes about 0.5 ms, and the cyclic garbage it waits for is a few MiB at most.
YOUNG_THRESHOLD = 10_000


def settle_for_serving() -> None:
    """Freeze what start-up loaded (modules, schemas, validators: alive for good) out of every
    later collection, and collect young objects less often."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
