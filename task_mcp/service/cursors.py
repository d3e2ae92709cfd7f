"""Opaque keyset cursors: base64url JSON of a page's last sort key, plus a fingerprint of the query,
so a cursor is only accepted by the list (same filters) that gave it, on any replica."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
from typing import Any
from zoneinfo import ZoneInfo

from task_mcp.errors import InvalidArgumentError
from task_mcp.models import PRIORITIES, TaskQuery


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


def list_fingerprint(query: TaskQuery, sort: str) -> str:
    """What a list_tasks cursor is bound to: its filters and sort."""
    shape = query.model_dump(exclude={"cursor", "limit", "include_description"}, mode="json") | {"sort": sort}
    return hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()[:12]


def decode_list_cursor(cursor: str | None, fingerprint: str, sort: str, zone: ZoneInfo) -> dict[str, Any] | None:
    """A list_tasks cursor's data, every key checked; None for the first page."""
    if cursor is None:
        return None
    bad = InvalidArgumentError(
        "cursor: not a next_cursor from this list. Pass next_cursor unchanged, with the same filters "
        "and sort as the call that returned it, or leave cursor out to start from the first page."
    )
    data = decode(cursor, fingerprint, bad)
    if "k" not in data:
        raise bad  # "k" may be null (an undated task under sort=due), never missing
    # An edited cursor must fail as a bad cursor, not reach the query as a key of the wrong type.
    key, number = data.get("k"), data.get("n")
    if type(number) is not int or not 0 < number < 2**31:
        raise bad
    if sort == "ready" and (type(data.get("p")) is not int or not 0 <= data["p"] < len(PRIORITIES)):
        raise bad
    if sort == "priority":
        if type(key) is not int or not 0 <= key < len(PRIORITIES):
            raise bad
    elif not (key is None and sort in ("due", "ready")):
        try:
            if not isinstance(key, str):
                raise bad
            instant = dt.datetime.fromisoformat(key)
            if instant.tzinfo is None:
                raise bad
            # It must convert to UTC and to the zone's local date, as the query will.
            instant.astimezone(dt.UTC)
            instant.astimezone(zone).date()
        except (TypeError, ValueError, OverflowError):
            raise bad from None
    return data
