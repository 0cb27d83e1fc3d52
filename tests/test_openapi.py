"""OpenAPI documents as nested tools: the real GitHub REST spec (npm `@octokit/openapi`) served
by a real mock server, Stoplight Prism (npm `@stoplight/prism-cli`), on loopback.

Prism runs with `--errors` (`openapi_servers/prism.py`), so a successful call shows the request
was built right: a path parameter left in the template, a missing required query parameter or
a body without a required field would get an error status. A second API entry sends
`Prefer: code=404`, which Prism answers with the spec's 404 response.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from codemode import ExecResult, SyncCodeMode, TextItem
from codemode._protocol.lifecycle import State
from codemode.errors import ToolError, UsageError
from codemode.tools.openapi import OpenApiToolset, operations
from openapi_servers.prism import GITHUB_SPEC, PrismError, prism as serve

pytestmark = pytest.mark.integration

SECRET = "Bearer test-credential-7d1f"
# The path templates the tests below send requests to: Prism serves only these (in seconds, not
# the ~20 s the whole spec takes), while the tools are built from the whole spec.
PRISM_PATHS = (
    "/users/{username}/packages",
    "/repos/{owner}/{repo}/issues",
    "/repos/{owner}/{repo}/labels",
    "/markdown",
    "/repos/{owner}/{repo}",
)


@pytest.fixture(scope="module")
def prism(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Prism mock server's base URL for `PRISM_PATHS` of the GitHub spec, stopped after the module."""
    log_path = tmp_path_factory.mktemp("prism") / "prism.log"
    try:
        with serve(GITHUB_SPEC, log_path, paths=PRISM_PATHS) as base_url:
            yield base_url
    except PrismError as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="module")
def github(prism: str) -> Iterator[SyncCodeMode]:
    """A session whose `github` API is Prism, and `github_404` the same API answering 404."""
    config = {
        "github": {"spec": str(GITHUB_SPEC), "base_url": prism, "headers": {"Authorization": SECRET}},
        "github_404": {"spec": str(GITHUB_SPEC), "base_url": prism, "headers": {"Prefer": "code=404"}},
    }
    with SyncCodeMode(openapi=config) as session:
        yield session


def run(session: SyncCodeMode, code: str) -> list[str]:
    result: ExecResult = session.exec(code)
    assert (result.status, result.error) == ("completed", None)
    return [item.text for item in result.items if isinstance(item, TextItem)]


# -- against Prism -------------------------------------------------------------------------------


def test_get_with_path_and_query_parameters(github: SyncCodeMode, prism: str) -> None:
    out = run(
        github,
        "const packages = await tools.github__packages_list_packages_for_user(\n"
        '  { username: "octocat", package_type: "container", per_page: 2 });\n'
        "text(String(Array.isArray(packages))); text(typeof packages[0].name); text(typeof packages[0].package_type);\n"
        'const issues = await tools.github__issues_list_for_repo({ owner: "octocat", repo: "hello-world", state: "open", labels: "bug" });\n'
        "text(typeof issues[0].number); text(typeof issues[0].title);",
    )
    assert out == ["true", "string", "string", "number", "string"]
    # The query parameter was what made that GET valid: without it Prism refuses.
    assert httpx.get(f"{prism}/users/octocat/packages").status_code == 400


def test_post_with_a_body(github: SyncCodeMode, prism: str) -> None:
    out = run(
        github,
        'const label = await tools.github__issues_create_label({ owner: "octocat", repo: "hello-world", name: "bug", color: "f29513" });\n'
        "text(typeof label.id); text(typeof label.name);\n"
        'const issue = await tools.github__issues_create({ owner: "octocat", repo: "hello-world", title: "Found a bug", labels: ["bug"] });\n'
        "text(typeof issue.number);\n"
        'text(await tools.github__markdown_render({ text: "Hello **world**" }));',
    )
    assert out == ["number", "string", "number", "<p>Hello <strong>world</strong></p>"]
    # The body was what made the POST valid: an empty one is refused.
    assert httpx.post(f"{prism}/repos/octocat/hello-world/labels", json={}).status_code == 422


def test_an_error_status_rejects_with_the_status_and_the_body(github: SyncCodeMode, prism: str) -> None:
    out = run(
        github,
        'try { await tools.github_404__repos_get({ owner: "octocat", repo: "hello-world" }); text("resolved"); }\n'
        "catch (e) { text(typeof e); text(e); }",
    )
    assert out[0] == "string"
    assert out[1].startswith(f"GET {prism}/repos/octocat/hello-world answered HTTP 404 Not Found: ")
    body = json.loads(out[1].split(": ", 1)[1])
    assert set(body) >= {"message", "documentation_url"}


def test_arguments_are_checked_before_any_request(github: SyncCodeMode) -> None:
    out = run(
        github,
        'try { await tools.github__repos_get({ owner: "octocat" }); } catch (e) { text(e); }\n'
        'try { await tools.github__repos_get({ owner: "octocat", repo: "r", colour: 1 }); } catch (e) { text(e); }',
    )
    assert out[0] == "tool `github__repos_get` got invalid arguments: 'repo' is a required property"
    assert out[1].startswith(
        "tool `github__repos_get` got invalid arguments: Additional properties are not allowed ('colour'"
    )


def test_credentials_stay_in_the_host(github: SyncCodeMode) -> None:
    session = github
    out = run(
        github,
        "text(JSON.stringify(ALL_TOOLS).length);\n"
        "text(JSON.stringify(Object.getOwnPropertyNames(globalThis)));\n"
        'text(await tools_describe("github__repos_get"));',
    )
    assert int(out[0]) > 1_000_000  # every operation is described...
    seen = [session.exec_description(), json.dumps(session.tool_specs("chat")), *out]
    assert not any(SECRET in text or "test-credential" in text for text in seen)  # ...but no header


