"""What a script sends, made UTF-8 safe where it enters the host: one pass over each engine event.

JavaScript strings may hold lone surrogates. The engines hand most of them over raw (`text`,
`notify`, `image`/`audio` data URLs, errors, `store` keys); `JSON.stringify` writes them as
`\\ud800` escapes (nested-call arguments, stored values), which decode to lone surrogates again.
Past this point each is U+FFFD (`codemode._protocol.text`), so no tool handler, approval policy,
trace record, stored value, notification or rendered result carries one to a UTF-8 wire.

Cheap when there are none: an ASCII text is known as such without a scan, and JSON text is only
decoded when it holds an escape that may be a surrogate's.
"""

from __future__ import annotations

import json
import re

from codemode._engine.base import EngineDiedEvent, EngineEvent, FinishedEvent, NotifyEvent, OutputEvent, ToolCallEvent
from codemode._protocol.text import safe_data, safe_item, safe_text

__all__ = ["safe_event"]

# Also matches a valid pair's escapes, or the text after an escaped backslash: decoding then finds
# nothing to replace and the JSON text is kept as it came.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def safe_event(event: EngineEvent) -> EngineEvent:
    """`event` with every text in it UTF-8 safe; `event` itself when nothing had to change.

    Runs for every event, so it dispatches on the type (a `match` on class patterns costs about
    ten times as much)."""
    if isinstance(event, OutputEvent):
        item = safe_item(event.item)
        return event if item is event.item else OutputEvent(item)
    if isinstance(event, NotifyEvent):
        text = safe_text(event.text)
        return event if text is event.text else NotifyEvent(text)
    if isinstance(event, ToolCallEvent):
        name = safe_text(event.tool_name)
        arguments = None if event.arguments_json is None else _safe_json(event.arguments_json)
        if name is event.tool_name and arguments is event.arguments_json:
            return event
        return ToolCallEvent(event.call_id, name, arguments)
    if isinstance(event, FinishedEvent):
        return _safe_finished(event)
    if isinstance(event, EngineDiedEvent):
        error = safe_text(event.error)
        return event if error is event.error else EngineDiedEvent(error, event.suspect)
    return event


def _safe_finished(event: FinishedEvent) -> FinishedEvent:
    error = None if event.error is None else safe_text(event.error)
    writes = {safe_text(key): _safe_json(text) for key, text in event.stored_writes.items()}
    unchanged = all(
        new_key is key and new_text is text
        for (new_key, new_text), (key, text) in zip(writes.items(), event.stored_writes.items(), strict=True)
    )
    if error is event.error and unchanged:
        return event
    return FinishedEvent(error, event.stored_writes if unchanged else writes)


def _safe_json(text: str) -> str:
    """JSON text (as `JSON.stringify` wrote it) whose decoded strings hold no lone surrogate."""
    text = safe_text(text)
    if "\\u" not in text or _SURROGATE_ESCAPE.search(text) is None:
        return text
    try:
        value = json.loads(text)
        safe = safe_data(value)
    except (ValueError, RecursionError):
        return text  # not JSON the host can read: whoever decodes it reports that
    return text if safe is value else json.dumps(safe, ensure_ascii=False, separators=(",", ":"))
