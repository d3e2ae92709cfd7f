"""Completing repeating tasks (DESIGN §11) through the SDK's in-memory `mcp.Client`, on SQLite and
PostgreSQL, with the service's clock in the test's hands: where `due` moves (daylight-saving
changes, short months, COUNT, overdue and early completions), what every completing tool answers,
retries, undo, and a property over generated rules.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any
from zoneinfo import ZoneInfo

import anyio.from_thread
import pytest
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

from task_mcp.server import TaskMcp
from task_mcp.service import TaskService
from tests.helpers import Caller, Clock, connect, ok, text

BERLIN = ZoneInfo("Europe/Berlin")


def berlin(year: int, month: int, day: int, hour: int, minute: int = 0) -> dt.datetime:
    """A wall time in Berlin as the instant it is, in UTC."""
    return dt.datetime(year, month, day, hour, minute, tzinfo=BERLIN).astimezone(dt.UTC)


def local(due: str, zone: ZoneInfo = BERLIN) -> str:
    """A stored instant (`…Z`) as the zone's wall time, e.g. 'Mon 09:00'."""
    return dt.datetime.fromisoformat(due).astimezone(zone).strftime("%a %H:%M")


@asynccontextmanager
async def user(app: TaskMcp, mint: Callable[..., str], clock: Clock) -> AsyncIterator[Caller]:
    """Alice on an in-memory MCP session, with the service's time on `clock`."""
    app.service = TaskService(app.database, clock=clock, purge_every=None)
    async with connect(app) as client:
        yield Caller(client, mint("alice"))


async def complete(alice: Caller, task_id: int, **more: Any) -> dict[str, Any]:
    return await alice.ok("complete_task", task_id=task_id, **more)


# --- where `due` moves -----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_every_monday_at_nine_in_berlin_stays_at_nine_across_both_daylight_saving_changes(app, mint):
    clock = Clock(berlin(2026, 3, 23, 9, 30))  # the Monday before clocks go forward (29 March)
    async with user(app, mint, clock) as alice:
        task = await alice.add(
            "Weekly review", due="2026-03-23T09:00:00+01:00", repeat="every monday", timezone="Europe/Berlin"
        )
        done = await complete(alice, task["id"])
        assert done["completed_occurrence"] == {"due": "2026-03-23T08:00:00Z", "next_due": "2026-03-30T07:00:00Z"}
        assert done["task"]["due"] == "2026-03-30T07:00:00Z" and local(done["task"]["due"]) == "Mon 09:00"
        assert done["task"]["status"] == "open" and done["task"]["version"] == task["version"] + 1

        clock.now = berlin(2026, 10, 19, 8, 0)  # months later, an hour before the last Monday in summer time
        done = await complete(alice, task["id"])
        assert done["task"]["due"] == "2026-10-19T07:00:00Z" and local(done["task"]["due"]) == "Mon 09:00"

        clock.now = berlin(2026, 10, 19, 10, 0)  # clocks go back on 25 October
        done = await complete(alice, task["id"])
        assert done["task"]["due"] == "2026-10-26T08:00:00Z" and local(done["task"]["due"]) == "Mon 09:00"


@pytest.mark.anyio
async def test_monthly_on_the_31st_skips_the_months_without_one(app, mint):
    clock = Clock(dt.datetime(2026, 1, 31, 12, tzinfo=dt.UTC))
    async with user(app, mint, clock) as alice:
        task = await alice.add("Invoice", due="2026-01-31", repeat="FREQ=MONTHLY;BYMONTHDAY=31")
        dues = []
        for _ in range(4):
            due = (await complete(alice, task["id"]))["task"]["due"]
            dues.append(due)
            clock.now = dt.datetime.fromisoformat(due).replace(hour=12, tzinfo=dt.UTC)
        assert dues == ["2026-03-31", "2026-05-31", "2026-07-31", "2026-08-31"]


