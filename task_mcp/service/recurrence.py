"""Repeating tasks (DESIGN §11): what `repeat` accepts, and where a completed occurrence moves `due`.

A rule is an RFC 5545 RRULE without DTSTART, or a phrase that maps to one; dateutil's `rrulestr`
parses it. The series starts at the due the task had when `repeat` was set. A due is either a
`datetime.date` (the series repeats by date) or an aware `datetime` in UTC (the series keeps its
local wall time in an IANA zone; a local time that does not exist moves forward by the gap, an
ambiguous one takes the first, which is what `fold=0` means to `zoneinfo`).

Every computation ends: dateutil stops at year 9999, the existence check moves its window near
that year by whole 400-year calendar cycles so an impossible rule is found out after at most ~410
years of scanning, and a series without COUNT is re-anchored by whole cycles near the point asked
about, so a series that started centuries ago costs no more than a recent one.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass
from typing import overload
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dateutil.rrule import rrule, rrulestr

from task_mcp.dates import LAST_DAY
from task_mcp.errors import InvalidArgumentError

__all__ = ["check_repeat", "has_occurrence_within", "next_due", "normalize_repeat"]

ACCEPTED = (
    "Use an RRULE such as FREQ=WEEKLY;BYDAY=MO (FREQ DAILY, WEEKLY, MONTHLY or YEARLY; INTERVAL 1-999; "
    "COUNT 1-1000 or UNTIL; no DTSTART) or a phrase such as 'every monday', 'weekdays', 'every 2 weeks' "
    "(also daily, weekly, monthly, yearly, 'every N days|weeks|months|years', 'every mon, wed and fri')."
)
MAX_RULE_LENGTH = 500
MAX_INTERVAL = 999
MAX_COUNT = 1000

# RFC 5545 parts that make sense for a task with one due per occurrence. The time of day comes from
# the due, so BYHOUR/BYMINUTE/BYSECOND are refused; BYEASTER is a dateutil extension.
_PARTS = frozenset(
    {"FREQ", "INTERVAL", "COUNT", "UNTIL", "WKST", "BYSETPOS", "BYMONTH", "BYMONTHDAY", "BYYEARDAY", "BYWEEKNO"}
) | {"BYDAY"}
_FREQS = ("DAILY", "WEEKLY", "MONTHLY", "YEARLY")
# How many periods of each FREQ make one 400-year Gregorian cycle, after which dates and weekdays repeat.
_CYCLE = {"DAILY": 146097, "WEEKLY": 20871, "MONTHLY": 4800, "YEARLY": 400}

_DAYS = {"mo": "monday", "tu": "tuesday", "we": "wednesday", "th": "thursday", "fr": "friday"}
_DAYS |= {"sa": "saturday", "su": "sunday"}
_DAY_CODE = {name: code.upper() for code, name in _DAYS.items()} | {
    name[:3]: code.upper() for code, name in _DAYS.items()
}
_FIXED_PHRASES = {
    "daily": "FREQ=DAILY",
    "every day": "FREQ=DAILY",
    "weekdays": "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR",
    "weekly": "FREQ=WEEKLY",
    "every week": "FREQ=WEEKLY",
    "monthly": "FREQ=MONTHLY",
    "every month": "FREQ=MONTHLY",
    "yearly": "FREQ=YEARLY",
    "every year": "FREQ=YEARLY",
}
_EVERY_N = re.compile(r"every (\d{1,4}) (day|week|month|year)s?")
_UNIT_FREQ = {"day": "DAILY", "week": "WEEKLY", "month": "MONTHLY", "year": "YEARLY"}
_WEEKDAY_LIST = re.compile(r"every ([a-z]+(?:(?:, ?| and |, and )[a-z]+)*)")
_WEEKDAY_SEP = re.compile(r", and |, ?| and ")


def _invalid(what: str) -> InvalidArgumentError:
    return InvalidArgumentError(f"repeat: {what} {ACCEPTED}")


@dataclass(frozen=True)
class _Rule:
    """A valid rule: its RRULE text without UNTIL (for dateutil) and UNTIL as written."""

    text: str  # canonical, UNTIL included
    freq: str
    interval: int
    count: int | None
    until: dt.date | dt.datetime | None  # a date, an aware UTC datetime, or a floating (naive) one
    body: str  # the rule without UNTIL


def _phrase_rule(phrase: str) -> str | None:
    if phrase in _FIXED_PHRASES:
        return _FIXED_PHRASES[phrase]
    if match := _EVERY_N.fullmatch(phrase):
        n = int(match[1])
        if not 1 <= n <= MAX_INTERVAL:
            raise _invalid(f"'{phrase}': N must be 1 to {MAX_INTERVAL}.")
        return f"FREQ={_UNIT_FREQ[match[2]]};INTERVAL={n}"
    if match := _WEEKDAY_LIST.fullmatch(phrase):
        names = _WEEKDAY_SEP.split(match[1])
        if all(name in _DAY_CODE for name in names):
            return "FREQ=WEEKLY;BYDAY=" + ",".join(dict.fromkeys(_DAY_CODE[name] for name in names))
    return None


def _parse_until(value: str) -> dt.date | dt.datetime:
    if len(value) == 8:
        return dt.date.fromisoformat(value)
    if not re.fullmatch(r"\d{8}T\d{6}Z?", value):
        raise ValueError(value)
    return dt.datetime.fromisoformat(value)


def _format_until(value: dt.date | dt.datetime) -> str:
    if not isinstance(value, dt.datetime):
        return value.strftime("%Y%m%d")
    return value.strftime("%Y%m%dT%H%M%S") + ("Z" if value.tzinfo is not None else "")


def _parse(text: str) -> _Rule:
    """Validate `text` (a phrase or an RRULE) and return it canonical; `InvalidArgumentError` if not."""
    if len(text) > MAX_RULE_LENGTH:
        raise _invalid(f"is longer than {MAX_RULE_LENGTH} characters.")
    phrase = " ".join(text.lower().split())
    source = _phrase_rule(phrase)
    if source is None:
        source = text.strip().upper()
        source = source.removeprefix("RRULE:")
        if "DTSTART" in source:
            raise _invalid("give the rule without DTSTART; the series starts at the task's due.")
        if "=" not in source or any(c in source for c in ":\r\n"):
            raise _invalid(f"{text!r} is neither a known phrase nor one RRULE line.")
    parts: dict[str, str] = {}
    for part in source.split(";"):
        name, sep, value = part.partition("=")
        if not sep or name not in _PARTS or name in parts:
            shown = name if sep else part
            raise _invalid(f"{shown!r} in {text!r} is not an RRULE part this server takes, or is repeated.")
        parts[name] = value
    freq = parts.get("FREQ")
    if freq not in _FREQS:
        raise _invalid(f"FREQ must be DAILY, WEEKLY, MONTHLY or YEARLY, not {freq!r}.")
    if "COUNT" in parts and "UNTIL" in parts:
        raise _invalid("give COUNT or UNTIL, not both (RFC 5545).")
    until = None
    if "UNTIL" in parts:
        try:
            until = _parse_until(parts.pop("UNTIL"))
        except ValueError:
            raise _invalid("UNTIL must be a date (20261231) or a UTC time (20261231T170000Z).") from None
    body = ";".join(f"{name}={value}" for name, value in parts.items())
    try:
        parsed = rrulestr(body, dtstart=dt.datetime(2000, 1, 1))
    except (ValueError, TypeError, IndexError, KeyError, OverflowError) as exc:
        raise _invalid(f"{text!r} is not a valid RRULE ({exc}).") from None
    assert isinstance(parsed, rrule)
    interval = int(parts.get("INTERVAL", "1"))
    if not 1 <= interval <= MAX_INTERVAL:
        raise _invalid(f"INTERVAL must be 1 to {MAX_INTERVAL}, not {interval}.")
    count = int(parts["COUNT"]) if "COUNT" in parts else None
    if count is not None and not 1 <= count <= MAX_COUNT:
        raise _invalid(f"COUNT must be 1 to {MAX_COUNT}, not {count}.")
    # dateutil writes the parts in one order, with numbers and weekdays normalized.
    body = str(parsed).splitlines()[-1].removeprefix("RRULE:")
    canonical = body.split(";")
    if until is not None:
        # UNTIL goes after FREQ/INTERVAL/WKST, where dateutil puts it.
        at = next((i for i, p in enumerate(canonical) if p.startswith("BY")), len(canonical))
        canonical.insert(at, f"UNTIL={_format_until(until)}")
    return _Rule(";".join(canonical), freq, interval, count, until, body)


def normalize_repeat(text: str) -> str:
    """The canonical RRULE for a `repeat` input (an RRULE or a §11 phrase, any case).

    Raises:
        InvalidArgumentError: anything else, out of bounds, or with DTSTART; the message says what is accepted.
    """
    return _parse(text).text


@dataclass(frozen=True)
class _Series:
    """A rule laid out in naive datetimes: local wall times for a datetime due, midnights for a date."""

    rule: rrule
    zone: ZoneInfo | None  # None: the series repeats by date

    def due_of(self, wall: dt.datetime) -> dt.date | dt.datetime | None:
        """The due an occurrence stands for, or None when it falls after what the server can store."""
        if self.zone is None:
            return wall.date() if wall.date() <= LAST_DAY else None
        try:  # fold=0: a nonexistent time moves forward by the gap, an ambiguous one is the first
            instant = wall.replace(tzinfo=self.zone).astimezone(dt.UTC)
        except OverflowError:
            return None
        return instant if instant.date() <= LAST_DAY else None


def _zone(zone: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(zone or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidArgumentError(f"timezone: {zone!r} is not an IANA time zone, e.g. Europe/Berlin.") from None


def _wall(value: dt.date | dt.datetime, zone: ZoneInfo | None) -> dt.datetime:
    """`value` as the series counts it: a naive local wall time, or a date's midnight."""
    if isinstance(value, dt.datetime):
        if zone is None:
            return dt.datetime.combine(value.astimezone(dt.UTC).date(), dt.time())
        return value.astimezone(zone).replace(tzinfo=None)
    return dt.datetime.combine(value, dt.time())


