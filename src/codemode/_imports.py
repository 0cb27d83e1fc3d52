"""Module syntax in model code: rewrite `import`/`export` so the script runs as a plain function.

V8 here has no module loader, yet models write `import { text } from "@openai/code_mode"`.
With a real JavaScript parser (tree-sitter) each static import is blanked out in place and its
bindings are hoisted into statements that run first; `import(...)` calls go to our loader;
`export` keywords are blanked. Blanking keeps every line (and nearly every column) where the
model wrote it, so stack positions stay right.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Set
from dataclasses import dataclass
from functools import cache

import tree_sitter
import tree_sitter_javascript

MODULE_LOADER = "__codemode_module__"
DYNAMIC_IMPORT = "__codemode_import__"
CODE_MODE_MODULES = ("@openai/code_mode", "openai/code_mode")
CODE_MODE_EXPORTS = frozenset(
    {
        "audio",
        "clearTimeout",
        "exit",
        "forward_output",
        "image",
        "load",
        "notify",
        "output_image",
        "output_text",
        "setTimeout",
        "store",
        "text",
        "yield_control",
    }
)
TOOLS_MODULE = "tools.js"


class ImportError_(Exception):
    """The script imports something that does not exist; the message is the model-facing error."""


@dataclass(frozen=True)
class RewrittenSource:
    code: str
    hoisted: str


def module_exports(tool_names: Set[str]) -> dict[str, frozenset[str]]:
    """What each synthesized module exports, given the session's tool global names."""
    exports = {spec: CODE_MODE_EXPORTS for spec in CODE_MODE_MODULES}
    exports[TOOLS_MODULE] = frozenset(tool_names) | {"ALL_TOOLS"}
    return exports


@cache
def _parser() -> tree_sitter.Parser:
    return tree_sitter.Parser(tree_sitter.Language(tree_sitter_javascript.language()))


def rewrite_modules(code: str, exports: Mapping[str, frozenset[str]]) -> RewrittenSource:
    """Hoist static imports, route dynamic `import()`, blank `export`.

    Raises:
        ImportError_: an unsupported specifier or a missing named export, with the text the
            model should see (`Unsupported import in exec: <spec>`).
    """
    if "import" not in code and "export" not in code:
        return RewrittenSource(code, "")
    source = code.encode("utf-8")
    tree = _parser().parse(source)
    edits: list[tuple[int, int, bytes]] = []
    hoisted: list[str] = []

    for node in tree.root_node.children:
        if node.type == "import_statement":
            hoisted.append(_binding_statement(node, source, exports))
            edits.append((node.start_byte, node.end_byte, _blank(source[node.start_byte : node.end_byte])))
        elif node.type == "export_statement":
            edits.append(_export_edit(node, source, exports))

    for call in _dynamic_imports(tree.root_node):
        keyword = call.children[0]
        edits.append((keyword.start_byte, keyword.end_byte, DYNAMIC_IMPORT.encode()))

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
    statements = []
    for part in clause.children:
        if part.type == "identifier":
            statements.append(f"const {_text(part, source)} = {module}.default;")
        elif part.type == "namespace_import":
            name = next(c for c in part.children if c.type == "identifier")
            statements.append(f"const {_text(name, source)} = {module};")
        elif part.type == "named_imports":
            pairs = []
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
    found = []
    stack = [root]
    while stack:
        node = stack.pop()
        if node.type == "call_expression" and node.children and node.children[0].type == "import":
            found.append(node)
        stack.extend(node.children)
    return found


def _text(node: tree_sitter.Node, source: bytes) -> str:
    return source[node.start_byte : node.end_byte].decode("utf-8")
