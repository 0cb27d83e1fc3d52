"""Callables that are not plain functions as tools: bound methods, `functools.partial`, objects
with a `__call__`, sync and async; and the callables refused with a `UsageError` that says what
to pass instead.
"""

from __future__ import annotations

import functools
import operator
from typing import Any

import pytest

from codemode import TextItem, Tool, UsageError
from codemode.tools import requires_approval
from conftest import MakeCodeMode


def scale(value: int, factor: int) -> int:
    """Multiply a value by a factor.

    Args:
        value: the number to scale.
        factor: what to multiply it by.
    """
    return value * factor


async def scale_later(value: int, factor: int) -> int:
    """Multiply a value by a factor, asynchronously."""
    return value * factor


class Greeter:
    """Greets people (the class docstring)."""

    def __init__(self, greeting: str) -> None:
        self.greeting = greeting

    def greet(self, name: str) -> str:
        """Greet someone by name."""
        return f"{self.greeting}, {name}"

    async def greet_later(self, name: str) -> str:
        """Greet someone by name, asynchronously."""
        return f"{self.greeting}, {name}"


class Shout:
    """Shout a word."""

    def __call__(self, word: str) -> str:
        return word.upper()


class Whisper:
    async def __call__(self, word: str) -> str:
        """Whisper a word."""
        return word.lower()


def properties(tool: Tool) -> dict[str, Any]:
    assert tool.input_schema is not None
    return tool.input_schema["properties"]


def test_a_partial_takes_its_name_and_description_from_the_function_and_drops_bound_parameters() -> None:
    by_keyword = Tool.from_function(functools.partial(scale, factor=10))
    by_position = Tool.from_function(functools.partial(scale, 3))
    assert (by_keyword.name, by_keyword.description) == ("scale", "Multiply a value by a factor.")
    assert properties(by_keyword) == {"value": {"type": "integer", "description": "the number to scale."}}
    assert by_keyword.input_schema is not None and by_keyword.input_schema["required"] == ["value"]
    assert properties(by_position) == {"factor": {"type": "integer", "description": "what to multiply it by."}}
    nested = Tool.from_function(functools.partial(functools.partial(scale_later, 2), factor=5))
    assert nested.name == "scale_later" and properties(nested) == {}


def test_a_bound_method_has_no_self_parameter() -> None:
    tool = Tool.from_function(Greeter("Hello").greet)
    assert (tool.name, tool.description) == ("greet", "Greet someone by name.")
    assert properties(tool) == {"name": {"type": "string"}}


def test_a_callable_object_is_named_after_its_class_and_described_by_its_call_or_class() -> None:
    shout, whisper = Tool.from_function(Shout()), Tool.from_function(Whisper())
    assert (shout.name, shout.description) == ("Shout", "Shout a word.")
    assert (whisper.name, whisper.description) == ("Whisper", "Whisper a word.")
    assert properties(shout) == properties(whisper) == {"word": {"type": "string"}}


def test_approval_marked_on_the_function_holds_through_a_partial() -> None:
    @requires_approval
    def delete(path: str, force: bool) -> None:
        """Delete a file."""

    assert Tool.from_function(functools.partial(delete, force=True)).requires_approval is True


def test_a_class_is_refused_with_what_to_pass_instead() -> None:
    with pytest.raises(UsageError, match=r"Greeter is a class, not a tool: pass a function, a bound method"):
        Tool.from_function(Greeter)


@pytest.mark.parametrize("callable_", [iter, operator.itemgetter(1)], ids=["builtin", "C callable object"])
def test_a_callable_without_a_signature_is_refused_with_what_to_pass_instead(callable_: Any) -> None:
    with pytest.raises(UsageError, match=r"no signature to describe to the model; wrap it in a typed function"):
        Tool.from_function(callable_)


async def test_each_kind_of_callable_runs_as_a_tool(make_cm: MakeCodeMode) -> None:
    hello, hi = Greeter("Hello"), Greeter("Hi")
    tools = [
        Tool.from_function(functools.partial(scale, factor=10), name="times_ten"),
        Tool.from_function(functools.partial(scale_later, factor=100), name="times_hundred"),
        hello.greet,
        Tool.from_function(hi.greet_later, name="greet_async"),
        Shout(),
        Whisper(),
    ]
    cm = await make_cm(tools)
    result = await cm.exec(
        "text([await tools.times_ten({ value: 4 }), await tools.times_hundred({ value: 4 }),"
        ' await tools.greet({ name: "Ada" }), await tools.greet_async({ name: "Bo" }),'
        ' await tools.Shout({ word: "hey" }), await tools.Whisper({ word: "HUSH" })].join(" | "))'
    )
    assert result.ok, result.error
    assert [item.text for item in result.items if isinstance(item, TextItem)][-1] == (
        "40 | 400 | Hello, Ada | Hi, Bo | HEY | hush"
    )