def _until_wall(until: dt.date | dt.datetime, zone: ZoneInfo | None) -> dt.datetime:
    if not isinstance(until, dt.datetime):  # a date: that whole day
        return dt.datetime.combine(until, dt.time.max if zone is not None else dt.time())
    if until.tzinfo is not None:
        return _wall(until, zone)
    return until if zone is not None else dt.datetime.combine(until.date(), dt.time())


def _shift_years(value: dt.datetime, years: int) -> dt.datetime:
    return value.replace(year=value.year + years)  # by whole 400-year cycles, so Feb 29 stays valid


def _series(
    rule: _Rule, start: dt.date | dt.datetime, zone: ZoneInfo | None, *, shift: int = 0, near: dt.datetime | None = None
) -> _Series:
    """The series from `start`, moved `shift` years (a multiple of 400) or re-anchored at or before `near`."""
    anchor = _shift_years(_wall(start, zone), shift)
    if near is not None and rule.count is None:
        # Without COUNT, the series from anchor + k whole cycles of its own periods holds the same occurrences
        # from there on, so the scan can begin near the point asked about instead of at a distant start.
        step = 400 * rule.interval // math.gcd(_CYCLE[rule.freq], rule.interval)
        cycles = (near.year - anchor.year - 1) // step
        if cycles > 0:
            anchor = _shift_years(anchor, cycles * step)
    until = None
    if rule.until is not None:
        until = _until_wall(rule.until, zone)
        # An UNTIL that a shift would carry past year 9999 lies beyond the window the caller looks at.
        until = _shift_years(until, shift) if until.year + shift <= dt.MAXYEAR else None
    parsed = rrulestr(rule.body, dtstart=anchor)
    assert isinstance(parsed, rrule)
    return _Series(parsed.replace(until=until) if until is not None else parsed, zone)


