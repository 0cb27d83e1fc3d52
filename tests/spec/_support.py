"""Small helpers for reading results in the ported spec cases."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from codemode import AudioItem, CodeMode, ExecResult, ImageItem, TextItem, Tool
from codemode._output import model_items
from codemode._protocol.types import OutputItem

MakeCodeMode = Callable[..., Awaitable[CodeMode]]
"""The type of the `make_cm` fixture (tests/conftest.py)."""

__all__ = ["Blocker", "MakeCodeMode", "describe", "header", "model_texts", "texts"]


def texts(result: ExecResult) -> list[str]:
    """The result's items as strings: texts verbatim, media as `image:<url>:<detail>`/`audio:<url>`."""
    return [describe(item) for item in result.items]


def model_texts(result: ExecResult) -> list[str]:
    """What the model reads (header, items, error item), media described like `texts`."""
    return [describe(item) for item in model_items(result)]


def describe(item: OutputItem) -> str:
    if isinstance(item, TextItem):
        return item.text
    if isinstance(item, ImageItem):
        return f"image:{item.image_url}:{item.detail}"
    assert isinstance(item, AudioItem)
    return f"audio:{item.audio_url}"


def header(result: ExecResult) -> str:
    """The first line of the model-visible header (`Script completed`, ...)."""
    first = model_items(result)[0]
    assert isinstance(first, TextItem)
    return first.text.split("\n", 1)[0]


class Blocker:
    """A coroutine that never returns and records that it started and was cancelled: use
    `block` as an `on_notify` callback, or `tool` as a nested tool named `block`."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.cancelled = asyncio.Event()
        self.cancellations = 0
        self.tool = Tool(name="block", description="Never returns.", handler=self.block)

    async def block(self, *arguments: object) -> str:
        self.started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancellations += 1
            self.cancelled.set()
            raise
        return "never"