@pytest.mark.anyio
async def test_count_3_completes_for_good_on_the_third_completion(app, mint):
    clock = Clock(dt.datetime(2026, 5, 4, 12, tzinfo=dt.UTC))
    async with user(app, mint, clock) as alice:
        task = await alice.add("Take the pills", due="2026-05-04", repeat="FREQ=DAILY;COUNT=3")
        first = await complete(alice, task["id"])
        assert first["completed_occurrence"] == {"due": "2026-05-04", "next_due": "2026-05-05"}
        clock.advance(days=1)
        second = await complete(alice, task["id"])
        assert second["completed_occurrence"] == {"due": "2026-05-05", "next_due": "2026-05-06"}
        assert second["task"]["status"] == "open"
        clock.advance(days=1)
        third = await complete(alice, task["id"])
        assert third["completed_occurrence"] == {"due": "2026-05-06", "next_due": None}
        assert third["task"]["status"] == "completed" and third["task"]["completed_at"]
        again = await complete(alice, task["id"])  # a repeat of a completed task changes nothing
        assert again["task"]["version"] == third["task"]["version"] and again["change_id"] is None


@pytest.mark.anyio
async def test_a_date_only_daily_task_five_days_overdue_becomes_due_today(app, mint):
    clock = Clock(dt.datetime(2026, 5, 6, 23, 30, tzinfo=dt.UTC))
    async with user(app, mint, clock) as alice:
        task = await alice.add("Water the plants", due="2026-05-01", repeat="daily")
        assert await alice.ids(overdue=True) == [task["id"]]
        done = await complete(alice, task["id"])
        assert done["completed_occurrence"] == {"due": "2026-05-01", "next_due": "2026-05-06"}
        assert await alice.ids(overdue=True) == [], "filters see the new due"
        assert await alice.ids(due_after="2026-05-06", due_before="2026-05-06") == [task["id"]]


@pytest.mark.anyio
async def test_missed_occurrences_count_towards_count(app, mint):
    clock = Clock(dt.datetime(2026, 5, 6, 12, tzinfo=dt.UTC))
    async with user(app, mint, clock) as alice:
        task = await alice.add("Course", due="2026-05-01", repeat="FREQ=DAILY;COUNT=3")  # 1, 2 and 3 May
        done = await complete(alice, task["id"])
        assert done["completed_occurrence"]["next_due"] is None and done["task"]["status"] == "completed"


@pytest.mark.anyio
async def test_a_daily_nine_o_clock_task_completed_at_ten_becomes_due_tomorrow(app, mint):
    clock = Clock(berlin(2026, 5, 6, 10, 0))
    async with user(app, mint, clock) as alice:
        task = await alice.add("Stand-up", due="2026-05-06T09:00:00+02:00", repeat="daily", timezone="Europe/Berlin")
        done = await complete(alice, task["id"])
        assert done["task"]["due"] == "2026-05-07T07:00:00Z"


@pytest.mark.anyio
async def test_a_task_completed_a_day_early_moves_to_its_next_occurrence(app, mint):
    clock = Clock(berlin(2026, 5, 6, 9, 0))
    async with user(app, mint, clock) as alice:
        timed = await alice.add("Stand-up", due="2026-05-07T09:00:00+02:00", repeat="daily", timezone="Europe/Berlin")
        dated = await alice.add("Journal", due="2026-05-07", repeat="daily")
        assert (await complete(alice, timed["id"]))["task"]["due"] == "2026-05-08T07:00:00Z"
        assert (await complete(alice, dated["id"]))["task"]["due"] == "2026-05-08"


# --- what completing answers ------------------------------------------------------------------------


