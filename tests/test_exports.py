"""The public surface: every public module says what it exports, and every exported name exists.

In the style of anyio's `test_all_attributes` and httpx's `test_exports`: a name that moves or
disappears in a refactor fails here, not in a user's import.
"""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

import pytest

import codemode

PUBLIC_MODULES = [
    "codemode",
    "codemode.errors",
    "codemode.engines",
    "codemode.formats",
    "codemode.testing",
    "codemode.tools",
    "codemode.tools.mcp",
    "codemode.tools.openapi",
    "codemode.mcp_server",
    "codemode.store",
    "codemode.adapters",
    "codemode.adapters.agents",
    "codemode.adapters.pydantic_ai",
    "codemode.adapters.langchain",
]


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_every_public_module_lists_its_exports_literally(name: str) -> None:
    module = importlib.import_module(name)
    assert module.__file__ is not None
    tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
    literal = [
        node.value
        for node in tree.body
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets)
    ]
    assert literal, f"{name} has no __all__"
    assert isinstance(literal[0], ast.List | ast.Tuple), f"{name}.__all__ is not a literal list or tuple"
    assert all(isinstance(element, ast.Constant) for element in literal[0].elts)


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_every_exported_name_exists_and_is_public(name: str) -> None:
    module = importlib.import_module(name)
    exported = list(module.__all__)
    assert len(exported) == len(set(exported)), f"{name}.__all__ repeats a name"
    for attribute in exported:
        assert not attribute.startswith("_"), f"{name} exports the private name {attribute}"
        assert getattr(module, attribute) is not None, f"{name}.{attribute}"


def test_the_top_level_names_resolve_to_their_homes() -> None:
    for attribute in codemode.__all__:
        value = getattr(codemode, attribute)
        assert attribute in dir(codemode)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert value.__name__ == attribute
    with pytest.raises(AttributeError):
        codemode.no_such_name


def test_the_names_users_and_adapters_need_are_public() -> None:
    for attribute in ("Limits", "Defaults", "to_model", "approve_running_call", "State", "EngineError"):
        assert attribute in codemode.__all__
    from codemode.testing import FakeEngine
    from codemode.tools import ToolSource

    assert inspect.isclass(FakeEngine) and inspect.isclass(ToolSource)


def _public(cls: type) -> set[str]:
    return {name for name in dir(cls) if not name.startswith("_")}


def test_sync_code_mode_mirrors_code_mode() -> None:
    missing = _public(codemode.CodeMode) - {"start", "aclose"} - _public(codemode.SyncCodeMode)
    assert not missing, f"SyncCodeMode lacks {sorted(missing)}"
