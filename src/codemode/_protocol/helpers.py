"""The sandbox helpers: the one table the model-facing surface is generated from.

Three places name the helpers a script can call, and they must agree: the `Global helpers:`
section of the `exec` description (`_describe/descriptions.py`), the named exports of the
`@openai/code_mode` module (`_imports.py`), and the globals the prelude installs
(`_engine/prelude.js`, which receives `PRELUDE_HELPERS` and `MODULE_EXPORTS` and refuses to
start when what it installs differs). A helper is added or removed here, and only here.

Invariant: plain data; imports nothing of codemode.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["HELPERS", "HOST_HELPER_PREFIX", "MODULE_EXPORTS", "PRELUDE_HELPERS", "Helper", "InstalledBy"]

HOST_HELPER_PREFIX = "codemode:"
"""Bindings named `HOST_HELPER_PREFIX + name` are host helpers (the discovery helpers of a large
catalog), not tools: the prelude installs each as the global `name` (`prelude.js` HELPER_PREFIX).
No tool identifier can start with it."""

InstalledBy = Literal["prelude", "tools"]
"""Who puts the global there: the prelude, once per isolate before any script; or the run
that installs the session's tools (`ALL_TOOLS` comes with them)."""


@dataclass(frozen=True)
class Helper:
    """One global the script may use, as the model reads about it."""

    name: str
    signature: str  # TypeScript-like declaration quoted in the description (the API the model sees)
    description: str  # the text after `- \`signature\`: ` in the description
    exported: bool  # also a named export of `@openai/code_mode` (alias `openai/code_mode`)
    installed_by: InstalledBy = "prelude"


_DETAIL = '"auto" | "low" | "high" | "original" | null'

# Description order. Texts follow the reference's where it has the helper (spec 1.3).
HELPERS: tuple[Helper, ...] = (
    Helper(
        "exit",
        "exit()",
        "Ends the script right away, successfully (like an early return from the top level).",
        exported=True,
    ),
    Helper(
        "text",
        "text(value: string | number | boolean | undefined | null)",
        "Appends a text item. A non-string value is stringified with `JSON.stringify(...)` when possible.",
        exported=True,
    ),
    Helper(
        "image",
        f"image(imageUrlOrItem: string | {{ image_url: string; detail?: {_DETAIL} }} | ImageContent, "
        f"detail?: {_DETAIL})",
        "Appends an image item. `image_url` should be a base64 `data:` URL. To forward an image from "
        "an MCP tool, pass one `ImageContent` block of `result.content`, for example "
        "`image(result.content[0])`. An MCP image block may ask for a detail level with "
        '`_meta: { "codex/imageDetail": "original" }`. A second `detail` argument overrides any '
        "detail given by the first.",
        exported=True,
    ),
    Helper(
        "audio",
        "audio(audioUrlOrItem: string | { audio_url: string } | AudioContent)",
        "Appends an audio item. The URL must be a base64 `data:` URL; an MCP `AudioContent` block "
        "can be passed as it is.",
        exported=True,
    ),
    Helper(
        "generatedImage",
        "generatedImage(result: { image_url: string; output_hint?: string })",
        "Appends an image-generation result and its optional output hint. HTTP(S) URLs are not supported.",
        exported=True,
    ),
    Helper(
        "forward_output",
        "forward_output(...outputs)",
        "Appends the direct outputs of nested tools as items, all or nothing. A string becomes a "
        "text item. For an object, each block of its MCP `content` array (or of its `content_items` "
        "array) is appended; so is a single text, image or audio content item, an `{ image_url }` "
        "object, or an `output` string. Throws, appending nothing, for arrays, other objects, and "
        "unsupported blocks.",
        exported=True,
    ),
    Helper(
        "store",
        "store(key: string, value: any)",
        "Keeps a serializable value under a string key for later `exec` calls in this session.",
        exported=True,
    ),
    Helper(
        "load",
        "load(key: string)",
        "Returns the value stored under a string key, or `undefined` when there is none.",
        exported=True,
    ),
    Helper(
        "notify",
        "notify(value: string | number | boolean | undefined | null)",
        "Immediately delivers an extra output for the current `exec` call, stringified like `text(...)`.",
        exported=True,
    ),
    Helper(
        "setTimeout",
        "setTimeout(callback: () => void, delayMs?: number)",
        "Schedules a callback and returns a timeout id. A pending timeout does not keep `exec` "
        "alive; await an explicit promise when you need to wait for one.",
        exported=True,
    ),
    Helper(
        "clearTimeout",
        "clearTimeout(timeoutId?: number)",
        "Cancels a timeout created by `setTimeout`.",
        exported=True,
    ),
    Helper(
        "ALL_TOOLS",
        "ALL_TOOLS",
        "Metadata of the enabled nested tools, as `{ name, description }` entries.",
        exported=False,  # a named export of `tools.js`, with the tools
        installed_by="tools",
    ),
    Helper(
        "yield_control",
        "yield_control()",
        "Hands the output gathered so far to the model immediately, while the script keeps running.",
        exported=True,
    ),
)

PRELUDE_HELPERS: tuple[str, ...] = tuple(h.name for h in HELPERS if h.installed_by == "prelude")
"""The globals the prelude installs, exactly (it checks this at start-up)."""

MODULE_EXPORTS: frozenset[str] = frozenset(h.name for h in HELPERS if h.exported)
"""The named exports of `@openai/code_mode`."""