# -- the toolset without a server --------------------------------------------------------------------


def test_every_github_operation_becomes_a_typed_tool() -> None:
    toolset = OpenApiToolset({"github": {"spec": str(GITHUB_SPEC)}})
    tools = {tool.name: tool for tool in toolset.tools}
    assert len(tools) > 1000 and all(tool.namespace == "github" for tool in tools.values())
    create = tools["issues_create"]
    assert create.description.startswith("Create an issue.\n\n")
    assert create.description.endswith("HTTP: `POST /repos/{owner}/{repo}/issues`")
    schema = create.input_schema or {}
    assert set(schema["required"]) == {"owner", "repo", "title"}  # path parameters ($refs) and the body's
    assert schema["properties"]["owner"]["type"] == "string"
    assert schema["properties"]["assignee"]["type"] == ["string", "null"]  # OpenAPI 3.0 `nullable`
    assert schema["additionalProperties"] is False
    assert (create.output_schema or {})["properties"]["number"]["type"] == "integer"


def test_operations_shape_their_arguments() -> None:
    document: dict[str, Any] = {
        "openapi": "3.0.3",
        "paths": {
            "/items/{id}": {
                "parameters": [{"name": "id", "in": "path", "schema": {"type": "integer"}}],
                "put": {
                    "operationId": "items/replace",
                    "parameters": [{"$ref": "#/components/parameters/trace"}],
                    "requestBody": {"required": True, "content": {"application/json": {"schema": {
                        "type": "object", "properties": {"id": {"type": "string"}}}}}},
                },
                "post": {"requestBody": {"content": {"text/plain": {"schema": {"type": "string"}}}}},
            },
            "/tree": {"get": {"operationId": "tree", "responses": {"200": {"content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/node"}}}}}}},
        },
        "components": {
            "parameters": {"trace": {"name": "X-Trace", "in": "header", "schema": {"type": "string"}}},
            "schemas": {"node": {"type": "object", "properties": {"child": {"$ref": "#/components/schemas/node"}}}},
        },
    }  # fmt: skip
    replace, post, tree = operations(document)
    assert replace.name == "items_replace" and replace.method == "PUT"
    assert [(p.name, p.location) for p in replace.parameters] == [("id", "path"), ("X-Trace", "header")]
    assert replace.body_shape == "whole" and replace.body_argument == "body"  # `id` would shadow the path
    assert replace.input_schema["required"] == ["id", "body"]
    assert post.name == "post_items_id" and post.body_shape == "whole" and post.content_type == "text/plain"
    assert tree.output_schema == {"type": "object", "properties": {"child": {}}}  # a recursive $ref ends


def test_a_bad_source_is_refused_with_the_reason(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="unknown keys \\['base'\\]"):
        OpenApiToolset({"api": {"spec": str(GITHUB_SPEC), "base": "x"}})
    with pytest.raises(UsageError, match="cannot read the JSON spec"):
        OpenApiToolset({"api": {"spec": str(tmp_path / "missing.json")}})
    with pytest.raises(UsageError, match="needs a `base_url`"):
        OpenApiToolset({"api": {"spec": {"openapi": "3.1.0", "paths": {}}}})
    with pytest.raises(UsageError, match="`base_url` is not a valid URL"):  # at once, not at start()
        OpenApiToolset({"api": {"spec": str(GITHUB_SPEC), "base_url": "http://[::1"}})


TINY_SPEC = {"openapi": "3.1.0", "info": {"title": "Tiny"}, "paths": {"/ping": {"get": {"operationId": "ping"}}}}


async def test_toolset_lifecycle_one_way_with_a_failed_start(monkeypatch: pytest.MonkeyPatch) -> None:
    good = OpenApiToolset({"api": {"spec": TINY_SPEC, "base_url": "http://127.0.0.1:9"}})
    assert good.state is State.NEW
    assert [tool.name for tool in await good.start()] == ["ping"]
    assert good.state is State.OPEN
    with pytest.raises(UsageError, match="can be started only once"):
        await good.start()
    await good.aclose()
    await good.aclose()  # idempotent
    assert good.state is State.CLOSED
    with pytest.raises(UsageError, match="it was closed"):
        await good.start()

    broken = OpenApiToolset(
        {
            "api": {"spec": TINY_SPEC, "base_url": "http://127.0.0.1:9"},
            "bad": {"spec": TINY_SPEC, "base_url": "http://127.0.0.1:9"},
        }
    )
    real_client, opened = httpx.AsyncClient, list[httpx.AsyncClient]()

    def second_client_fails(**options: Any) -> httpx.AsyncClient:
        if opened:
            raise httpx.InvalidURL("Invalid port: ':1'")
        opened.append(real_client(**options))
        return opened[-1]

    monkeypatch.setattr(httpx, "AsyncClient", second_client_fails)
    with pytest.raises(httpx.InvalidURL):
        await broken.start()
    assert broken.state is State.FAILED
    with pytest.raises(UsageError, match="this OpenApiToolset failed to start: InvalidURL") as raised:
        await broken.start()
    assert isinstance(raised.value.__cause__, httpx.InvalidURL)
    ping = broken.tools[0]
    assert ping.namespace == "api"
    with pytest.raises(ToolError, match="the `api` API is not open"):  # its client was closed again
        await ping.handler({})
    assert opened[0].is_closed
    await broken.aclose()
    assert broken.state is State.CLOSED
