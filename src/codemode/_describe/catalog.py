"""`ToolCatalog`: one session's nested tools with what is said about them built once.

The exec description is cached per set of arguments, so every turn sends the model the same
text (providers' prompt caches depend on it) and a thousand declarations are not rendered per
call. Over the description budget, the catalog also answers the sandbox's discovery helpers:
their calls reach the host on the ordinary tool-call path, as bindings named
`HOST_HELPER_PREFIX + helper name`, so the engine protocol knows nothing about them.

Invariants:
* `compact` is decided once from the table and the budget; the description, the sandbox's
  bindings and the helpers all follow it.
* Helper and unknown-name calls fail with `ToolError`, whose text is what the script's
  promise rejects with.
"""

from __future__ import annotations

import asyncio
import difflib
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

from codemode._describe.descriptions import (
    DEFAULT_SEARCH_LIMIT,
    ExecInput,
    all_tools_entries,
    exceeds_budget,
    exec_description,
    first_sentence,
)
from codemode._describe.names import (
    DESCRIBE_HELPER_NAME,
    HOST_HELPER_PREFIX,
    SEARCH_HELPER_NAME,
    NestedTool,
)
from codemode.errors import ToolError

if TYPE_CHECKING:
    from codemode._describe.search import ToolIndex
    from codemode._protocol.config import Defaults

__all__ = ["MAX_SEARCH_LIMIT", "ToolCatalog"]

MAX_SEARCH_LIMIT = 50
_CLOSEST = 5  # names suggested for a name that does not exist
_SEARCH_BINDING = HOST_HELPER_PREFIX + SEARCH_HELPER_NAME
_DESCRIBE_BINDING = HOST_HELPER_PREFIX + DESCRIBE_HELPER_NAME


class ToolCatalog:
    """The nested tools of one session, described once.

    Args:
        table: the nested tools, from `nested_tool_table`.
        budget_tokens: estimated tokens the tool reference may take in the exec description;
            over it, the description lists one line per tool and scripts get the discovery
            helpers. None: always declare every tool (and install no helpers).
    """

    def __init__(self, table: Sequence[NestedTool], *, budget_tokens: int | None) -> None:
        self.table = tuple(table)
        self.budget_tokens = budget_tokens
        self.compact = exceeds_budget(self.table, budget_tokens)
        self._entries = all_tools_entries(self.table)
        self._entry_texts = {entry["name"]: entry["description"] for entry in self._entries}
        self._by_name = {nested.global_name: nested for nested in self.table}
        self._descriptions: dict[tuple[bool, Defaults, ExecInput, tuple[str, ...]], str] = {}
        self._index: ToolIndex | None = None
        self._index_lock = asyncio.Lock()

    def exec_description(
        self,
        *,
        code_mode_only: bool,
        defaults: Defaults,
        input_format: ExecInput = "freeform",
        notes: Sequence[str] = (),
    ) -> str:
        """The `exec` description (see `descriptions.exec_description`), built once per arguments."""
        key = (code_mode_only, defaults, input_format, tuple(notes))
        text = self._descriptions.get(key)
        if text is None:
            text = exec_description(
                self.table,
                code_mode_only=code_mode_only,
                defaults=defaults,
                input_format=input_format,
                notes=notes,
                budget_tokens=self.budget_tokens,
            )
            self._descriptions[key] = text
        return text

    def sandbox_bindings(self) -> list[tuple[str, str]]:
        """(global name, ALL_TOOLS description) of everything the sandbox installs: the helper
        bindings first when compact (the prelude takes them off `ALL_TOOLS`), then the tools."""
        helpers = [(_SEARCH_BINDING, ""), (_DESCRIBE_BINDING, "")] if self.compact else []
        return helpers + [(entry["name"], entry["description"]) for entry in self._entries]

    async def answer(self, name: str, arguments_json: str | None) -> str:
        """The JSON result of a call to `name` that is no tool: a discovery helper, or else a
        rejection naming the closest tools.

        The search index is built on the first search, in a thread (a thousand tools take a
        few tenths of a second), so sessions that never search never pay for it.

        Raises:
            ToolError: `name` is neither a tool nor a helper, or the helper's arguments are wrong.
        """
        if self.compact and name == _SEARCH_BINDING:
            async with self._index_lock:
                if self._index is None:
                    self._index = await asyncio.to_thread(_index, self.table)
            return json.dumps(self._search_call(_positional(arguments_json)), ensure_ascii=False)
        if self.compact and name == _DESCRIBE_BINDING:
            return json.dumps(self._describe_call(_positional(arguments_json)), ensure_ascii=False)
        raise ToolError(self.unknown_tool_text(name))

    def search(self, query: str, limit: int = DEFAULT_SEARCH_LIMIT) -> list[dict[str, str]]:
        """The tools best matching `query` (BM25), best first, as `{name, description}` entries
        with a one-sentence description."""
        if self._index is None:
            self._index = _index(self.table)
        return [
            {"name": name, "description": first_sentence(self._by_name[name].tool.description)}
            for name in self._index.search(query, limit)
        ]

    def describe(self, name: str) -> str:
        """The tool's `ALL_TOOLS` description: its text and TypeScript declaration.

        Raises:
            ToolError: there is no tool `name` (the text names the closest ones).
        """
        text = self._entry_texts.get(name)
        if text is None:
            raise ToolError(self.unknown_tool_text(name))
        return text

    def unknown_tool_text(self, name: str) -> str:
        """What a call to a tool that does not exist rejects with."""
        text = f"tool `{name}` is not enabled in exec"
        closest = difflib.get_close_matches(name, list(self._by_name), n=_CLOSEST, cutoff=0.5)
        if closest:
            return text + "; the closest names are: " + ", ".join(f"`{n}`" for n in closest)
        if self.compact:
            return text + f"; find tools with `{SEARCH_HELPER_NAME}(query)`"
        return text

    def _search_call(self, arguments: list[Any]) -> list[dict[str, str]]:
        query = arguments[0] if arguments else None
        if not isinstance(query, str):
            raise ToolError(
                f'{SEARCH_HELPER_NAME} expects a query string, like {SEARCH_HELPER_NAME}("create issue")'
            )
        options: object = arguments[1] if len(arguments) > 1 and arguments[1] is not None else {}
        limit = cast(dict[str, Any], options).get("limit", DEFAULT_SEARCH_LIMIT) if isinstance(options, dict) else None
        if (
            isinstance(limit, bool)
            or not isinstance(limit, (int, float))
            or not 1 <= limit <= MAX_SEARCH_LIMIT
        ):
            raise ToolError(
                f"{SEARCH_HELPER_NAME} options must be {{ limit?: number }} "
                f"with a limit from 1 to {MAX_SEARCH_LIMIT}"
            )
        return self.search(query, int(limit))

    def _describe_call(self, arguments: list[Any]) -> str:
        name = arguments[0] if arguments else None
        if not isinstance(name, str):
            raise ToolError(f"{DESCRIBE_HELPER_NAME} expects a tool name string, as `ALL_TOOLS` lists them")
        return self.describe(name)


def _index(table: Sequence[NestedTool]) -> ToolIndex:
    """The BM25 index, imported on first use: numpy and bm25s cost a session that never searches."""
    from codemode._describe.search import ToolIndex

    return ToolIndex(table)


def _positional(arguments_json: str | None) -> list[Any]:
    """A helper's arguments: the prelude sends them as one JSON array."""
    value: object = json.loads(arguments_json) if arguments_json is not None else []
    return cast(list[Any], value) if isinstance(value, list) else [value]
