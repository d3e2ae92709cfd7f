"""Repeating tasks (DESIGN §11) through the SDK's in-memory `mcp.Client`, on SQLite and PostgreSQL:
what `repeat` accepts and stores, the inputs it refuses (changing nothing), `now` in list_tasks,
dates outside the calendar the server can convert, and complete_task's annotations.

What completing a repeating task does is in test_repeat_e2e.py; the service's own rules in test_repeat.py.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from zoneinfo import ZoneInfo

import pytest

from task_mcp.server import TaskMcp
from task_mcp.service import TaskService
from tests.helpers import REPEAT_PHRASES, Caller, Clock, connect, text

pytestmark = pytest.mark.anyio

NOW = dt.datetime(2026, 5, 6, 12, 0, tzinfo=dt.UTC)


@asynccontextmanager
async def user(app: TaskMcp, mint: Callable[..., str], clock: Clock | None = None) -> AsyncIterator[Caller]:
    """Alice on an in-memory MCP session, with the service's time on `clock` (NOW unless given)."""
    app.service = TaskService(app.database, clock=clock or Clock(NOW), purge_every=None)
    async with connect(app) as client:
        yield Caller(client, mint("alice"))


# --- what `repeat` accepts ------------------------------------------------------------------------


@pytest.mark.parametrize(("phrase", "rule"), REPEAT_PHRASES)
async def test_create_task_stores_and_shows_each_phrase_as_its_rrule(app, mint, phrase, rule):
    async with user(app, mint) as alice:
        created = await alice.add("Water the plants", due="2026-05-11", repeat=phrase)
        assert created["repeat"] == rule
        assert (await alice.task(created["id"]))["repeat"] == rule


async def test_a_datetime_due_repeats_in_the_timezone_given_and_the_task_shows_it(app, mint):
    async with user(app, mint) as alice:
        created = await alice.add(
            "Stand-up", due="2026-05-11T09:00:00+02:00", repeat="every monday", timezone="Europe/Berlin"
        )
        assert created["due"] == "2026-05-11T07:00:00Z"
        assert created["repeat"] == "FREQ=WEEKLY;BYDAY=MO"
        assert (await alice.task(created["id"]))["repeat_timezone"] == "Europe/Berlin"


async def test_update_task_sets_repeat_on_an_existing_task(app, mint):
    async with user(app, mint) as alice:
        task = await alice.add("Pay rent", due="2026-06-01")
        updated = await alice.update(task["id"], repeat="monthly")
        assert updated["repeat"] == "FREQ=MONTHLY" and updated["version"] == task["version"] + 1


async def test_create_tasks_and_update_tasks_take_repeat_per_item(app, mint):
    async with user(app, mint) as alice:
        made = await alice.add_many({"title": "Gym", "due": "2026-05-11", "repeat": "every monday and thursday"})
        assert made[0]["repeat"] == "FREQ=WEEKLY;BYDAY=MO,TH"
        updated = await alice.ok("update_tasks", updates=[{"task_id": made[0]["id"], "repeat": "weekdays"}])
        assert updated["tasks"][0]["repeat"] == "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR"


# --- what `repeat` refuses, changing nothing ------------------------------------------------------

BAD_RULES = [
    ("FREQ=HOURLY", "FREQ"),
    ("FREQ=MINUTELY;INTERVAL=5", "FREQ"),
    ("FREQ=DAILY;INTERVAL=0", "INTERVAL"),
    ("FREQ=DAILY;INTERVAL=1000", "INTERVAL"),
    ("every 0 days", "INTERVAL"),
    ("every 1000 days", "INTERVAL"),
    ("FREQ=DAILY;COUNT=0", "COUNT"),
    ("FREQ=DAILY;COUNT=1001", "COUNT"),
    ("DTSTART:20260101T090000Z\nRRULE:FREQ=DAILY", "DTSTART"),
    ("FREQ=DAILY;DTSTART=20260101", "DTSTART"),
    ("whenever I feel like it", "FREQ"),
    ("every blursday", "FREQ"),
    ("FREQ=DAILY;BYHOUR=9", "BYHOUR"),
    ("FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30", "10 years"),
    ("FREQ=DAILY;UNTIL=20200101", "10 years"),
]


