"""BM25 search over nested tools: what `tools_search(query)` ranks by.

Four fields are scored on their own and added up, weighted: the description's first sentence
(what a query most resembles) at 1, the script name at 0.3 (names of large APIs repeat their
words: `pull_request_stacks_list`), the whole description and the top-level parameter names at
0.2, so long descriptions and parameter lists add recall without burying a tool whose summary
says it all. The weights were tuned on the GitHub REST API. Words are split at `_`, `-`, `/`, digits and
camelCase humps, lower-cased, stripped of English stopwords and stemmed (Snowball), so "create
an issue" meets `issues_create` and `createIssue` alike.

Invariants:
* The index is built once, from the table it is given; queries never change it.
* Results are best first, only tools that share at least one word with the query.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Protocol, cast

import bm25s  # type: ignore[import-untyped]
import numpy as np
import numpy.typing as npt
import Stemmer  # type: ignore[import-not-found]
from bm25s.stopwords import STOPWORDS_EN  # type: ignore[import-untyped]

from codemode._describe.descriptions import first_sentence
from codemode._describe.names import NestedTool

__all__ = ["ToolIndex", "search_words"]

_WORD = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")
_STOPWORDS = frozenset(STOPWORDS_EN)
_NAME_WEIGHT = 0.3
_DETAIL_WEIGHT = 0.2


class _Stemmer(Protocol):
    def stemWords(self, words: list[str]) -> list[str]: ...  # noqa: N802 - PyStemmer's name


class _Retriever(Protocol):
    """The part of `bm25s.BM25` used here (bm25s ships no type hints)."""

    def get_scores(self, query_tokens: list[str]) -> npt.NDArray[np.float64]: ...


_STEMMER = cast(_Stemmer, cast(Any, Stemmer).Stemmer("english"))


def search_words(text: str) -> list[str]:
    """`text` as the index sees it: stemmed, lower-case words without stopwords."""
    words = [word.lower() for word in _WORD.findall(text)]
    return _STEMMER.stemWords([word for word in words if word not in _STOPWORDS])


class ToolIndex:
    """A BM25 index of one table's tools."""

    def __init__(self, table: Sequence[NestedTool]) -> None:
        self._names = [nested.global_name for nested in table]
        self._fields = [
            (_NAME_WEIGHT, _retriever([search_words(nested.global_name) for nested in table])),
            (1.0, _retriever([search_words(first_sentence(nested.tool.description)) for nested in table])),
            (_DETAIL_WEIGHT, _retriever([search_words(nested.tool.description) for nested in table])),
            (_DETAIL_WEIGHT, _retriever([search_words(_parameter_names(nested)) for nested in table])),
        ]

    def search(self, query: str, limit: int) -> list[str]:
        """The names of the (at most `limit`) tools that best match `query`, best first."""
        words = search_words(query)
        if not words or not self._names or limit <= 0:
            return []
        scores = np.zeros(len(self._names))
        for weight, retriever in self._fields:
            scores += weight * retriever.get_scores(words)
        best = np.argsort(-scores, kind="stable")[:limit]
        return [self._names[int(hit)] for hit in best if scores[hit] > 0]


def _retriever(documents: list[list[str]]) -> _Retriever:
    retriever = cast(Any, bm25s).BM25()
    retriever.index(documents, show_progress=False)
    return cast(_Retriever, retriever)


def _parameter_names(nested: NestedTool) -> str:
    properties: object = (nested.tool.input_schema or {}).get("properties")
    return " ".join(cast(dict[str, Any], properties)) if isinstance(properties, dict) else ""