@pytest.mark.anyio
async def test_every_completing_tool_answers_the_completed_occurrence_and_says_so(app, mint):
    clock = Clock(dt.datetime(2026, 5, 6, 12, tzinfo=dt.UTC))
    async with user(app, mint, clock) as alice:
        ids = [(await alice.add(f"Chore {n}", due="2026-05-06", repeat="daily"))["id"] for n in range(4)]
        expected = {"due": "2026-05-06", "next_due": "2026-05-07"}

        result = await alice.call("complete_task", task_id=ids[0])
        assert ok(result)["completed_occurrence"] == expected and "2026-05-07" in text(result)
        result = await alice.call("update_task", task_id=ids[1], status="completed")
        assert ok(result)["completed_occurrence"] == expected and "2026-05-07" in text(result)
        result = await alice.call("update_tasks", updates=[{"task_id": ids[2], "status": "completed"}])
        [item] = ok(result)["tasks"]
        assert item["completed_occurrence"] == expected and item["status"] == "open" and item["due"] == "2026-05-07"
        assert "2026-05-07" in text(result)
        claim = (await alice.ok("claim_task", task_id=ids[3]))["claim"]
        result = await alice.call("release_task", task_id=ids[3], claim_id=claim["claim_id"], outcome="completed")
        released = ok(result)
        assert released["completed_occurrence"] == expected and "2026-05-07" in text(result)
        assert released["task"]["status"] == "open" and released["task"]["claim"] is None

        for task_id in ids:
            task = await alice.task(task_id)
            assert (task["status"], task["due"], task["repeat"]) == ("open", "2026-05-07", "FREQ=DAILY")


@pytest.mark.anyio
async def test_a_retry_with_the_version_it_read_is_a_conflict_not_a_second_occurrence(app, mint):
    clock = Clock(dt.datetime(2026, 5, 6, 12, tzinfo=dt.UTC))
    async with user(app, mint, clock) as alice:
        task = await alice.add("Water the plants", due="2026-05-06", repeat="daily")
        done = await complete(alice, task["id"], expected_version=task["version"])
        said = await alice.fails("complete_task", "conflict", task_id=task["id"], expected_version=task["version"])
        assert str(done["task"]["version"]) in said
        await alice.fails(
            "update_task", "conflict", task_id=task["id"], status="completed", expected_version=task["version"]
        )
        assert (await alice.task(task["id"]))["due"] == "2026-05-07"
        changes = (await alice.ok("list_changes", task_id=task["id"]))["changes"]
        assert [c["tool"] for c in changes] == ["complete_task", "create_task"]


@pytest.mark.anyio
async def test_changing_due_keeps_repeat_and_clearing_repeat_stops_it(app, mint):
    clock = Clock(dt.datetime(2026, 5, 6, 12, tzinfo=dt.UTC))
    async with user(app, mint, clock) as alice:
        task = await alice.add("Gym", due="2026-05-06", repeat="every wednesday")
        moved = await alice.update(task["id"], due="2026-05-08")  # this week on Friday instead
        assert moved["repeat"] == "FREQ=WEEKLY;BYDAY=WE"
        assert (await complete(alice, task["id"]))["task"]["due"] == "2026-05-13", "back on the series"
        stopped = await alice.update(task["id"], clear=["repeat"])
        assert stopped["repeat"] is None and stopped["due"] == "2026-05-13"
        done = await complete(alice, task["id"])
        assert done["task"]["status"] == "completed" and done["task"]["due"] == "2026-05-13"
        assert done.get("completed_occurrence") is None


@pytest.mark.anyio
async def test_undoing_a_completed_occurrence_puts_the_old_due_back(app, mint):
    clock = Clock(dt.datetime(2026, 5, 6, 12, tzinfo=dt.UTC))
    async with user(app, mint, clock) as alice:
        task = await alice.add("Water the plants", due="2026-05-04", repeat="FREQ=DAILY;COUNT=5")
        done = await complete(alice, task["id"])
        assert done["task"]["due"] == "2026-05-06"
        await alice.ok("undo_change", change_id=done["change_id"])
        back = await alice.task(task["id"])
        assert (back["status"], back["due"], back["repeat"]) == ("open", "2026-05-04", "FREQ=DAILY;COUNT=5")
        assert back["version"] == done["task"]["version"] + 1
        clock.advance(days=3)  # 9 May: the fifth and last occurrence is 8 May, so this completes for good
        final = await complete(alice, task["id"])
        assert final["task"]["status"] == "completed"
        await alice.ok("undo_change", change_id=final["change_id"])
        reopened = await alice.task(task["id"])
        assert (reopened["status"], reopened["due"], reopened["completed_at"]) == ("open", "2026-05-04", None)


