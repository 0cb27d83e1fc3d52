"""TypeScript in model code: the bundled strippers that remove its types, as JavaScript text.

Models read their tools as TypeScript declarations and often write TypeScript back. Only a
script that does not parse as JavaScript is stripped (the session asks `_imports` first, so valid
JavaScript is never touched and pays nothing more). `strippers.js` bundles two pinned, well-kept
npm strippers (versions and licences in its header and `NOTICE.md`; rebuilt by
`make typescript-bundle` from `scripts/typescript_bundle/`):

* ts-blank-space, over TypeScript's own parser, replaces every annotation, interface, type
  alias, `as`/`satisfies`, generic, `!` and `declare` with spaces: every line and column stays
  where the model wrote it, so error positions and stack traces need no mapping.
* sucrase, for what must generate code (`enum`, constructor parameter properties), keeps
  every line where it was (columns on lines it rewrote may move).

This module only holds the bundle and the expressions that call it: running them is the
engine's job (`EngineSession.strip_types`), since model-written input must reach V8 only where
the engine runs it (an engine worker process, by default), never in a host that loads no V8.
"""

from __future__ import annotations

import json
from importlib import resources

__all__ = ["VERSIONS_EXPRESSION", "bundle_source", "strip_expression"]

_GLOBAL = "__codemode_typescript__"

VERSIONS_EXPRESSION = f"JSON.stringify({_GLOBAL}.versions)"
"""Evaluates (after the bundle) to the JSON text of the bundled strippers' versions."""


def bundle_source() -> str:
    """The strippers' bundle: evaluated once in a context of its own, it defines `_GLOBAL`."""
    return resources.files("codemode._typescript").joinpath("strippers.js").read_text(encoding="utf-8")


def strip_expression(code: str) -> str:
    """Evaluates (after the bundle) to `code` without its types, or to null when TypeScript does
    not parse it either (then V8 should report the syntax error on the model's own text)."""
    return f"{_GLOBAL}.strip({json.dumps(code)})"
