"""BM25 search over nested tools: what `tools_search(query)` ranks by.

Users ask in plain words ("add a comment to an issue"); tools are named in API words
(`issues_create_comment`, `POST /repos/{owner}/{repo}/issues/{issue_number}/comments`). Each
field below is scored by its own BM25 index (bm25s) and the scores are added up, weighted:
the description's first sentence (what a request most resembles), the script name (server or
API included), the whole description, and the parameters (names and enum values), so long
descriptions and parameter lists add recall without burying a tool whose summary says it all.
A fifth, low-weighted field holds the first letters of the name's and summary's words, so
"assign" meets "assignees" and "react" meets "reactions" where the stemmer keeps them apart.

Words are split at `_`, `-`, `/`, digits and camelCase humps, lower-cased, stripped of English
stopwords and stemmed (Snowball); common abbreviations are spelled out first (`repo`,
`org`, `pr`, `env`, ...), so "list repositories of an organization" meets `repos_list_for_org`.
The request's first word says what it wants done (list/show: read; add/open/new: create;
set/close/rename: update; delete/remove: delete); a tool that does something else (by its HTTP
method, read off the `HTTP: \\`METHOD /path\\`` line OpenAPI tools end with, or by the verbs of
its name) keeps only part of its score, so "add a comment" ranks `issues_create_comment` above
`issues_delete_comment`. "me"/"my" also look for "authenticated" (APIs' word for the caller)
and "find" for "search". The weights were tuned on `tests/test_search_quality.py`'s requests.

Invariants:
* The index is built once, from the table it is given; queries never change it.
* Results are best first, only tools that share at least one word with the query.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any, Literal, Protocol, TypeAlias, cast

import bm25s  # type: ignore[import-untyped]
import numpy as np
import numpy.typing as npt
import Stemmer  # type: ignore[import-not-found]
from bm25s.stopwords import STOPWORDS_EN  # type: ignore[import-untyped]

from codemode._describe.descriptions import first_sentence
from codemode._describe.names import NestedTool

__all__ = ["ToolIndex", "search_words"]

Action: TypeAlias = Literal["read", "create", "update", "delete"]

_WORD = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")
_HTTP_LINE = re.compile(r"^HTTP: `(GET|POST|PUT|PATCH|DELETE) [^`]*`$", re.MULTILINE)
_STOPWORDS = frozenset(STOPWORDS_EN)
_PREFIX_LETTERS = 5

_SUMMARY_WEIGHT = 1.0
_NAME_WEIGHT = 0.3
_DETAIL_WEIGHT = 0.2
_PARAMETER_WEIGHT = 0.2
_PREFIX_WEIGHT = 0.2
_OTHER_ACTION_FACTOR = 0.6  # what a tool doing something else than asked keeps of its score

_ABBREVIATIONS = {
    "repo": "repository", "repos": "repositories", "org": "organization", "orgs": "organizations",
    "pr": "pull request", "prs": "pull requests", "pulls": "pull requests", "env": "environment",
    "config": "configuration", "configs": "configurations", "info": "information", "img": "image",
    "msg": "message", "auth": "authentication", "dir": "directory", "stats": "statistics",
}  # fmt: skip
_QUERY_ALSO = {
    "me": "authenticated", "my": "authenticated", "mine": "authenticated", "myself": "authenticated",
    "i": "authenticated", "logged": "authenticated", "find": "search",
}  # fmt: skip
_ACTION_VERBS: dict[Action, frozenset[str]] = {
    "read": frozenset(
        "get list show read fetch view download search find check who which what how count see retrieve "
        "display lookup look".split()
    ),
    "create": frozenset(
        "create add new open file make post publish start trigger submit upload generate write invite fork "
        "dispatch request run rerun re comment tag react".split()
    ),
    "update": frozenset(
        "update edit change modify set rename close reopen replace enable disable lock unlock star follow "
        "merge move transfer protect toggle turn mark pin".split()
    ),
    "delete": frozenset("delete remove drop destroy erase unstar unfollow".split()),
}
_METHOD_ACTIONS: dict[str, frozenset[Action]] = {
    "GET": frozenset({"read"}),
    "POST": frozenset({"create"}),
    "PUT": frozenset({"create", "update"}),
    "PATCH": frozenset({"update"}),
    "DELETE": frozenset({"delete"}),
}


class _Stemmer(Protocol):
    def stemWords(self, words: list[str]) -> list[str]: ...


class _Retriever(Protocol):
    """The part of `bm25s.BM25` used here (bm25s ships no type hints)."""

    def get_scores(self, query_tokens: list[str]) -> npt.NDArray[np.float64]: ...


_STEMMER = cast(_Stemmer, cast(Any, Stemmer).Stemmer("english"))


def search_words(text: str) -> list[str]:
    """`text` as the index sees it: abbreviations spelled out, then stemmed, lower-case words
    without stopwords."""
    words = _spelled_out(_words(text))
    return _STEMMER.stemWords([word for word in words if word not in _STOPWORDS])


class ToolIndex:
    """A BM25 index of one table's tools."""

    def __init__(self, table: Sequence[NestedTool]) -> None:
        self._names = [nested.global_name for nested in table]
        summaries = [first_sentence(nested.tool.description) for nested in table]
        self._fields = [
            (_SUMMARY_WEIGHT, _retriever([search_words(summary) for summary in summaries])),
            (_NAME_WEIGHT, _retriever([search_words(nested.global_name) for nested in table])),
            (_DETAIL_WEIGHT, _retriever([search_words(nested.tool.description) for nested in table])),
            (_PARAMETER_WEIGHT, _retriever([search_words(_parameter_text(nested)) for nested in table])),
            (_PREFIX_WEIGHT, _retriever([
                _prefixes(search_words(f"{nested.code_mode_name} {summary}"))
                for nested, summary in zip(table, summaries, strict=True)
            ])),
        ]  # fmt: skip
        self._actions = [_tool_actions(nested) for nested in table]

    def search(self, query: str, limit: int) -> list[str]:
        """The names of the (at most `limit`) tools that best match `query`, best first."""
        words = _query_words(query)
        if not words or not self._names or limit <= 0:
            return []
        scores = np.zeros(len(self._names))
        for weight, retriever in self._fields[:-1]:
            scores += weight * retriever.get_scores(words)
        prefix_weight, prefixes = self._fields[-1]
        scores += prefix_weight * prefixes.get_scores(_prefixes(words))
        asked = _query_action(query)
        if asked is not None:
            scores *= [1.0 if not actions or asked in actions else _OTHER_ACTION_FACTOR for actions in self._actions]
        best = np.argsort(-scores, kind="stable")[:limit]
        return [self._names[int(hit)] for hit in best if scores[hit] > 0]