@pytest.mark.parametrize(("rule", "named"), BAD_RULES)
async def test_a_bad_rule_is_invalid_argument_naming_what_is_accepted_and_creates_nothing(app, mint, rule, named):
    async with user(app, mint) as alice:
        said = await alice.fails("create_task", "invalid_argument", title="Odd", due="2026-05-11", repeat=rule)
        assert "repeat" in said and named in said
        assert "FREQ=WEEKLY" in said, "the error shows an accepted rule"
        assert await alice.total() == 0


@pytest.mark.parametrize(("rule", "named"), BAD_RULES[::3])
async def test_a_bad_rule_on_update_changes_nothing(app, mint, rule, named):
    async with user(app, mint) as alice:
        task = await alice.add("Odd", due="2026-05-11", repeat="daily")
        before = await alice.fields(task["id"])
        said = await alice.fails("update_task", "invalid_argument", task_id=task["id"], repeat=rule, priority="high")
        assert named in said
        said = await alice.fails("update_tasks", "invalid_argument", updates=[{"task_id": task["id"], "repeat": rule}])
        assert named in said
        assert await alice.fields(task["id"]) == before


async def test_repeat_without_a_due_is_invalid_argument_saying_to_give_one(app, mint):
    async with user(app, mint) as alice:
        said = await alice.fails("create_task", "invalid_argument", title="Someday", repeat="daily")
        assert "due" in said
        assert await alice.total() == 0
        task = await alice.add("Someday")
        before = await alice.fields(task["id"])
        said = await alice.fails("update_task", "invalid_argument", task_id=task["id"], repeat="weekly")
        assert "due" in said
        assert await alice.fields(task["id"]) == before


async def test_a_datetime_due_needs_a_timezone_to_repeat(app, mint):
    async with user(app, mint) as alice:
        said = await alice.fails(
            "create_task", "invalid_argument", title="Call", due="2026-05-11T09:00:00Z", repeat="daily"
        )
        assert "timezone" in said
        assert await alice.total() == 0
        task = await alice.add("Call", due="2026-05-11T09:00:00Z")
        said = await alice.fails("update_task", "invalid_argument", task_id=task["id"], repeat="daily")
        assert "timezone" in said
        assert (await alice.task(task["id"]))["version"] == task["version"]
        bad_zone = await alice.fails(
            "update_task", "invalid_argument", task_id=task["id"], repeat="daily", timezone="Mars/Olympus_Mons"
        )
        assert "timezone" in bad_zone


async def test_clearing_due_of_a_repeating_task_needs_clearing_repeat_too(app, mint):
    async with user(app, mint) as alice:
        task = await alice.add("Water the plants", due="2026-05-11", repeat="daily")
        before = await alice.fields(task["id"])
        said = await alice.fails("update_task", "invalid_argument", task_id=task["id"], clear=["due"])
        assert "repeat" in said
        assert await alice.fields(task["id"]) == before
        cleared = await alice.update(task["id"], clear=["due", "repeat"])
        assert cleared["due"] is None and cleared["repeat"] is None


# --- dates outside what the server can store and convert ------------------------------------------

# Each converts, in UTC or in the zone given, to a year outside 1-9999.
OUT_OF_RANGE = [
    ("0001-01-01T00:30:00+01:00", "UTC"),
    ("9999-12-31T23:30:00-01:00", "UTC"),
    ("0001-01-01T00:00:00Z", "Pacific/Pago_Pago"),
    ("9999-12-31T23:00:00Z", "Pacific/Kiritimati"),
    ("0001-01-01", "UTC"),
    ("9999-12-31", "Pacific/Kiritimati"),
]


