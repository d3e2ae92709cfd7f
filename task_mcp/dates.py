"""Dates and instants as the tools read and write them: a `due` is an all-day date or an instant
in UTC, within the days every time zone can convert."""

from __future__ import annotations

import datetime as dt
import re

_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# Every date and instant the server keeps must convert to a local date in any time zone (UTC
# offsets stay within a day), so the first and last day of the calendar are out.
FIRST_DAY, LAST_DAY = dt.date(1, 1, 2), dt.date(9999, 12, 30)
_OUT_OF_RANGE = f"is outside the dates the server can handle ({FIRST_DAY} to {LAST_DAY}, in UTC)"


def parse_due(value: str) -> dt.date | dt.datetime:
    """A date (all-day) or a datetime with an offset, which comes back in UTC.

    Raises:
        ValueError: not ISO 8601, no offset, or outside `FIRST_DAY` … `LAST_DAY` once in UTC.
    """
    value = value.strip()
    if _DATE_RE.match(value):
        try:
            day = dt.date.fromisoformat(value)
        except ValueError:
            raise ValueError("is not a calendar date: give a real day, e.g. 2026-02-28") from None
        if not FIRST_DAY <= day <= LAST_DAY:
            raise ValueError(_OUT_OF_RANGE)
        return day
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            "must be an ISO 8601 date (2026-12-01) or datetime with an offset (2026-12-01T16:00:00Z)"
        ) from None
    if parsed.tzinfo is None:
        raise ValueError("has no UTC offset: add one, e.g. 2026-12-01T16:00:00Z or +02:00")
    instant = to_utc(parsed)
    if instant is None:
        raise ValueError(_OUT_OF_RANGE)
    return instant


def to_utc(value: dt.datetime) -> dt.datetime | None:
    """`value` (aware) in UTC, or None when it falls outside `FIRST_DAY` … `LAST_DAY`."""
    try:
        instant = value.astimezone(dt.UTC)
    except OverflowError:  # year 0 or 10000 once converted
        return None
    return instant if FIRST_DAY <= instant.date() <= LAST_DAY else None


_ZERO = dt.timedelta(0)


def format_instant(value: dt.datetime | None) -> str | None:
    """`2026-12-01T09:00:00Z`: UTC, whole seconds."""
    if value is None:
        return None
    if value.utcoffset() != _ZERO:
        value = value.astimezone(dt.UTC)
    return value.isoformat(timespec="seconds")[:-6] + "Z"  # "+00:00" becomes "Z"