@pytest.mark.anyio
async def test_completing_a_repeating_parent_leaves_its_subtasks_as_they_are(app, mint):
    clock = Clock(dt.datetime(2026, 5, 6, 12, tzinfo=dt.UTC))
    async with user(app, mint, clock) as alice:
        parent = await alice.add("Weekly cleaning", due="2026-05-06", repeat="weekly")
        child = await alice.add("Hoover", parent_id=parent["id"])
        await complete(alice, parent["id"])
        assert await alice.fields(child["id"]) == child


# --- a property over generated rules ---------------------------------------------------------------

WEEKDAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")


@st.composite
def rules(draw: st.DrawFn) -> str:
    parts = [f"FREQ={draw(st.sampled_from(['DAILY', 'WEEKLY', 'MONTHLY', 'YEARLY']))}"]
    if interval := draw(st.none() | st.integers(1, 4) | st.integers(1, 999)):
        parts.append(f"INTERVAL={interval}")
    if days := draw(st.lists(st.sampled_from(WEEKDAYS), max_size=3, unique=True)):
        parts.append("BYDAY=" + ",".join(days))
    if count := draw(st.none() | st.integers(1, 5)):
        parts.append(f"COUNT={count}")
    return ";".join(parts)


DUES = st.dates(dt.date(1990, 1, 1), dt.date(2060, 12, 31)).map(dt.date.isoformat) | st.datetimes(
    dt.datetime(1990, 1, 1), dt.datetime(2060, 12, 31)
).map(lambda moment: moment.replace(microsecond=0, second=0).isoformat() + "+00:00")
ZONES = st.sampled_from(["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kathmandu"])


def parse(due: str) -> dt.date | dt.datetime:
    return dt.datetime.fromisoformat(due) if "T" in due else dt.date.fromisoformat(due)


@pytest.fixture
def portal_alice(app: TaskMcp, mint: Callable[..., str]) -> Iterator[tuple[Any, Caller, Clock]]:
    """Alice on an MCP session that a synchronous (hypothesis) test drives through a portal."""
    clock = Clock(dt.datetime(2026, 5, 6, 12, tzinfo=dt.UTC))
    app.service = TaskService(app.database, clock=clock, purge_every=None)
    with (
        anyio.from_thread.start_blocking_portal("asyncio") as portal,
        portal.wrap_async_context_manager(connect(app)) as client,
    ):
        yield portal, Caller(client, mint("alice")), clock


def test_completing_twice_moves_due_strictly_forward_or_completes_for_good(portal_alice):
    portal, alice, clock = portal_alice

    @settings(
        max_examples=40,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture],
    )
    @given(rule=rules(), due=DUES, zone=ZONES, ahead=st.integers(-40, 4000))
    def check(rule: str, due: str, zone: str, ahead: int) -> None:
        clock.now = dt.datetime.combine(parse(due), dt.time(12), tzinfo=dt.UTC) + dt.timedelta(days=ahead)
        result = portal.call(lambda: alice.call("create_task", title="Generated", due=due, repeat=rule, timezone=zone))
        if result.is_error:
            assert text(result).startswith("invalid_argument: "), text(result)
            reject()  # e.g. a rule with no occurrence within 10 years of this due
        task = ok(result)["task"]
        dues = [parse(task["due"])]
        for _ in range(2):
            done = portal.call(lambda: alice.ok("complete_task", task_id=task["id"]))
            occurrence = done["completed_occurrence"]
            assert parse(occurrence["due"]) == dues[-1]
            if occurrence["next_due"] is None:
                assert done["task"]["status"] == "completed", (rule, due, done)
                return
            following = parse(occurrence["next_due"])
            assert following > dues[-1], (rule, due, zone, dues, following)  # type: ignore[operator]
            not_overdue_from = clock.now if isinstance(following, dt.datetime) else clock.now.date()
            assert following >= not_overdue_from, (rule, due, following, clock.now)  # type: ignore[operator]
            assert done["task"]["due"] == occurrence["next_due"] and done["task"]["status"] == "open"
            dues.append(following)

    check()