@pytest.mark.parametrize(("value", "zone"), OUT_OF_RANGE)
async def test_a_due_outside_the_calendar_is_invalid_argument_and_changes_nothing(app, mint, value, zone):
    async with user(app, mint) as alice:
        await alice.fails("create_task", "invalid_argument", title="Far", due=value, repeat="daily", timezone=zone)
        task = await alice.add("Near", due="2026-05-11")
        before = await alice.fields(task["id"])
        await alice.fails("update_task", "invalid_argument", task_id=task["id"], due=value, timezone=zone)
        await alice.fails(
            "update_task", "invalid_argument", task_id=task["id"], due=value, repeat="yearly", timezone=zone
        )
        assert await alice.fields(task["id"]) == before
        assert await alice.total() == 1


@pytest.mark.parametrize(("value", "zone"), OUT_OF_RANGE)
async def test_a_due_bound_outside_the_calendar_is_invalid_argument(app, mint, value, zone):
    async with user(app, mint) as alice:
        for bound in ("due_before", "due_after"):
            said = await alice.fails("list_tasks", "invalid_argument", {bound: value, "timezone": zone})
            assert bound in said


@pytest.mark.parametrize("zone", ["Pacific/Kiritimati", "Pacific/Pago_Pago", "UTC"])
async def test_the_calendar_s_first_and_last_day_as_bounds_answer_without_internal(app, mint, zone):
    async with user(app, mint) as alice:
        for bound in ("due_before", "due_after"):
            for day in ("0001-01-01", "9999-12-31"):
                said = text(await alice.call("list_tasks", {bound: day, "timezone": zone}))
                assert not said.startswith("internal"), said


@pytest.mark.parametrize(
    "rule",
    ["FREQ=DAILY;UNTIL=00001231", "FREQ=DAILY;UNTIL=100000101", "FREQ=DAILY;UNTIL=00010101T000000Z"],
)
async def test_an_until_outside_the_calendar_is_invalid_argument(app, mint, rule):
    async with user(app, mint) as alice:
        said = await alice.fails(
            "create_task",
            "invalid_argument",
            title="Far",
            due="2026-05-11T09:00:00-11:00",
            repeat=rule,
            timezone="Pacific/Pago_Pago",
        )
        assert "UNTIL" in said or "10 years" in said
        assert await alice.total() == 0


# --- `now` in every list_tasks answer -------------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "clock_at"),
    [
        ("Asia/Kolkata", NOW),
        ("America/New_York", dt.datetime(2026, 1, 15, 3, 0, tzinfo=dt.UTC)),  # EST, and yesterday there
        ("America/New_York", dt.datetime(2026, 7, 15, 3, 0, tzinfo=dt.UTC)),  # EDT
        ("Pacific/Kiritimati", NOW),
        ("UTC", NOW),
    ],
)
async def test_every_list_tasks_answer_carries_now_in_the_requested_timezone(app, mint, zone, clock_at):
    async with user(app, mint, Clock(clock_at)) as alice:
        await alice.add("Something", due="2026-05-11")
        queries = [{}, {"status": "completed"}, {"status": "deleted"}, {"ready": True}, {"overdue": True, "limit": 1}]
        for query in queries:
            now = (await alice.page(**query, timezone=zone))["now"]
            parsed = dt.datetime.fromisoformat(now)
            assert parsed == clock_at, (query, now)
            assert parsed.utcoffset() == clock_at.astimezone(ZoneInfo(zone)).utcoffset(), (query, now)
            assert parsed.date() == clock_at.astimezone(ZoneInfo(zone)).date()


async def test_now_without_a_timezone_is_utc(app, mint):
    async with user(app, mint) as alice:
        now = dt.datetime.fromisoformat((await alice.page())["now"])
        assert now == NOW and now.utcoffset() == dt.timedelta(0)


# --- annotations -----------------------------------------------------------------------------------


async def test_complete_task_is_no_longer_marked_idempotent(app, mint):
    async with user(app, mint) as alice:
        tools = {tool.name: tool for tool in (await alice.client.list_tools()).tools}
        annotations = tools["complete_task"].annotations
        assert annotations is not None
        assert annotations.idempotent_hint is not True
        assert annotations.destructive_hint is False and annotations.read_only_hint is not True
        schema = tools["create_task"].input_schema["properties"]
        assert "repeat" in schema and "timezone" in schema
