"""Plain data shared by every layer: output items and statuses.

Invariant: this module imports nothing from codemode, so any layer may depend on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypeAlias

Status: TypeAlias = Literal["completed", "failed", "running", "terminated"]
ImageDetail: TypeAlias = Literal["auto", "low", "high", "original"]


@dataclass(frozen=True, slots=True)
class TextItem:
    """A text item produced by `text(...)` (or an error/header text added by the host)."""

    text: str
    type: Literal["text"] = "text"


@dataclass(frozen=True, slots=True)
class ImageItem:
    """An image produced by `image(...)`: always a `data:` URL; detail defaults to "high"."""

    image_url: str
    detail: ImageDetail | None = "high"
    type: Literal["image"] = "image"


@dataclass(frozen=True, slots=True)
class AudioItem:
    """An audio clip produced by `audio(...)`: always a `data:` URL."""

    audio_url: str
    type: Literal["audio"] = "audio"


OutputItem: TypeAlias = TextItem | ImageItem | AudioItem
