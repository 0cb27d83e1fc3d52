"""Host processes for the durable-cell tests: each runs one `CodeMode` on a store and reports on
stdout as JSON lines, so a test can SIGKILL it at a known point and resume in another process."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from codemode import CodeMode, ExecResult, Tool, to_model

SCRIPT = r"""
const t0 = Date.now(); const r0 = Math.random();
text("start " + t0 + " " + r0);
const [a, b] = await Promise.all([tools.later({ms: 60, v: "a"}), tools.later({ms: 5, v: "b"})]);
text("together " + a + b + " " + new Date().getTime());
store("k", {v: 42, at: t0});
await new Promise(r => setTimeout(r, 10));
text("before slow");
let s;
try { s = await tools.slow({}); } catch (e) { s = "error: " + e; }
text("slow gave " + s);
text("end " + t0 + " " + r0);
"""


async def later(args: dict[str, Any]) -> str:
    await asyncio.sleep(args["ms"] / 1000)
    return args["v"]


def result_json(result: ExecResult) -> str:
    texts = [getattr(item, "text", "") for item in result.items]
    return json.dumps({"status": result.status, "cell_id": result.cell_id, "texts": texts, "error": result.error,
                       "model": str(to_model(result, "responses"))[:2000]})


async def first_host(url: str, session_id: str, isolation: str) -> None:
    """Runs SCRIPT until it waits in `tools.slow` (which never returns here), reports, then idles."""
    entered = asyncio.Event()

    async def slow(args: dict[str, Any]) -> str:
        entered.set()
        await asyncio.Event().wait()
        return "never"

    tools = [Tool("later", "Later.", later), Tool("slow", "Slow.", slow)]
    async with CodeMode(tools=tools, store=url, session_id=session_id, isolation=isolation) as cm:
        earlier = await cm.exec('store("earlier", "kept")')
        assert earlier.status == "completed", earlier
        result = await cm.exec(SCRIPT, yield_time_ms=100)
        while "before slow" not in " ".join(getattr(i, "text", "") for i in result.items):
            print(result_json(result), flush=True)
            assert result.status == "running", result
            assert result.cell_id is not None
            result = await cm.wait(result.cell_id, yield_time_ms=100)
        await entered.wait()
        print(result_json(result), flush=True)
        print(json.dumps({"ready": True}), flush=True)
        await asyncio.Event().wait()


async def second_host(url: str, session_id: str, isolation: str, cell_id: str, retry: bool) -> None:
    async def slow(args: dict[str, Any]) -> str:
        return "fast now"

    tools = [Tool("later", "Later.", later), Tool("slow", "Slow.", slow, retry_on_restart=retry)]
    async with CodeMode(tools=tools, store=url, session_id=session_id, isolation=isolation) as cm:
        result = await cm.wait(cell_id, yield_time_ms=30_000)
        print(result_json(result), flush=True)
        print(json.dumps({"stored": cm.stored_values}), flush=True)
        again = await cm.wait(cell_id)
        print(result_json(again), flush=True)


if __name__ == "__main__":
    role, *rest = sys.argv[1:]
    if role == "first":
        asyncio.run(first_host(*rest))
    else:
        url, session_id, isolation, cell_id, retry = rest
        asyncio.run(second_host(url, session_id, isolation, cell_id, retry == "retry"))
