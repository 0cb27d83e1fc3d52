"""The codemode demo: a scripted "model" drives code mode over example Python tools.

Every step prints the model's `exec`/`wait` call and exactly what the model receives back
(OpenAI Responses API format: a list of content items), binary content abbreviated.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from codemode import CodeMode, ExecResult, to_model
from example_tools import TOOLS

RULE = "─" * 78


def show_call(tool: str, payload: str) -> None:
    print(RULE)
    print(f"model → {tool}")
    print("\n".join("    " + line for line in payload.splitlines()))


def show_result(result: ExecResult) -> None:
    output = abbreviated(to_model(result, "responses"))
    print("model ←")
    print("\n".join("    " + line for line in json.dumps(output, indent=2, ensure_ascii=False).splitlines()))


def abbreviated(value: object) -> object:
    """`value` with each base64 `data:` URL shown as `<image/png, 5.9 KB>` (the model gets it whole)."""
    if isinstance(value, dict):
        return {key: abbreviated(item) for key, item in value.items()}
    if isinstance(value, list):
        return [abbreviated(item) for item in value]
    if isinstance(value, str) and value.startswith("data:") and ";base64," in value:
        mime_type, _, data = value.removeprefix("data:").partition(";base64,")
        return f"<{mime_type}, {len(data.rstrip('=')) * 3 // 4 / 1024:.1f} KB>"
    return value


async def main() -> None:
    notes: list[str] = []
    async with CodeMode(TOOLS, on_notify=lambda cell, text: notes.append(f"cell {cell}: {text}")) as cm:
        print("The exec tool the model sees lists these nested tools:")
        for tool in cm.tools:
            print(f"  tools.{tool.global_name}")

        steps: list[tuple[str, str | dict[str, object]]] = [
            (
                "exec",
                """const cities = await tools.list_cities();
const forecasts = await Promise.all(cities.map((city) => tools.get_forecast({ city })));
const warm = forecasts.filter((f) => f.temperature_c > 15).map((f) => f.city);
store("warm", warm);
text(`${forecasts.length} forecasts, warm in: ${warm.join(", ")}`);
text(forecasts.map((f) => `${f.city}: ${f.temperature_c}°C, ${f.conditions}`).join("\\n"));""",
            ),
            (
                "exec",
                """// @exec: {"yield_time_ms": 300}
notify("rendering the report, this takes a moment");
text("started");
const report = await tools.build_report({ title: `Warm cities: ${load("warm").join(", ")}` });
text(report);""",
            ),
            ("wait", {"cell_id": "2"}),
            (
                "exec",
                """try {
  await tools.get_forecast({ city: "Atlantis" });
} catch (error) {
  text(`tool failed: ${error}`);
}
const broken = undefined;
text(broken.length);""",
            ),
        ]
        for tool, payload in steps:
            if tool == "exec":
                assert isinstance(payload, str)
                show_call("exec", payload)
                result = await cm.exec(payload)
            else:
                assert isinstance(payload, dict)
                show_call("wait", json.dumps(payload))
                result = await cm.wait(**payload)  # type: ignore[arg-type]
            show_result(result)
        print(RULE)
        print("notify() texts delivered to the host:", notes)
        print("stored values:", cm.stored_values)

    await mcp_demo()


async def mcp_demo() -> None:
    """The same loop over a real MCP server (npm @modelcontextprotocol/server-everything)."""
    server = Path(__file__).parent.parent / "tests/mcp_servers/node_modules/.bin/mcp-server-everything"
    if not server.exists():
        print("(skipping the MCP part: run `make demo`, which installs the npm MCP servers)")
        return
    config = {"mcpServers": {"everything": {"command": str(server), "args": ["stdio"]}}}
    async with CodeMode(mcp_servers=config) as cm:
        print(RULE)
        print("MCP server `everything` started; the script sees", len(cm.tools), "of its tools, e.g.")
        for tool in cm.tools[:4]:
            print(f"  tools.{tool.global_name}")
        source = """const sums = await Promise.all([[1, 2], [3, 4], [5, 6]].map(([a, b]) =>
  tools.mcp__everything__get_sum({ a, b })));
const total = sums.map((r) => Number(r.content[0].text.match(/is (\\d+)/)[1])).reduce((x, y) => x + y);
const echo = await tools.mcp__everything__echo({ message: `total is ${total}` });
text(echo.content[0].text);
const picture = await tools.mcp__everything__get_tiny_image({});
image(picture.content.find((block) => block.type === "image"));"""
        show_call("exec", source)
        show_result(await cm.exec(source))
        print(RULE)


if __name__ == "__main__":
    asyncio.run(main())
