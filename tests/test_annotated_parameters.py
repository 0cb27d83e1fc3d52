"""`Annotated[..., Field(...)]` parameters keep their documentation (issue 21, point 5).

A Python tool's `Annotated[int, Field(description=..., ge=..., le=...)]` (pydantic's way, and
FastMCP's) keeps its description and constraints in the JSON Schema, the arguments are checked
against them, and the TypeScript declaration shows them as doc comments.
"""

from __future__ import annotations

from typing import Annotated

import pytest
from pydantic import Field

from codemode import Tool
from codemode._describe import tool_declaration
from codemode.errors import ToolError


def search_issues(
    query: Annotated[str, Field(description="Words to look for.", min_length=2, max_length=256)],
    limit: Annotated[int, Field(description="How many issues to return.", ge=1, le=100)] = 10,
    label: Annotated[str, Field(pattern=r"^[a-z-]+$")] = "bug",
    state: Annotated[str, "open or closed"] = "open",
) -> list[str]:
    """Search the issues.

    Args:
        query: overridden by the annotation's own description.
        state: the issue state to match.
    """
    return [query] * limit


TOOL = Tool.from_function(search_issues)


def test_descriptions_and_constraints_stay_in_the_json_schema() -> None:
    properties = (TOOL.input_schema or {})["properties"]
    assert properties["query"] == {
        "type": "string", "description": "Words to look for.", "minLength": 2, "maxLength": 256,
    }  # fmt: skip
    assert properties["limit"] == {
        "type": "integer", "description": "How many issues to return.", "minimum": 1, "maximum": 100, "default": 10,
    }  # fmt: skip
    assert properties["label"] == {"type": "string", "pattern": "^[a-z-]+$", "default": "bug"}
    assert properties["state"] == {"type": "string", "description": "the issue state to match.", "default": "open"}
    assert (TOOL.input_schema or {})["required"] == ["query"]


def test_the_declaration_shows_them_as_doc_comments() -> None:
    assert tool_declaration(TOOL, "search_issues") == (
        "search_issues(args: {\n"
        "  // pattern: ^[a-z-]+$\n"
        "  label?: string;\n"
        "  // How many issues to return.\n"
        "  // minimum: 1; maximum: 100\n"
        "  limit?: number;\n"
        "  // Words to look for.\n"
        "  // minLength: 2; maxLength: 256\n"
        "  query: string;\n"
        "  // the issue state to match.\n"
        "  state?: string;\n"
        "}): Promise<Array<string>>;"
    )


@pytest.mark.parametrize(
    ("arguments", "problem"),
    [
        ({"query": "x"}, "`query`: String should have at least 2 characters"),
        ({"query": "crash", "limit": 0}, "`limit`: Input should be greater than or equal to 1"),
        ({"query": "crash", "label": "Bug!"}, "`label`: String should match pattern '^[a-z-]+$'"),
    ],
)
def test_arguments_are_checked_against_the_constraints(arguments: dict[str, object], problem: str) -> None:
    with pytest.raises(ToolError) as error:
        TOOL.validate(arguments)
    assert str(error.value) == f"tool `search_issues` got invalid arguments: {problem}"