def _words(text: str) -> list[str]:
    return [word.lower() for word in _WORD.findall(text)]


def _spelled_out(words: Iterable[str]) -> list[str]:
    return [part for word in words for part in _ABBREVIATIONS.get(word, word).split()]


def _query_words(query: str) -> list[str]:
    """The query's words, plus "authenticated" for "me", "search" for "find", and the API verb
    of the action asked ("create" for "add ...")."""
    words = _words(query)
    also = [_QUERY_ALSO[word] for word in words if word in _QUERY_ALSO]
    action = _query_action(query)
    if action is not None and action != "read" and action not in words:
        also.append(action)
    return search_words(" ".join([*words, *also]))


def _query_action(query: str) -> Action | None:
    """What the request asks done, by its first word ("list open pull requests": read)."""
    words = _words(query)
    return _verb_action(words[0]) if words else None


def _tool_actions(nested: NestedTool) -> frozenset[Action]:
    """What a tool does: by the first verb of its name (and one after "or":
    `create_or_update_secret`), else by its HTTP method; empty when unknown."""
    words = _words(nested.tool.name)
    first = next((i for i, word in enumerate(words) if _verb_action(word) is not None), None)
    if first is not None:
        chosen = [words[first], *words[first + 2 : first + 3]] if words[first + 1 : first + 2] == ["or"] else [words[first]]
        return frozenset(action for word in chosen if (action := _verb_action(word)) is not None)
    method = _HTTP_LINE.search(nested.tool.description)
    return _METHOD_ACTIONS[method.group(1)] if method else frozenset()


def _verb_action(word: str) -> Action | None:
    return next((action for action, verbs in _ACTION_VERBS.items() if word in verbs), None)


def _prefixes(stems: list[str]) -> list[str]:
    return [stem[:_PREFIX_LETTERS] for stem in stems]


def _retriever(documents: list[list[str]]) -> _Retriever:
    retriever = cast(Any, bm25s).BM25()
    retriever.index(documents, show_progress=False)
    return cast(_Retriever, retriever)


def _parameter_text(nested: NestedTool) -> str:
    """The top-level parameter names and the string values their enums allow."""
    properties: object = (nested.tool.input_schema or {}).get("properties")
    if not isinstance(properties, dict):
        return ""
    words: list[str] = []
    for name, schema in cast(dict[str, Any], properties).items():
        words.append(name)
        enum: object = cast(dict[str, Any], schema).get("enum") if isinstance(schema, dict) else None
        if isinstance(enum, list):
            words.extend(value for value in cast(list[Any], enum) if isinstance(value, str))
    return " ".join(words)
