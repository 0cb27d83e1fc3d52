"""`tools_search` finds the tool a user's request needs (issue 21, point 4).

Requests in plain words, as a user asks an agent, over a real catalog: the GitHub REST API
(npm `@octokit/openapi`, 1,200+ operations) and the test MCP servers (npm `server-everything`
and `mcp_servers/py_server.py`). Each names the tools that do the job (any one counts). The
right tool must be in the top 3 for at least 90 % of them and first for at least 70 %; the
rates are printed (`pytest -s`) so a change to the ranking shows what it costs or gains.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from codemode import Tool
from codemode._describe import ToolCatalog, nested_tool_table
from codemode.tools.mcp import McpToolset
from codemode.tools.openapi import OpenApiToolset

TESTS = Path(__file__).parent
GITHUB_SPEC = TESTS / "openapi_servers/node_modules/@octokit/openapi/generated/api.github.com.json"
EVERYTHING_BIN = TESTS / "mcp_servers/node_modules/.bin/mcp-server-everything"
PY_SERVER = TESTS / "mcp_servers/py_server.py"
TOP = 3
MIN_TOP_3 = 0.90
MIN_FIRST = 0.70

QUERIES: tuple[tuple[str, frozenset[str]], ...] = tuple(
    (query, frozenset(expected.split()))
    for query, expected in (
        # issues
        ("add a comment to an issue", "github__issues_create_comment"),
        ("close an issue", "github__issues_update"),
        ("file a new bug report issue", "github__issues_create"),
        ("add a label to an issue", "github__issues_add_labels"),
        ("create a new label for a repository", "github__issues_create_label"),
        ("assign an issue to someone", "github__issues_add_assignees"),
        ("lock the conversation on an issue", "github__issues_lock"),
        ("create a milestone", "github__issues_create_milestone"),
        ("list the open issues of a repository", "github__issues_list_for_repo"),
        ("react with a thumbs up to an issue comment", "github__reactions_create_for_issue_comment"),
        # pull requests
        ("open a pull request from my feature branch", "github__pulls_create"),
        ("merge a pull request", "github__pulls_merge"),
        ("list open pull requests", "github__pulls_list"),
        ("which files changed in a pull request", "github__pulls_list_files"),
        ("request a review from a teammate on a pull request", "github__pulls_request_reviewers"),
        ("approve a pull request", "github__pulls_create_review github__pulls_submit_review"),
        # repositories, branches, files
        ("list repositories of an organization", "github__repos_list_for_org"),
        ("create a new repository for me", "github__repos_create_for_authenticated_user"),
        ("delete a repository", "github__repos_delete"),
        ("fork a repository", "github__repos_create_fork"),
        ("delete a branch", "github__git_delete_ref"),
        ("list the branches of a repository", "github__repos_list_branches"),
        ("rename a branch", "github__repos_rename_branch"),
        ("protect the main branch", "github__repos_update_branch_protection"),
        ("read the README of a repository", "github__repos_get_readme"),
        ("read a file's contents from a repository", "github__repos_get_content"),
        ("commit a change to a file in a repository", "github__repos_create_or_update_file_contents"),
        ("list the commits on the main branch", "github__repos_list_commits"),
        ("compare two branches", "github__repos_compare_commits github__repos_compare_commits_with_basehead"),
        ("get the latest release of a repository", "github__repos_get_latest_release"),
        ("publish a release with release notes", "github__repos_create_release"),
        ("tag a commit", "github__git_create_tag github__git_create_ref"),
        ("list the tags of a repository", "github__repos_list_tags"),
        ("list the contributors of a repository", "github__repos_list_contributors"),
        ("who starred this repository", "github__activity_list_stargazers_for_repo"),
        ("star a repository", "github__activity_star_repo_for_authenticated_user"),
        ("add a collaborator to a repository", "github__repos_add_collaborator"),
        ("add a webhook to a repository", "github__repos_create_webhook"),
        ("which programming languages does a repository use", "github__repos_list_languages"),
        ("how many page views did a repository get", "github__repos_get_views"),
        ("get the combined CI status of a commit", "github__repos_get_combined_status_for_ref"),
        ("list the check runs for a commit", "github__checks_list_for_ref"),
        # Actions, security
        ("trigger a GitHub Actions workflow", "github__actions_create_workflow_dispatch"),
        ("list the workflow runs of a repository", "github__actions_list_workflow_runs_for_repo"),
        ("re-run the failed jobs of a workflow run", "github__actions_re_run_workflow_failed_jobs"),
        ("download the logs of a workflow run", "github__actions_download_workflow_run_logs"),
        ("cancel a running workflow", "github__actions_cancel_workflow_run github__actions_force_cancel_workflow_run"),
        ("set a repository secret for Actions", "github__actions_create_or_update_repo_secret"),
        ("list Dependabot alerts for a repository", "github__dependabot_list_alerts_for_repo"),
        ("list code scanning alerts of a repository", "github__code_scanning_list_alerts_for_repo"),
        # search, people, organizations
        ("search for repositories about machine learning", "github__search_repos"),
        ("find issues mentioning a crash across GitHub", "github__search_issues_and_pull_requests"),
        ("search code for a function name", "github__search_code"),
        ("get a user's profile", "github__users_get_by_username"),
        ("who am I logged in as", "github__users_get_authenticated"),
        ("follow a user", "github__users_follow"),
        ("list my notifications", "github__activity_list_notifications_for_authenticated_user"),
        ("list the members of an organization", "github__orgs_list_members"),
        ("invite someone to an organization", "github__orgs_create_invitation"),
        ("list the teams in an organization", "github__teams_list"),
        ("create a gist", "github__gists_create"),
        # MCP servers
        ("echo a message back", "mcp__everything__echo"),
        ("add two numbers", "mcp__everything__get_sum mcp__py__add"),
        ("show me a tiny test image", "mcp__everything__get_tiny_image"),
        ("show the server's environment variables", "mcp__everything__get_env"),
        ("run a long operation that reports progress",
         "mcp__everything__trigger_long_running_operation mcp__py__work"),
        ("compress a file with gzip", "mcp__everything__gzip_file_as_resource"),
        ("turn on simulated logging", "mcp__everything__toggle_simulated_logging"),
        ("what is the server's process id", "mcp__py__pid"),
        ("read a header of the HTTP request", "mcp__py__header"),
    )
)  # fmt: skip


pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def catalog() -> ToolCatalog:
    """One catalog over the GitHub API and the two test MCP servers, as a session builds it."""
    if not GITHUB_SPEC.exists() or not EVERYTHING_BIN.exists():
        pytest.fail("npm test packages missing: run `npm ci` in tests/openapi_servers and tests/mcp_servers")
    github = OpenApiToolset({"github": {"spec": str(GITHUB_SPEC), "base_url": "http://127.0.0.1:9"}})
    return ToolCatalog(nested_tool_table([*github.tools, *asyncio.run(_mcp_tools())]), budget_tokens=0)


async def _mcp_tools() -> list[Tool]:
    """The test MCP servers' tools, as listed (searching needs no open connection)."""
    servers = {
        "everything": {"command": str(EVERYTHING_BIN), "args": ["stdio"]},
        "py": {"command": sys.executable, "args": [str(PY_SERVER)]},
    }
    async with McpToolset({"mcpServers": servers}) as mcp:
        return mcp.tools


def test_the_query_set_is_large_and_names_real_tools(catalog: ToolCatalog) -> None:
    names = {nested.global_name for nested in catalog.table}
    assert len(QUERIES) >= 40 and len({query for query, _ in QUERIES}) == len(QUERIES)
    assert [(query, expected - names) for query, expected in QUERIES if expected - names] == []


def test_the_right_tool_is_in_the_top_3_and_mostly_first(catalog: ToolCatalog) -> None:
    first = top = 0
    misses: list[str] = []
    for query, expected in QUERIES:
        hits = [hit["name"] for hit in catalog.search(query, TOP)]
        first += bool(hits) and hits[0] in expected
        top += bool(expected.intersection(hits))
        if not expected.intersection(hits):
            misses.append(f"{query!r}: {hits}")
    top_rate, first_rate = top / len(QUERIES), first / len(QUERIES)
    print(
        f"\ntools_search over {len(catalog.table)} tools, {len(QUERIES)} requests: "
        f"top 3 {top_rate:.0%} ({top}), first {first_rate:.0%} ({first})"
    )
    print("\n".join(f"  missed {miss}" for miss in misses))
    assert top_rate >= MIN_TOP_3, misses
    assert first_rate >= MIN_FIRST
