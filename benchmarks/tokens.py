"""The token table: what a model is sent per turn, and what tool results reach it, with direct
tool calling against code mode. No model and no network: real tools on this machine (the npm
MCP server `server-everything`, the GitHub REST spec served by Stoplight Prism on loopback)
and a real tokenizer that works offline (npm `gpt-tokenizer`, encoding o200k_base, via node).

Usage:
    python benchmarks/tokens.py [--results benchmarks/RESULTS.md] [--smoke] [--json out.json]

Per turn: the tool definitions a model is sent. Direct: every tool as a Chat Completions function
tool (name, description, JSON Schema parameters); code mode: `cm.tool_specs("chat")`, the `exec`
and `wait` definitions, at the default description budget, and with every tool declared
(no budget) for comparison. Catalogs: server-everything's tools first, then GitHub operations
in spec order, then GitHub Enterprise Server 3.19's (a second API, for the 2,000+ rows), up to
the size of the row.

Per task (scripted, the same work both ways): direct, the calls a model would make round by
round and the results it reads (MCP: the content texts; HTTP: the response body as JSON);
code mode, one script and the exec output it reads. Task input tokens add up every model
request of the task (each sends the definitions and the conversation so far), for a catalog
of a given size that holds the task's tools, as Bifrost's A/B counts input tokens.

With `--results`, the section between its markers in that file is replaced (or appended).
`--smoke`: catalogs of 10 and 30 tools, from the part of the GitHub spec the tasks use (Prism
and the toolset then read it in seconds, not a minute): does it still run?
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))

from codemode import CodeMode, Tool, to_model  # noqa: E402
from codemode.tools.mcp import McpToolset  # noqa: E402
from codemode.tools.openapi import OpenApiToolset  # noqa: E402
from openapi_servers.prism import GITHUB_SPEC, prism, subset_spec  # noqa: E402
from report_file import replace_section  # noqa: E402

NODE_PACKAGES = ROOT / "tests" / "openapi_servers"
EVERYTHING_BIN = ROOT / "tests" / "mcp_servers" / "node_modules" / ".bin" / "mcp-server-everything"
CATALOG_SIZES = (10, 96, 100, 251, 500, 508, 1000, 2000, 2274)
GHES_SPEC = GITHUB_SPEC.parent / "ghes-3.19.json"  # the second API of the 2,000+ rows
SMOKE_CATALOG_SIZES = (10, 30)
TASK_PATHS = (  # what the tasks call: a smoke run serves only these
    "/repos/{owner}/{repo}", "/repos/{owner}/{repo}/issues", "/repos/{owner}/{repo}/releases/latest",
    "/repos/{owner}/{repo}/labels", "/repos/{owner}/{repo}/pulls", "/repos/{owner}/{repo}/pulls/{pull_number}/files",
    "/repos/{owner}/{repo}/contributors", "/repos/{owner}/{repo}/commits",
    "/repos/{owner}/{repo}/commits/{ref}/status", "/search/repositories", "/users/{username}",
    "/users/{username}/repos",
)
BIFROST = {96: -58.0, 251: -84.5, 508: -92.8}  # input tokens, code mode vs direct (their public A/B)
TASK_CATALOG = 508  # the catalog size the per-task input totals assume (Bifrost's largest)
START_MARK = "<!-- tokens.py: start -->"
END_MARK = "<!-- tokens.py: end -->"
_COUNT_SCRIPT = """
import { countTokens } from "gpt-tokenizer/encoding/o200k_base";
let input = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => { input += chunk; });
process.stdin.on("end", () => { process.stdout.write(JSON.stringify(JSON.parse(input).map((t) => countTokens(t)))); });
"""


def count_tokens(texts: Sequence[str]) -> list[int]:
    """o200k_base token counts of `texts`, by gpt-tokenizer in one node process."""
    done = subprocess.run(
        ["node", "--input-type=module", "-e", _COUNT_SCRIPT],
        input=json.dumps(list(texts)),
        capture_output=True,
        text=True,
        cwd=NODE_PACKAGES,
        check=True,
    )
    return list(json.loads(done.stdout))


def tokenizer_version() -> str:
    lock = json.loads((NODE_PACKAGES / "package-lock.json").read_text(encoding="utf-8"))
    return str(lock["packages"]["node_modules/gpt-tokenizer"]["version"])


# -- direct tool calling ----------------------------------------------------------------------


def function_tool(tool: Tool, name: str) -> dict[str, Any]:
    """A tool as direct function calling sends it (Chat Completions `tools` entry)."""
    parameters = tool.input_schema or {"type": "object", "properties": {}}
    return {
        "type": "function",
        "function": {"name": name, "description": tool.description, "parameters": parameters},
    }


async def call_directly(tool: Tool, arguments: dict[str, Any]) -> Any:
    """A direct call as an agent framework makes it: validate, run the handler, read the result
    back as JSON."""
    tool.validate(arguments)
    result = tool.handler(arguments)
    if inspect.isawaitable(result):
        result = await result
    return json.loads(json.dumps(result, ensure_ascii=False))


def direct_result_text(name: str, result: Any) -> str:
    """What a model reads back from a direct call: MCP content texts, or the HTTP body as JSON."""
    if name.startswith("mcp__") and isinstance(result, dict):
        return "\n".join(
            block.get("text", "") for block in result.get("content", []) if isinstance(block, dict)
        )
    return json.dumps(result, ensure_ascii=False)


@dataclass
class DirectRun:
    """The calls and results of one task done with direct tool calling, round by round."""

    rounds: list[list[tuple[str, str]]] = field(default_factory=list)  # (call JSON, result text)


@dataclass(frozen=True)
class Task:
    """One job, written as the direct calls a model would make and as the code-mode script."""

    name: str
    prompt: str
    direct: Callable[[Callable[[list[tuple[str, dict[str, Any]]]], Awaitable[list[Any]]]], Awaitable[None]]
    script: str


R = {"owner": "octocat", "repo": "hello-world"}


async def _sums(batch: Any) -> None:
    await batch(
        [("mcp__everything__get_sum", {"a": a, "b": b}) for a, b in ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10))]
    )


async def _overview(batch: Any) -> None:
    await batch([("github__repos_get", R)])


async def _open_issues(batch: Any) -> None:
    await batch([("github__issues_list_for_repo", {**R, "state": "open", "per_page": 30})])


async def _latest_release(batch: Any) -> None:
    await batch([("github__repos_get_latest_release", R)])


async def _file_a_bug(batch: Any) -> None:
    await batch([("github__issues_create_label", {**R, "name": "bug", "color": "d73a4a"})])
    await batch([("github__issues_create", {**R, "title": "Crash on start", "labels": ["bug"]})])


async def _pr_files(batch: Any) -> None:
    (pulls,) = await batch([("github__pulls_list", {**R, "state": "open"})])
    await batch([("github__pulls_list_files", {**R, "pull_number": pull["number"]}) for pull in pulls])


async def _contributors(batch: Any) -> None:
    await batch([("github__repos_list_contributors", {**R, "per_page": 100})])


async def _ci_status(batch: Any) -> None:
    (commits,) = await batch([("github__repos_list_commits", {**R, "per_page": 1})])
    await batch([("github__repos_get_combined_status_for_ref", {**R, "ref": commits[0]["sha"]})])


async def _search(batch: Any) -> None:
    await batch(
        [("github__search_repos", {"q": "topic:mcp language:python", "sort": "stars", "per_page": 10})]
    )


async def _profile(batch: Any) -> None:
    await batch([("github__users_get_by_username", {"username": "octocat"}),
                 ("github__repos_list_for_user", {"username": "octocat", "per_page": 100})])  # fmt: skip


TASKS = (
    Task("five sums (MCP)", "Add 1+2, 3+4, 5+6, 7+8 and 9+10 with the sum tool.", _sums,
         "const pairs = [[1, 2], [3, 4], [5, 6], [7, 8], [9, 10]];\n"
         "const sums = await Promise.all(pairs.map(([a, b]) => tools.mcp__everything__get_sum({ a, b })));\n"
         "text(sums.map((r) => r.content[0].text).join(\"\\n\"));"),
    Task("repository overview", "How popular is octocat/hello-world, and what is its default branch?", _overview,
         'const r = await tools.github__repos_get({ owner: "octocat", repo: "hello-world" });\n'
         "text({ stars: r.stargazers_count, forks: r.forks_count, open_issues: r.open_issues_count, "
         "branch: r.default_branch });"),
    Task("open issue titles", "List the titles of the open issues of octocat/hello-world.", _open_issues,
         'const issues = await tools.github__issues_list_for_repo({ owner: "octocat", repo: "hello-world", '
         'state: "open", per_page: 30 });\n'
         'text(issues.map((i) => `#${i.number} ${i.title}`).join("\\n"));'),
    Task("latest release tag", "What is the latest release of octocat/hello-world?", _latest_release,
         'const r = await tools.github__repos_get_latest_release({ owner: "octocat", repo: "hello-world" });\n'
         "text(`${r.tag_name} (${r.published_at})`);"),
    Task("file a bug", "Create a `bug` label and file an issue \"Crash on start\" with it.", _file_a_bug,
         'const repo = { owner: "octocat", repo: "hello-world" };\n'
         'await tools.github__issues_create_label({ ...repo, name: "bug", color: "d73a4a" });\n'
         'const issue = await tools.github__issues_create({ ...repo, title: "Crash on start", labels: ["bug"] });\n'
         "text(`filed #${issue.number}`);"),
    Task("files of open PRs", "Which files do the open pull requests of octocat/hello-world touch?", _pr_files,
         'const repo = { owner: "octocat", repo: "hello-world" };\n'
         'const pulls = await tools.github__pulls_list({ ...repo, state: "open" });\n'
         "for (const p of pulls) {\n"
         "  const files = await tools.github__pulls_list_files({ ...repo, pull_number: p.number });\n"
         '  text(`#${p.number}: ${files.map((f) => f.filename).join(", ")}`);\n'
         "}"),
    Task("top contributors", "Who are the top 3 contributors of octocat/hello-world?", _contributors,
         'const people = await tools.github__repos_list_contributors({ owner: "octocat", repo: "hello-world", '
         "per_page: 100 });\n"
         'text(people.sort((a, b) => b.contributions - a.contributions).slice(0, 3).map((p) => `${p.login} '
         '${p.contributions}`).join("\\n"));'),
    Task("CI status of the last commit", "Is the latest commit of octocat/hello-world green?", _ci_status,
         'const repo = { owner: "octocat", repo: "hello-world" };\n'
         "const [last] = await tools.github__repos_list_commits({ ...repo, per_page: 1 });\n"
         "const status = await tools.github__repos_get_combined_status_for_ref({ ...repo, ref: last.sha });\n"
         "text(`${last.sha.slice(0, 7)}: ${status.state}`);"),
    Task("search repositories", "Find the most starred Python MCP repositories.", _search,
         'const found = await tools.github__search_repos({ q: "topic:mcp language:python", sort: "stars", '
         "per_page: 10 });\n"
         'text(found.items.map((r) => `${r.full_name} ★${r.stargazers_count}`).join("\\n"));'),
    Task("user profile", "Summarise octocat: name, followers and their repositories.", _profile,
         "const [user, repos] = await Promise.all([tools.github__users_get_by_username({ username: \"octocat\" }),\n"
         '  tools.github__repos_list_for_user({ username: "octocat", per_page: 100 })]);\n'
         "text(`${user.name}, ${user.followers} followers; repos: ${repos.map((r) => r.name).join(\", \")}`);"),
)  # fmt: skip


# -- measuring --------------------------------------------------------------------------------


async def definitions(tools: Sequence[Tool]) -> dict[str, str]:
    """The per-turn definition texts for one catalog: direct, code mode, code mode without budget."""
    async with (
        CodeMode(tools=list(tools)) as cm,
        CodeMode(tools=list(tools), description_budget_tokens=None) as full,
    ):
        direct = [function_tool(entry.tool, entry.global_name) for entry in cm.tools]
        return {
            "direct": json.dumps(direct, ensure_ascii=False),
            "code_mode": json.dumps(cm.tool_specs("chat"), ensure_ascii=False),
            "declared": json.dumps(full.tool_specs("chat"), ensure_ascii=False),
        }


async def run_task(cm: CodeMode, by_name: dict[str, Tool], task: Task) -> dict[str, Any]:
    run = DirectRun()

    async def batch(calls: list[tuple[str, dict[str, Any]]]) -> list[Any]:
        results = [await call_directly(by_name[name], args) for name, args in calls]
        run.rounds.append(
            [
                (json.dumps({"name": name, "arguments": json.dumps(args)}), direct_result_text(name, result))
                for (name, args), result in zip(calls, results, strict=True)
            ]
        )
        return results

    await task.direct(batch)
    result = await cm.exec(task.script)
    if result.status != "completed":
        raise RuntimeError(f"task {task.name!r}: {result.error}")
    output = to_model(result, "chat")
    output_text = "".join(part.get("text", "") for part in output)
    return {"name": task.name, "prompt": task.prompt, "rounds": run.rounds, "script": task.script,
            "output": output_text}  # fmt: skip


async def measure(
    log_dir: Path, sizes: Sequence[int], spec: Path = GITHUB_SPEC, second_spec: Path | None = GHES_SPEC
) -> dict[str, Any]:
    everything = McpToolset(
        {"mcpServers": {"everything": {"command": str(EVERYTHING_BIN), "args": ["stdio"]}}}
    )
    with prism(
        spec, log_dir / "prism.log", errors=False
    ) as base_url:  # mocks even where examples break the schema
        async with everything:
            apis = {"github": {"spec": str(spec), "base_url": base_url}}
            if second_spec is not None:  # only listed: the tasks call github's operations
                apis["ghes"] = {"spec": str(second_spec), "base_url": base_url}
            github = OpenApiToolset(apis)
            async with github:
                pool = [*everything.tools, *github.tools]
                catalogs = {size: await definitions(pool[:size]) for size in sizes}
                async with CodeMode(tools=pool) as cm:
                    by_name = {entry.global_name: entry.tool for entry in cm.tools}
                    tasks = [await run_task(cm, by_name, task) for task in TASKS]
    return {"catalogs": catalogs, "tasks": tasks}


def tally(raw: dict[str, Any]) -> dict[str, Any]:
    """Token counts of every text measured, in one tokenizer run."""
    texts: list[str] = []

    def slot(text: str) -> int:
        texts.append(text)
        return len(texts) - 1

    catalog_slots = {
        size: {k: slot(v) for k, v in texts_.items()} for size, texts_ in raw["catalogs"].items()
    }
    task_slots = [
        {"prompt": slot(t["prompt"]), "script": slot(t["script"]), "output": slot(t["output"]),
         "rounds": [[(slot(call), slot(result)) for call, result in round_] for round_ in t["rounds"]]}
        for t in raw["tasks"]
    ]  # fmt: skip
    counts = count_tokens(texts)
    catalogs = {size: {k: counts[i] for k, i in slots.items()} for size, slots in catalog_slots.items()}
    tasks = []
    for task, slots in zip(raw["tasks"], task_slots, strict=True):
        rounds = [[(counts[c], counts[r]) for c, r in round_] for round_ in slots["rounds"]]
        tasks.append({"name": task["name"], "prompt": counts[slots["prompt"]], "script": counts[slots["script"]],
                      "output": counts[slots["output"]], "rounds": rounds})  # fmt: skip
    return {"catalogs": catalogs, "tasks": tasks}


def task_input_tokens(
    task: dict[str, Any], direct_definitions: int, code_definitions: int
) -> tuple[int, int]:
    """Input tokens over every model request of the task, each sending definitions + history."""
    history = task["prompt"]
    direct = 0
    for round_ in task["rounds"]:
        direct += direct_definitions + history  # the request that makes this round's calls
        history += sum(call + result for call, result in round_)
    direct += direct_definitions + history  # the request that answers
    code = (code_definitions + task["prompt"]) + (
        code_definitions + task["prompt"] + task["script"] + task["output"]
    )
    return direct, code


# -- the report -------------------------------------------------------------------------------


def change(new: float, old: float) -> str:
    return f"{(new / old - 1) * 100:+.1f} %"


def section(counts: dict[str, Any], seconds: float) -> list[str]:
    catalogs = counts["catalogs"]
    task_catalog = TASK_CATALOG if TASK_CATALOG in catalogs else max(catalogs)  # a smoke run has no 508
    lines = [
        START_MARK,
        "## Tokens: direct tool calling vs code mode (`benchmarks/tokens.py`)",
        "",
        f"Counted with o200k_base (npm `gpt-tokenizer` {tokenizer_version()}, offline) in {seconds:.0f} s; no model, "
        "no network. Catalogs: server-everything's 12 tools, then GitHub REST operations (npm `@octokit/openapi`) "
        "in spec order, then GitHub Enterprise Server 3.19's for the 2,000+ rows. Definitions are Chat Completions function tools as compact JSON: direct, every tool's name, "
        'description and parameter schema; code mode, `cm.tool_specs("chat")` (`exec` + `wait`) at the default '
        "description budget (2,000 tokens of declarations), and with every tool declared (no budget).",
        "",
        "### Sent every turn: the tool definitions",
        "",
        "| tools | direct | code mode | change | code mode, every tool declared | change | Bifrost's A/B (input tokens) |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for size, row in catalogs.items():
        bifrost = f"{BIFROST[size]:+.1f} %" if size in BIFROST else ""
        lines.append(f"| {size:,} | {row['direct']:,} | {row['code_mode']:,} | {change(row['code_mode'], row['direct'])} "
                     f"| {row['declared']:,} | {change(row['declared'], row['direct'])} | {bifrost} |")  # fmt: skip
    definitions_at = catalogs[task_catalog]
    lines += [
        "",
        "Bifrost's figures are input tokens of whole agent runs (their published A/B, pass rate held), ours the "
        "definitions alone; the per-task totals below add the conversation as Bifrost's do. Over the budget the "
        "exec description lists one line per tool (name and first sentence, by server); past the listing's own "
        "budget (1,500 tokens) it names each server or API with its tool count and a few of its tools, so the "
        "definitions stay flat at any size, and scripts find the rest with `tools_search` / `tools_describe`. Below it "
        "(the 10-tool row) code mode costs more than direct calling: the exec text itself (usage, helpers, the "
        "shared MCP types) is about 2,500 tokens. Declaring every tool costs more than the JSON definitions "
        "because each declaration also types the tool's result, which function definitions do not carry.",
        "",
        "### Scripted tasks: tool results reaching the model",
        "",
        "Each task is written twice: as the calls a model makes directly (round by round, where a call needs an "
        "earlier result) and as one code-mode script (`text(...)` only what answers the task). The tools really "
        "run: server-everything over stdio, the GitHub operations over HTTP against Prism serving the spec's "
        "examples (a real API returns more items per list, so direct results are, if anything, undercounted). "
        f"Task input = every model request of the task, each sending the definitions of a {task_catalog}-tool "
        "catalog that holds the task's tools plus the conversation so far (direct: a request per round and one "
        "to answer; code mode: one to write the script and one to answer).",
        "",
        "| task | direct calls (rounds) | results, direct | results, code mode | change | task input, direct "
        "| task input, code mode | change |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    totals = [0, 0, 0, 0]
    for task in counts["tasks"]:
        calls = sum(len(round_) for round_ in task["rounds"])
        direct_results = sum(result for round_ in task["rounds"] for _, result in round_)
        direct_input, code_input = task_input_tokens(
            task, definitions_at["direct"], definitions_at["code_mode"]
        )
        for i, value in enumerate((direct_results, task["output"], direct_input, code_input)):
            totals[i] += value
        lines.append(f"| {task['name']} | {calls} ({len(task['rounds'])}) | {direct_results:,} | {task['output']:,} "
                     f"| {change(task['output'], direct_results)} | {direct_input:,} | {code_input:,} "
                     f"| {change(code_input, direct_input)} |")  # fmt: skip
    lines += [
        f"| **all {len(counts['tasks'])} tasks** | | **{totals[0]:,}** | **{totals[1]:,}** | "
        f"**{change(totals[1], totals[0])}** | **{totals[2]:,}** | **{totals[3]:,}** | **{change(totals[3], totals[2])}** |",
        "",
        "Code mode's result tokens include the exec output header (`Script completed`, wall time); its task input "
        "includes the script the model wrote, direct's the call arguments.",
        END_MARK,
    ]
    return lines



def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument(
        "--results", type=Path, help="replace this file's token section (e.g. benchmarks/RESULTS.md)"
    )
    parser.add_argument("--smoke", action="store_true", help="catalogs of 10 and 30 tools only: does it still run?")
    parser.add_argument("--json", type=Path, help="also write the counts as JSON")
    args = parser.parse_args(argv)
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as log_dir:
        if args.smoke:
            spec = subset_spec(GITHUB_SPEC, TASK_PATHS, Path(log_dir) / "github-tasks.openapi.json")
            raw = asyncio.run(measure(Path(log_dir), SMOKE_CATALOG_SIZES, spec, second_spec=None))
        else:
            raw = asyncio.run(measure(Path(log_dir), CATALOG_SIZES))
    counts = tally(raw)
    lines = section(counts, time.monotonic() - started)
    print("\n".join(lines))
    if args.results is not None:
        replace_section(args.results, START_MARK, END_MARK, "\n".join(lines) + "\n")
    if args.json is not None:
        args.json.write_text(json.dumps(counts, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
