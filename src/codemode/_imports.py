"""Module syntax in model code: rewrite `import`/`export` so the script runs as a plain function.

V8 here has no module loader, yet models write `import { text } from "@openai/code_mode"`.
With a real JavaScript parser (tree-sitter) each static import is blanked out in place and its
bindings are hoisted into statements that run first; the `import` of `import(...)` becomes an
identifier of the same length bound to our loader; `export` keywords are blanked. Every edit
keeps its length and line breaks, so every line and column stays where the model wrote it and
stack positions stay right.

The program runs inside a function, where a top-level `return` would be legal; a module
forbids it, so it is refused here with V8's module error.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Set
from dataclasses import dataclass
from functools import cache, lru_cache

import tree_sitter
import tree_sitter_javascript

from codemode._protocol.helpers import MODULE_EXPORTS
from codemode._protocol.syntax import source_excerpt

MODULE_LOADER = "__codemode_module__"
DYNAMIC_IMPORT = "__codemode_import__"
# Replaces the 6-character `import` keyword of `import(...)`, so columns do not move.
DYNAMIC_IMPORT_ALIAS = "__imp$"
assert len(DYNAMIC_IMPORT_ALIAS) == len("import")
CODE_MODE_MODULES = ("@openai/code_mode", "openai/code_mode")
TOOLS_MODULE = "tools.js"


class ImportError_(Exception):
    """The script imports something that does not exist (or uses module syntax a module
    forbids); the message is the model-facing error."""


@dataclass(frozen=True)
class RewrittenSource:
    code: str
    hoisted: str


def module_exports(tool_names: Set[str]) -> dict[str, frozenset[str]]:
    """What each synthesized module exports, given the session's tool global names."""
    exports = {spec: MODULE_EXPORTS for spec in CODE_MODE_MODULES}
    exports[TOOLS_MODULE] = frozenset(tool_names) | {"ALL_TOOLS"}
    return exports


@cache
def _parser() -> tree_sitter.Parser:
    return tree_sitter.Parser(tree_sitter.Language(tree_sitter_javascript.language()))


@lru_cache(maxsize=1)
def _syntax_tree(code: str) -> tree_sitter.Tree:
    """The script's tree; the last one is kept, as the session asks `parses_as_javascript` and
    then `rewrite_modules` about the same script (one parse per exec)."""
    return _parser().parse(code.encode("utf-8"))


def parses_as_javascript(code: str) -> bool:
    """Whether `code` parses as JavaScript: when not, the session tries it as TypeScript before
    anything else reads it (V8 still has the last word on what is valid)."""
    return not _syntax_tree(code).root_node.has_error


def rewrite_modules(code: str, exports: Mapping[str, frozenset[str]]) -> RewrittenSource:
    """Hoist static imports, route dynamic `import()`, blank `export`.

    Raises:
        ImportError_: an unsupported specifier, a missing named export or a top-level
            `return`, with the text the model should see (`Unsupported import in exec: <spec>`).
    """
    if "import" not in code and "export" not in code and "return" not in code:
        return RewrittenSource(code, "")
    source = code.encode("utf-8")
    tree = _syntax_tree(code)
    _check_no_top_level_return(tree.root_node, source)
    edits: list[tuple[int, int, bytes]] = []
    hoisted: list[str] = []

    for node in tree.root_node.children:
        if node.type == "import_statement":
            hoisted.append(_binding_statement(node, source, exports))
            edits.append((node.start_byte, node.end_byte, _blank(source[node.start_byte : node.end_byte])))
        elif node.type == "export_statement":
            edits.append(_export_edit(node, source, exports))

    dynamic = _dynamic_imports(tree.root_node)
    for call in dynamic:
        keyword = call.children[0]
        edits.append((keyword.start_byte, keyword.end_byte, DYNAMIC_IMPORT_ALIAS.encode()))
    if dynamic:
        hoisted.append(f"const {DYNAMIC_IMPORT_ALIAS} = {DYNAMIC_IMPORT};")

    if not edits:
        return RewrittenSource(code, "")
    out = bytearray(source)
    for start, end, replacement in sorted(edits, reverse=True):
        out[start:end] = replacement
    return RewrittenSource(out.decode("utf-8"), "".join(hoisted))


def _blank(text: bytes) -> bytes:
    """Same length, same line breaks, nothing else."""
    return bytes(b if b in b"\r\n" else 0x20 for b in text)


