"""Repeating tasks on the write paths (DESIGN §11): the repeat columns a create or update leaves,
and what completing an occurrence does to a task.

A task's stored values (a dict of `TASKS` columns, as `writes.py` builds them) carry the rule
(`repeat`, normalized), the zone a timed due keeps its local time in (`repeat_timezone`) and the
series start (`repeat_start_at` or `repeat_start_date`, the due left by the call that set
`repeat`). The rules themselves are in `recurrence.py`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from task_mcp.dates import format_instant
from task_mcp.errors import InvalidArgumentError
from task_mcp.service.recurrence import check_repeat, next_due

NOT_REPEATING = {"repeat": None, "repeat_timezone": None, "repeat_start_at": None, "repeat_start_date": None}
_NEEDS_ZONE = (
    "timezone: a repeating task due at a time of day needs timezone (IANA, e.g. Europe/Berlin), so that its "
    "occurrences keep their local time across daylight-saving changes. Give timezone, or a date-only due."
)


def _due(values: dict[str, Any]) -> dt.date | dt.datetime | None:
    due: dt.date | dt.datetime | None = values["due_at"] if values["due_at"] is not None else values["due_date"]
    return due


def show(due: dt.date | dt.datetime | None) -> str | None:
    """A due as tasks show it: `2026-12-01` or `2026-12-01T16:00:00Z`."""
    if isinstance(due, dt.datetime):
        return format_instant(due)
    return due.isoformat() if due is not None else None


def settle(values: dict[str, Any], *, repeat: str | None, timezone: str | None, clear: Sequence[str]) -> bool:
    """Set the repeat columns of `values` (the task after the call's other fields) for a call that
    gives `repeat`, `timezone` and `clear`; True when the call sets a new rule.

    Raises:
        InvalidArgumentError: repeat without a due, a timed due without a zone, a rule out of
            bounds, timezone without a repeating task, or due cleared while repeat stays.
    """
    due = _due(values)
    if "repeat" in clear:
        values |= NOT_REPEATING
        if timezone is not None:
            raise InvalidArgumentError("timezone: it only goes with repeat; leave it out when clearing repeat.")
        return False
    if repeat is not None:
        if due is None:
            raise InvalidArgumentError(
                "repeat: a task needs a due to repeat; give due too (the first occurrence), e.g. due 2026-12-01."
            )
        timed = isinstance(due, dt.datetime)
        if timed and timezone is None:
            raise InvalidArgumentError(_NEEDS_ZONE)
        zone = timezone if timed else None
        rule = check_repeat(repeat, due=due, zone=zone)
        values |= {
            "repeat": rule,
            "repeat_timezone": zone,
            "repeat_start_at": values["due_at"],
            "repeat_start_date": values["due_date"],
        }
        return True
    if values["repeat"] is None:
        if timezone is not None:
            raise InvalidArgumentError(
                "timezone: it is the zone a repeating task keeps its local time in; give it with repeat, or leave "
                "it out (list_tasks takes its own timezone)."
            )
        return False
    if due is None:
        raise InvalidArgumentError(
            'clear: a repeating task needs a due. To clear due, clear repeat too: clear ["due", "repeat"].'
        )
    if isinstance(due, dt.datetime):
        if timezone is not None:
            values["repeat_timezone"] = timezone
        elif values["repeat_timezone"] is None:
            raise InvalidArgumentError(_NEEDS_ZONE)
    return False


def complete(values: dict[str, Any], now: dt.datetime) -> dict[str, str | None]:
    """Complete the current occurrence of the repeating task `values` (already marked completed):
    `due` moves to the rule's next occurrence that is not yet overdue and the task stays open, or,
    when the rule has none, it stays completed for good. Returns `{due, next_due}`."""
    due = _due(values)
    assert due is not None and values["repeat"] is not None
    start = values["repeat_start_at"] if values["repeat_start_at"] is not None else values["repeat_start_date"]
    following = next_due(
        values["repeat"],
        series_start=start if start is not None else due,
        current_due=due,
        now=now,
        zone=values["repeat_timezone"],
    )
    if following is not None:
        values |= {"status": "open", "completed_at": None}
        if isinstance(following, dt.datetime):
            values |= {"due_at": following.replace(microsecond=0), "due_date": None}
        else:
            values |= {"due_at": None, "due_date": following}
    return {"due": show(due), "next_due": show(following)}


def describe(occurrence: dict[str, str | None]) -> str:
    """The words a result's text starts with after completing an occurrence."""
    if occurrence["next_due"] is None:
        return f"completed the occurrence due {occurrence['due']}; no later occurrence, so completed for good"
    return f"completed the occurrence due {occurrence['due']}; next due {occurrence['next_due']}"