def has_occurrence_within(rule: str, start: dt.date | dt.datetime, *, years: int = 10, zone: str | None = None) -> bool:
    """Whether the series of `rule` from `start` has an occurrence at or after `start` within `years` years.

    `start` and `zone` mean what they mean for `next_due`. A rule that can never match (February 30th)
    answers False after a bounded scan: the window is moved near year 9999 by whole 400-year
    cycles (dates and weekdays repeat exactly), where dateutil stops.
    """
    parsed = _parse(rule)
    tz = _zone(zone) if isinstance(start, dt.datetime) else None
    wall = _wall(start, tz)
    if wall.year + years >= dt.MAXYEAR - 1:  # the window reaches the last day the server stores: no shift needed
        series = _series(parsed, start, tz)
        found = series.rule.after(wall, inc=True)
        return found is not None and series.due_of(found) is not None
    end_year = wall.year + years
    shift = 400 * ((dt.MAXYEAR - 1 - end_year) // 400)
    series = _series(parsed, start, tz, shift=shift)
    first = series.rule.after(_shift_years(wall, shift), inc=True)
    if first is None:
        return False
    horizon = wall.replace(year=end_year) if (wall.month, wall.day) != (2, 29) else wall.replace(year=end_year, day=28)
    return first <= _shift_years(horizon, shift)


def check_repeat(text: str, *, due: dt.date | dt.datetime, zone: str | None = None) -> str:
    """The canonical RRULE to store for `repeat` on a task due at `due` (the series start).

    Raises:
        InvalidArgumentError: `text` is not a valid rule, or its series has no occurrence in the
            10 years from `due`.
    """
    rule = normalize_repeat(text)
    if not has_occurrence_within(rule, due, zone=zone):
        raise _invalid(f"{rule} has no occurrence in the 10 years from the due ({due.isoformat()}).")
    return rule


@overload
def next_due(
    rule: str, *, series_start: dt.date, current_due: dt.datetime, now: dt.datetime, zone: str | None
) -> dt.datetime | None: ...
@overload
def next_due(
    rule: str, *, series_start: dt.date, current_due: dt.date, now: dt.datetime, zone: str | None = None
) -> dt.date | None: ...
def next_due(
    rule: str,
    *,
    series_start: dt.date | dt.datetime,
    current_due: dt.date | dt.datetime,
    now: dt.datetime,
    zone: str | None = None,
) -> dt.date | dt.datetime | None:
    """Where `due` moves when the occurrence at `current_due` is completed at `now`; None: completed for good.

    The answer is the first occurrence of `rule`'s series, started at `series_start`, that is strictly
    after `current_due` and not yet overdue at `now` (an instant: not before `now`; a date: not before
    today in UTC). Occurrences passed over still count towards COUNT.

    - A `datetime.date` due (date-only) repeats by date and the answer is a date; `zone` is not used.
    - An aware `datetime` due repeats at the local wall time `series_start` has in `zone` (IANA;
      None means UTC), across daylight-saving changes; the answer is an aware datetime in UTC.
    - When `series_start` and `current_due` are of different kinds (the due was changed from a date to
      a time or back), the series is laid out in the kind of `current_due`: a date start repeats at the
      local time of day of `current_due`, a datetime start by its date in `zone`.

    None also when the next occurrence falls after the last day the server stores (9999-12-30).

    Raises:
        InvalidArgumentError: `rule` is not a valid rule, or `zone` is not a known zone.
    """
    parsed = _parse(rule)
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    tz: ZoneInfo | None = None
    if isinstance(current_due, dt.datetime):
        tz = _zone(zone)
        if not isinstance(series_start, dt.datetime):
            local_time = current_due.astimezone(tz).time()
            series_start = dt.datetime.combine(series_start, local_time, tzinfo=tz).astimezone(dt.UTC)
    elif isinstance(series_start, dt.datetime):
        series_start = series_start.astimezone(_zone(zone)).date()
    cursor = _wall(current_due, tz)
    # Start the scan a day before `now` so the loop below only steps over what falls in between.
    threshold = _wall(now, tz) - dt.timedelta(days=1)
    begin = max(cursor, threshold)
    series = _series(parsed, series_start, tz, near=begin)
    today = now.astimezone(dt.UTC).date()
    for wall in series.rule.xafter(begin, inc=False):
        due = series.due_of(wall)
        if due is None:
            return None
        if isinstance(due, dt.datetime):
            assert isinstance(current_due, dt.datetime)
            if due > current_due and due >= now:
                return due
        elif due > current_due and due >= today:
            return due
    return None