def _specifier(node: tree_sitter.Node, source: bytes, exports: Mapping[str, frozenset[str]]) -> str:
    string = node.child_by_field_name("source")
    if string is None:
        raise ImportError_("Unsupported import in exec: <missing specifier>")
    spec = _string_value(string, source)
    if spec not in exports:
        raise ImportError_(f"Unsupported import in exec: {spec}")
    return spec


def _string_value(node: tree_sitter.Node, source: bytes) -> str:
    text = source[node.start_byte : node.end_byte].decode("utf-8")
    if text[:1] == "'":
        text = '"' + text[1:-1].replace('\\"', '"').replace('"', '\\"') + '"'
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = text[1:-1]
    return str(value)


def _binding_statement(node: tree_sitter.Node, source: bytes, exports: Mapping[str, frozenset[str]]) -> str:
    spec = _specifier(node, source, exports)
    module = f"{MODULE_LOADER}({json.dumps(spec)})"
    clause = next((c for c in node.children if c.type == "import_clause"), None)
    if clause is None:
        return f"{module};"
    statements: list[str] = []
    for part in clause.children:
        if part.type == "identifier":
            statements.append(f"const {_text(part, source)} = {module}.default;")
        elif part.type == "namespace_import":
            name = next(c for c in part.children if c.type == "identifier")
            statements.append(f"const {_text(name, source)} = {module};")
        elif part.type == "named_imports":
            pairs: list[str] = []
            for specifier in (c for c in part.children if c.type == "import_specifier"):
                imported = specifier.child_by_field_name("name")
                alias = specifier.child_by_field_name("alias")
                assert imported is not None
                imported_name = (
                    _string_value(imported, source) if imported.type == "string" else _text(imported, source)
                )
                if imported_name not in exports[spec]:
                    raise ImportError_(
                        f"SyntaxError: The requested module '{spec}' does not provide an export named "
                        f"'{imported_name}'"
                    )
                local = _text(alias, source) if alias is not None else imported_name
                pairs.append(f"{json.dumps(imported_name)}: {local}")
            statements.append(f"const {{{', '.join(pairs)}}} = {module};")
    return "".join(statements)


def _export_edit(
    node: tree_sitter.Node, source: bytes, exports: Mapping[str, frozenset[str]]
) -> tuple[int, int, bytes]:
    """`export <decl>` / `export default <x>` keep the declaration; the rest vanishes."""
    if node.child_by_field_name("source") is not None:
        _specifier(node, source, exports)
    keep = node.child_by_field_name("declaration") or node.child_by_field_name("value")
    end = keep.start_byte if keep is not None else node.end_byte
    return node.start_byte, end, _blank(source[node.start_byte : end])


def _dynamic_imports(root: tree_sitter.Node) -> list[tree_sitter.Node]:
    found: list[tree_sitter.Node] = []
    stack = [root]
    while stack:
        node = stack.pop()
        if node.type == "call_expression" and node.children and node.children[0].type == "import":
            found.append(node)
        stack.extend(node.children)
    return found


# Nodes whose body is a new function scope, where `return` is legal.
_FUNCTION_SCOPES = frozenset(
    {
        "function_declaration",
        "function_expression",
        "generator_function_declaration",
        "generator_function",
        "arrow_function",
        "method_definition",
    }
)


def _check_no_top_level_return(root: tree_sitter.Node, source: bytes) -> None:
    """Refuse `return` outside any function, as V8 does when it compiles a module.

    A source tree-sitter cannot parse is left to V8, which reports its first syntax error.
    """
    if root.has_error:
        return
    stack = [root]
    while stack:
        node = stack.pop()
        if node.type == "return_statement":
            line_start = source.rfind(b"\n", 0, node.start_byte) + 1
            line_end = source.find(b"\n", node.start_byte)
            prefix = source[line_start : node.start_byte].decode("utf-8")
            column = len(prefix.encode("utf-16-le")) // 2 + 1  # V8 counts UTF-16 units
            line = node.start_point.row + 1
            text = source[line_start : len(source) if line_end < 0 else line_end].decode("utf-8").rstrip("\r")
            raise ImportError_(
                f"SyntaxError: Illegal return statement\n    at exec_main.mjs:{line}:{column}\n"
                + source_excerpt(line, text, column - 1, len("return"))
            )
        if node.type not in _FUNCTION_SCOPES:
            stack.extend(reversed(node.children))  # depth-first in source order: the first one


def _text(node: tree_sitter.Node, source: bytes) -> str:
    return source[node.start_byte : node.end_byte].decode("utf-8")
