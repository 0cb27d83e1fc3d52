"""`data:` URL parsing, shared by the formats that carry media as base64 plus a MIME type.

Invariant: pure; a URL that cannot be parsed gives None, never an exception.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

__all__ = ["DataUrl", "parse_data_url"]

_DEFAULT_MIME_TYPE = "application/octet-stream"


@dataclass(frozen=True, slots=True)
class DataUrl:
    """A decoded `data:` URL: its MIME type (lower-cased, no parameters) and base64 payload."""

    mime_type: str
    data: str


def parse_data_url(url: str) -> DataUrl | None:
    """Split `data:<mime>[;params][;base64],<payload>` into MIME type and base64 data.

    A payload that is not base64 (percent-encoded text) is re-encoded as base64.
    """
    scheme, colon, rest = url.partition(":")
    header, comma, payload = rest.partition(",")
    if not colon or not comma or scheme.strip().lower() != "data":
        return None
    mime_type, *params = (part.strip() for part in header.split(";"))
    if any(param.lower() == "base64" for param in params):
        data = payload  # passed on as is: the provider judges whether it decodes
    else:
        data = base64.b64encode(unquote_to_bytes(payload)).decode("ascii")
    return DataUrl(mime_type.lower() or _DEFAULT_MIME_TYPE, data)
