"""Opaque keyset cursors: base64url JSON of a page's last sort key, plus a fingerprint of the query,
so a cursor is only accepted by the list (same filters) that gave it, on any replica."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from task_mcp.errors import InvalidArgumentError


def encode(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode().rstrip("=")


def decode(cursor: str, fingerprint: str, bad: InvalidArgumentError) -> dict[str, Any]:
    """The cursor's data; raises `bad` unless it is well-formed and was made for `fingerprint`.
    The caller still checks each key's type: an edited cursor must fail as a bad cursor."""
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise bad from None
    if not isinstance(data, dict) or data.get("f") != fingerprint:
        raise bad
    return data
