"""`list_tasks` through a real in-memory MCP client: filters, sorts, cursors, errors.

Every test runs on SQLite and, when TASK_MCP_TEST_POSTGRES_URL is set, on PostgreSQL too (the
`app` fixture). Tasks are made through `create_task` / `create_tasks` like a model would, and the
assertions look at what a model sees: `structuredContent`, or the error text of an `isError`
result. Task ids are numbers within each user's own list, so the first task made in a test is 1.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from mcp.types import CallToolResult

from task_mcp.server import TaskMcp
from tests.helpers import Caller, connect

pytestmark = pytest.mark.anyio

KIRITIMATI = "Pacific/Kiritimati"  # UTC+14
# For tests refused before any storage is touched: one backend shows it as well as two.
SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
PAGO_PAGO = "Pacific/Pago_Pago"  # UTC-11


# --- helpers --------------------------------------------------------------------------------------


def text_of(result: CallToolResult) -> str:
    return "\n".join(getattr(block, "text", "") for block in result.content)


@pytest.fixture
def users(app: TaskMcp, mint: Callable[..., str]) -> Callable[..., Any]:
    """`async with users("alice", "bob") as (alice, bob):` — one client, a token per user."""

    @asynccontextmanager
    async def open_users(*names: str) -> AsyncIterator[tuple[Caller, ...]]:
        async with connect(app) as client:
            yield tuple(Caller(client, mint(name)) for name in names)

    return open_users


async def walk(
    user: Caller, query: dict[str, Any], between: Callable[[list[int]], Awaitable[None]] | None = None
) -> list[int]:
    """Every id of every page, in order; `between(seen)` runs after each page but the last."""
    seen: list[int] = []
    cursor: str | None = None
    for _ in range(50):
        page = await user.page(**query, **({"cursor": cursor} if cursor else {}))
        seen += [t["id"] for t in page["tasks"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return seen
        assert len(page["tasks"]) == query["limit"]
        if between is not None:
            await between(seen)
    raise AssertionError("the cursor never ran out")


def edit_cursor(cursor: str, **changes: Any) -> str:
    """A model can read a cursor (base64 JSON) and may "fix" it; the server must not choke."""
    data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    data.update(changes)
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def zone_today(zone: str) -> dt.date:
    return dt.datetime.now(ZoneInfo(zone)).date()


def instant(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).replace(microsecond=0, tzinfo=None).isoformat() + "Z"


# Twelve tasks with ties in every sort key: instants, all-day dates and no due; five priorities.
# Ids 1-6 are made in one create_tasks call (same created_at), 7-12 one call each.
MIXED = [
    {"title": "t1", "priority": "high", "due": "2030-03-10"},
    {"title": "t2", "priority": "low", "due": "2030-03-09T12:00:00Z"},
    {"title": "t3", "priority": "high"},
    {"title": "t4", "priority": "none", "due": "2030-03-10T00:00:00Z"},
    {"title": "t5", "priority": "urgent", "due": "2030-03-10"},
    {"title": "t6", "priority": "high", "due": "2030-03-11T08:00:00+02:00"},
    {"title": "t7"},
    {"title": "t8", "priority": "medium", "due": "2030-03-09T12:00:00Z"},
    {"title": "t9", "priority": "high", "due": "2030-03-12"},
    {"title": "t10", "priority": "low"},
    {"title": "t11", "priority": "high", "due": "2030-03-08T23:59:59Z"},
    {"title": "t12"},
]
MIXED_ORDER = {
    ("created", "UTC"): [12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1],
    ("updated", "UTC"): [12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1],
    # urgent, high (ids descending), medium, low, none
    ("priority", "UTC"): [5, 11, 9, 6, 3, 1, 8, 10, 2, 12, 7, 4],
    # 11 (03-08 23:59:59Z), 2 = 8 (03-09 12:00Z), 1 = 4 = 5 (03-10 00:00Z), 6, 9, then undated
    ("due", "UTC"): [11, 2, 8, 1, 4, 5, 6, 9, 3, 7, 10, 12],
    # in UTC+14 the day 2030-03-10 starts at 03-09 10:00Z, before t2/t8 and long before t4
    ("due", KIRITIMATI): [11, 1, 5, 2, 8, 4, 6, 9, 3, 7, 10, 12],
}


async def add_mixed(user: Caller) -> None:
    await user.add_many(*MIXED[:6])
    for item in MIXED[6:]:
        await user.add(**item)


# --- defaults -------------------------------------------------------------------------------------


async def test_default_list_shows_open_tasks_only_newest_first(users):
    async with users("alice") as (alice,):
        await alice.add_many("one", "two", "three")
        await alice.add("four")
        await alice.complete(2)

        page = await alice.page()

    assert [t["id"] for t in page["tasks"]] == [4, 3, 1]
    assert [t["title"] for t in page["tasks"]] == ["four", "three", "one"]
    assert {t["status"] for t in page["tasks"]} == {"open"}
    assert page["total"] == 3
    assert page["next_cursor"] is None


async def test_default_page_holds_twenty_tasks_and_total_counts_every_match(users):
    async with users("alice") as (alice,):
        await alice.add_many(*[f"task {n}" for n in range(1, 26)])

        first = await alice.page()
        second = await alice.page(cursor=first["next_cursor"])

    assert [t["id"] for t in first["tasks"]] == list(range(25, 5, -1))
    assert first["total"] == 25
    assert first["next_cursor"]
    assert [t["id"] for t in second["tasks"]] == [5, 4, 3, 2, 1]
    assert second["total"] == 25
    assert second["next_cursor"] is None


async def test_list_leaves_description_out_unless_include_description(users):
    async with users("alice") as (alice,):
        await alice.add("plain")
        await alice.add("detailed", description="the details")

        compact = await alice.page()
        full = await alice.page(include_description=True)

    assert [t["id"] for t in compact["tasks"]] == [2, 1]
    assert all("description" not in t for t in compact["tasks"])
    assert compact["tasks"][0]["title"] == "detailed"
    assert {t["id"]: t["description"] for t in full["tasks"]} == {2: "the details", 1: None}


async def test_listed_tasks_carry_every_public_field(users):
    async with users("alice") as (alice,):
        made = await alice.add("Pay rent", priority="high", due="2030-03-01", tags=["Home", "money"])

        (listed,) = (await alice.page(include_description=True))["tasks"]

    assert listed == made
    assert listed["tags"] == ["home", "money"]
    assert listed["due"] == "2030-03-01"


async def test_total_is_exact_for_the_filters_and_ignores_deleted_tasks(users):
    async with users("alice") as (alice,):
        await alice.add_many(
            *[{"title": f"work {n}", "tags": ["work"]} for n in range(7)],
            *[{"title": f"home {n}", "tags": ["home"]} for n in range(4)],
        )
        await alice.delete(1)
        await alice.complete(2)

        work = await alice.page(tags=["work"], limit=2)
        every = await alice.page(status="all", limit=1)
        nothing = await alice.page(text="no such words")

    assert work["total"] == 5  # 7 made, one deleted, one completed
    assert len(work["tasks"]) == 2
    assert every["total"] == 10
    assert nothing.pop("now")  # DESIGN §11: every page says when it was read
    assert nothing == {"workspace": "personal", "tasks": [], "next_cursor": None, "total": 0}


async def test_deleted_tasks_disappear_and_come_back_when_restored(users):
    async with users("alice") as (alice,):
        await alice.add_many("keep", "drop")
        await alice.delete(2)
        assert await alice.ids(status="all") == [1]
        await alice.ok("restore_task", {"task_id": 2})

        assert await alice.ids(status="all") == [2, 1]


# --- filters --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "expected"), [("open", [3, 1]), ("completed", [4, 2]), ("all", [4, 3, 2, 1])])
async def test_status_filter_picks_open_completed_or_all_tasks(users, status, expected):
    async with users("alice") as (alice,):
        await alice.add_many("a", "b", "c", "d")
        await alice.complete(2)
        await alice.complete(4)

        page = await alice.page(status=status)

    assert [t["id"] for t in page["tasks"]] == expected
    assert page["total"] == len(expected)


async def test_a_reopened_task_is_listed_as_open_again(users):
    async with users("alice") as (alice,):
        await alice.add_many("a", "b")
        await alice.complete(1)
        await alice.update(1, status="open")

        assert await alice.ids() == [2, 1]
        assert await alice.ids(status="completed") == []


async def test_priority_filter_keeps_tasks_having_any_of_the_given_priorities(users):
    async with users("alice") as (alice,):
        await alice.add_many(
            {"title": "n", "priority": "none"},
            {"title": "l", "priority": "low"},
            {"title": "m", "priority": "medium"},
            {"title": "h", "priority": "high"},
            {"title": "u", "priority": "urgent"},
        )

        assert await alice.ids(priority=["high", "urgent"]) == [5, 4]
        assert await alice.ids(priority=["none"]) == [1]
        assert await alice.ids(priority=["low", "medium", "low"]) == [3, 2]
        assert (await alice.page(priority=["urgent", "none"]))["total"] == 2


@SQLITE_ONLY
async def test_priority_filter_rejects_an_unknown_priority_naming_it(users):
    async with users("alice") as (alice,):
        message = await alice.list_error(priority=["critical"])

    assert message.startswith("invalid_argument:")
    assert "priority" in message


async def test_tag_filter_keeps_tasks_having_every_tag(users):
    async with users("alice") as (alice,):
        await alice.add_many(
            {"title": "both", "tags": ["work", "urgent"]},
            {"title": "work only", "tags": ["work"]},
            {"title": "urgent only", "tags": ["urgent"]},
            {"title": "all three", "tags": ["urgent", "errand", "work"]},
            {"title": "untagged"},
        )

        assert await alice.ids(tags=["work"]) == [4, 2, 1]
        assert await alice.ids(tags=["work", "urgent"]) == [4, 1]
        assert await alice.ids(tags=["work", "urgent", "errand"]) == [4]
        assert await alice.ids(tags=["work", "missing"]) == []
        assert (await alice.page(tags=["urgent", "work"]))["total"] == 2


async def test_tag_filter_input_is_trimmed_and_case_insensitive(users):
    async with users("alice") as (alice,):
        await alice.add("shopping", tags=["Home", "ERRAND"])
        await alice.add("other", tags=["work"])

        assert await alice.ids(tags=["  HOME "]) == [1]
        assert await alice.ids(tags=["errand", "Errand", "home"]) == [1]


async def test_tag_filter_matches_whole_tags_not_parts_of_them(users):
    async with users("alice") as (alice,):
        await alice.add("a", tags=["homework"])
        await alice.add("b", tags=["home"])

        assert await alice.ids(tags=["home"]) == [2]
        assert await alice.ids(tags=["hom"]) == []


async def test_tag_filter_sees_tags_as_changed_by_update_task(users):
    async with users("alice") as (alice,):
        await alice.add("a", tags=["old"])
        await alice.update(1, tags=["New"])

        assert await alice.ids(tags=["old"]) == []
        assert await alice.ids(tags=["new"]) == [1]


async def test_text_search_is_a_case_insensitive_substring_of_title_or_description(users):
    async with users("alice") as (alice,):
        await alice.add("Buy MILK")
        await alice.add("Call mom", description="ask about her milkshake recipe")
        await alice.add("Pay rent", description="before the 5th")

        assert await alice.ids(text="milk") == [2, 1]
        assert await alice.ids(text="MiLk") == [2, 1]
        assert await alice.ids(text="y mi") == [1]
        assert await alice.ids(text="RECIPE") == [2]
        assert await alice.ids(text="cheese") == []


async def test_text_search_does_not_look_at_tags(users):
    async with users("alice") as (alice,):
        await alice.add("Pay rent", tags=["milk"])
        await alice.add("Water plants", description="no milk")

        assert await alice.ids(text="milk") == [2]
        assert await alice.ids(text="pay") == [1]


async def test_text_search_treats_percent_underscore_and_escape_characters_literally(users):
    async with users("alice") as (alice,):
        await alice.add_many("50% off", "500 off", "snake_case", "snakeXcase", "and/or", "C:\\temp")

        for text, expected in [("50%", [1]), ("%", [1]), ("e_c", [3]), ("_", [3]), ("d/o", [5]), ("\\", [6])]:
            assert await alice.ids(text=text) == expected, text


async def test_text_search_folds_the_case_of_letters_beyond_ascii(users):
    async with users("alice") as (alice,):
        await alice.add_many("ÉCOLE inscription", "Überweisung", {"title": "x", "description": "ΣΟΦΊΑ"}, "ecole")

        assert await alice.ids(text="école") == [1]
        assert await alice.ids(text="ÜBER") == [2]
        assert await alice.ids(text="σοφ") == [3]
        assert await alice.ids(text="ECOLE") == [4]


async def test_text_search_combines_with_the_other_filters(users):
    async with users("alice") as (alice,):
        await alice.add_many(
            {"title": "report draft", "tags": ["work"], "priority": "high"},
            {"title": "report final", "tags": ["work"], "priority": "low"},
            {"title": "report card", "tags": ["school"], "priority": "high"},
        )
        await alice.complete(1)

        assert await alice.ids(text="report", tags=["work"]) == [2]
        assert await alice.ids(text="report", tags=["work"], status="all", priority=["high"]) == [1]


# --- due ranges -----------------------------------------------------------------------------------


async def test_due_bounds_are_inclusive_and_leave_out_undated_tasks(users):
    async with users("alice") as (alice,):
        await alice.add_many(
            {"title": "on the dot", "due": "2030-03-10T12:00:00Z"},
            {"title": "a second later", "due": "2030-03-10T12:00:01Z"},
            {"title": "undated"},
            {"title": "a second earlier", "due": "2030-03-10T11:59:59Z"},
        )

        assert await alice.ids(due_after="2030-03-10T12:00:00Z") == [2, 1]
        assert await alice.ids(due_before="2030-03-10T12:00:00Z") == [4, 1]
        assert await alice.ids(due_after="2030-03-10T12:00:00Z", due_before="2030-03-10T12:00:00Z") == [1]
        assert await alice.ids(due_after="2000-01-01T00:00:00Z") == [4, 2, 1]
        assert (await alice.page(due_before="2100-01-01"))["total"] == 3


async def test_datetime_bounds_with_offsets_compare_as_instants(users):
    async with users("alice") as (alice,):
        await alice.add("noon UTC", due="2030-03-10T12:00:00Z")
        await alice.add("noon UTC written in Tokyo time", due="2030-03-10T21:00:00+09:00")
        await alice.add("an hour later", due="2030-03-10T13:00:00Z")

        both_bounds = {"due_after": "2030-03-10T14:00:00+02:00", "due_before": "2030-03-10T07:00:00-05:00"}
        assert await alice.ids(**both_bounds) == [2, 1]
        assert await alice.ids(due_after="2030-03-10T12:30:00-00:30") == [3]
        page = await alice.page(due_before="2030-03-10T12:00:00+00:00")

    assert [t.get("due") for t in page["tasks"]] == ["2030-03-10T12:00:00Z", "2030-03-10T12:00:00Z"]


async def test_date_only_bounds_cover_the_whole_day_in_utc_by_default(users):
    async with users("alice") as (alice,):
        await alice.add_many(
            {"title": "day starts", "due": "2030-03-10T00:00:00Z"},
            {"title": "day ends", "due": "2030-03-10T23:59:59Z"},
            {"title": "next day", "due": "2030-03-11T00:00:00Z"},
            {"title": "previous day", "due": "2030-03-09T23:59:59Z"},
            {"title": "all day", "due": "2030-03-10"},
            {"title": "undated"},
        )

        assert await alice.ids(due_after="2030-03-10", due_before="2030-03-10") == [5, 2, 1]
        assert await alice.ids(due_before="2030-03-10") == [5, 4, 2, 1]
        assert await alice.ids(due_after="2030-03-10") == [5, 3, 2, 1]
        assert await alice.ids(due_after="2030-03-11") == [3]


async def test_date_only_bounds_mean_the_whole_day_in_the_given_timezone(users):
    async with users("alice") as (alice,):
        await alice.add_many(
            {"title": "late on the 10th in UTC, the 11th in Kiritimati", "due": "2030-03-10T23:30:00Z"},
            {"title": "still the 10th in Kiritimati", "due": "2030-03-10T09:00:00Z"},
            {"title": "all day on the 10th", "due": "2030-03-10"},
            {"title": "undated"},
            {"title": "the 11th everywhere east of UTC", "due": "2030-03-11T00:00:00Z"},
        )
        the_10th = {"due_after": "2030-03-10", "due_before": "2030-03-10"}

        assert await alice.ids(**the_10th) == [3, 2, 1]
        assert await alice.ids(**the_10th, timezone=KIRITIMATI) == [3, 2]
        assert await alice.ids(due_after="2030-03-11", timezone=KIRITIMATI) == [5, 1]
        # In UTC-11 the 10th runs from 03-10 11:00Z to 03-11 11:00Z.
        assert await alice.ids(**the_10th, timezone=PAGO_PAGO) == [5, 3, 1]


OVERLAP_CASES = [
    # 2030-03-10 in UTC is [03-10T00:00Z, 03-11T00:00Z)
    ("UTC", "due_after", "2030-03-10T23:59:59Z", True),
    ("UTC", "due_after", "2030-03-11T00:00:00Z", False),
    ("UTC", "due_before", "2030-03-10T00:00:00Z", True),
    ("UTC", "due_before", "2030-03-09T23:59:59Z", False),
    # 2030-03-10 in Kiritimati (UTC+14) is [03-09T10:00Z, 03-10T10:00Z)
    (KIRITIMATI, "due_after", "2030-03-10T09:59:59Z", True),
    (KIRITIMATI, "due_after", "2030-03-10T10:00:00Z", False),
    (KIRITIMATI, "due_before", "2030-03-09T10:00:00Z", True),
    (KIRITIMATI, "due_before", "2030-03-09T09:59:59Z", False),
    (KIRITIMATI, "due_after", "2030-03-10T23:59:59+14:00", True),
]


async def test_a_date_only_due_matches_when_its_day_overlaps_the_range(users):
    async with users("alice") as (alice,):
        await alice.add("all day", due="2030-03-10")
        await alice.add("undated")

        for timezone, bound, value, kept in OVERLAP_CASES:
            expected = [1] if kept else []
            assert await alice.ids(**{bound: value}, timezone=timezone) == expected, (timezone, bound, value)


@SQLITE_ONLY
@pytest.mark.parametrize("bound", ["due_before", "due_after"])
async def test_a_bad_due_bound_is_invalid_argument_naming_it(users, bound):
    async with users("alice") as (alice,):
        for value, words in [
            ("2030-03-10T12:00:00", "offset"),
            ("next tuesday", "ISO 8601"),
            ("2030-02-30", "calendar date"),
        ]:
            message = await alice.list_error(**{bound: value})

            assert message.startswith("invalid_argument:"), value
            assert bound in message, value
            assert words in message, value


# --- overdue --------------------------------------------------------------------------------------


async def test_overdue_keeps_open_tasks_whose_due_has_passed(users):
    now = dt.datetime.now(dt.UTC)
    today = now.date()
    async with users("alice") as (alice,):
        await alice.add_many(
            {"title": "an hour ago", "due": instant(now - dt.timedelta(hours=1))},
            {"title": "in an hour", "due": instant(now + dt.timedelta(hours=1))},
            {"title": "done, an hour ago", "due": instant(now - dt.timedelta(hours=1))},
            {"title": "undated"},
            {"title": "yesterday", "due": (today - dt.timedelta(days=1)).isoformat()},
            {"title": "today", "due": today.isoformat()},
            {"title": "last year", "due": (today - dt.timedelta(days=365)).isoformat()},
        )
        await alice.complete(3)

        overdue = await alice.page(overdue=True)
        assert [t["id"] for t in overdue["tasks"]] == [7, 5, 1]
        assert overdue["total"] == 3
        assert await alice.ids(overdue=True, status="all") == [7, 5, 1]
        assert await alice.ids(overdue=True, status="completed") == []
        assert await alice.ids(overdue=True, sort="due") == [7, 5, 1]


async def test_overdue_false_or_absent_means_no_filter(users):
    now = dt.datetime.now(dt.UTC)
    async with users("alice") as (alice,):
        await alice.add("past", due=instant(now - dt.timedelta(days=2)))
        await alice.add("future", due=instant(now + dt.timedelta(days=2)))
        await alice.add("undated")

        assert await alice.ids(overdue=False) == [3, 2, 1]
        assert await alice.ids() == [3, 2, 1]


async def test_a_date_only_due_is_overdue_once_its_day_has_ended_in_the_timezone(users):
    # Pago Pago (UTC-11) is always one or two calendar days behind Kiritimati (UTC+14): the day
    # that is today in Pago Pago has already ended in Kiritimati.
    today_pago = zone_today(PAGO_PAGO)
    today_kiritimati = zone_today(KIRITIMATI)
    assert today_pago < today_kiritimati
    async with users("alice") as (alice,):
        await alice.add_many(
            {"title": "today in Pago Pago", "due": today_pago.isoformat()},
            {"title": "yesterday in Pago Pago", "due": (today_pago - dt.timedelta(days=1)).isoformat()},
            {"title": "today in Kiritimati", "due": today_kiritimati.isoformat()},
            {"title": "a minute ago", "due": instant(dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1))},
        )

        assert await alice.ids(overdue=True, timezone=KIRITIMATI) == [4, 2, 1]
        assert await alice.ids(overdue=True, timezone=PAGO_PAGO) == [4, 2]


async def test_an_overdue_task_stops_being_overdue_when_completed_or_rescheduled(users):
    now = dt.datetime.now(dt.UTC)
    async with users("alice") as (alice,):
        await alice.add_many(
            {"title": "late a", "due": instant(now - dt.timedelta(hours=3))},
            {"title": "late b", "due": (now.date() - dt.timedelta(days=3)).isoformat()},
            {"title": "late c", "due": instant(now - dt.timedelta(minutes=5))},
        )
        assert await alice.ids(overdue=True) == [3, 2, 1]
        await alice.complete(1)
        await alice.update(2, due=(now.date() + dt.timedelta(days=3)).isoformat())
        await alice.update(3, clear=["due"])

        assert await alice.ids(overdue=True) == []


# --- parent_id ------------------------------------------------------------------------------------


async def test_parent_filter_keeps_direct_children_only(users):
    async with users("alice") as (alice,):
        await alice.add("project")
        await alice.add_many(
            {"title": "step a", "parent_id": 1},
            {"title": "step b", "parent_id": 1},
            {"title": "unrelated"},
        )
        await alice.add("step a.1", parent_id=2)
        await alice.add("step c", parent_id=1)
        await alice.complete(6)

        assert await alice.ids(parent_id=1) == [3, 2]
        assert await alice.ids(parent_id=1, status="all") == [6, 3, 2]
        assert await alice.ids(parent_id=2) == [5]
        page = await alice.page(parent_id=4)

    assert page.pop("now")
    assert page == {"workspace": "personal", "tasks": [], "next_cursor": None, "total": 0}


async def test_parent_filter_follows_moves_and_deletions_of_children(users):
    async with users("alice") as (alice,):
        await alice.add("parent")
        await alice.add_many({"title": "a", "parent_id": 1}, {"title": "b", "parent_id": 1}, "c")
        await alice.update(4, parent_id=1)
        await alice.update(2, clear=["parent_id"])
        await alice.delete(3)

        assert await alice.ids(parent_id=1) == [4]


async def test_parent_filter_naming_a_deleted_task_is_not_found(users):
    async with users("alice") as (alice,):
        await alice.add("parent")
        await alice.add("child", parent_id=1)
        await alice.delete(1)

        message = await alice.list_error(parent_id=1)

    assert message.startswith("not_found:")
    assert "1" in message


async def test_parent_filter_naming_a_task_that_does_not_exist_is_not_found(users):
    async with users("alice") as (alice,):
        await alice.add("only task")

        message = await alice.list_error(parent_id=2)

    assert message.startswith("not_found:")


async def test_parent_filter_naming_another_users_task_is_not_found_and_leaks_nothing(users):
    async with users("alice", "bob") as (alice, bob):
        await bob.add_many("bob secret parent", "bob secret 2", "bob secret 3")
        await bob.add("bob secret child", parent_id=3)
        await alice.add("alice's only task")

        message = await alice.list_error(parent_id=3)

    assert message.startswith("not_found:")
    assert "secret" not in message
    assert "bob" not in message


@SQLITE_ONLY
async def test_parent_filter_out_of_id_range_is_invalid_argument(users):
    async with users("alice") as (alice,):
        for value in (0, -1, 2**31):
            message = await alice.list_error(parent_id=value)

            assert message.startswith("invalid_argument:"), value
            assert "parent_id" in message, value


# --- sorts ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("sort", "timezone"), sorted(MIXED_ORDER))
async def test_every_sort_orders_tasks_as_documented(users, sort, timezone):
    async with users("alice") as (alice,):
        await add_mixed(alice)

        page = await alice.page(sort=sort, timezone=timezone, limit=100)

    assert [t["id"] for t in page["tasks"]] == MIXED_ORDER[sort, timezone]
    assert page["total"] == 12


async def test_created_sort_lists_newest_first_and_is_the_default(users):
    async with users("alice") as (alice,):
        await alice.add_many("a", "b")  # one call: same created_at, ties by id descending
        await alice.add("c")
        await alice.update(1, title="a, changed")

        assert await alice.ids(sort="created") == [3, 2, 1]
        assert await alice.ids() == [3, 2, 1]


async def test_updated_sort_moves_a_changed_task_to_the_top(users):
    async with users("alice") as (alice,):
        await alice.add("a")
        await alice.add("b")
        await alice.add("c")
        assert await alice.ids(sort="updated") == [3, 2, 1]

        await alice.update(1, title="a, changed")
        assert await alice.ids(sort="updated") == [1, 3, 2]

        await alice.complete(2)
        assert await alice.ids(sort="updated", status="all") == [2, 1, 3]


async def test_updated_sort_does_not_move_a_task_when_an_update_changes_nothing(users):
    async with users("alice") as (alice,):
        await alice.add("a", priority="low")
        await alice.add("b")
        await alice.update(1, priority="low", tags=[])
        assert await alice.ids(sort="updated") == [2, 1]

        await alice.complete(1)
        await alice.complete(1)
        await alice.update(2, title="b")
        assert await alice.ids(sort="updated", status="all") == [1, 2]


async def test_priority_sort_lists_highest_first_with_ties_by_id_descending(users):
    async with users("alice") as (alice,):
        await alice.add_many(
            {"title": "a", "priority": "low"},
            {"title": "b", "priority": "urgent"},
            {"title": "c"},
            {"title": "d", "priority": "low"},
            {"title": "e", "priority": "medium"},
            {"title": "f", "priority": "urgent"},
            {"title": "g", "priority": "high"},
        )

        page = await alice.page(sort="priority")

    assert [t["id"] for t in page["tasks"]] == [6, 2, 7, 5, 4, 1, 3]
    assert [t["priority"] for t in page["tasks"]] == ["urgent", "urgent", "high", "medium", "low", "low", "none"]


async def test_due_sort_lists_soonest_first_undated_last_and_ties_by_id_ascending(users):
    async with users("alice") as (alice,):
        await alice.add_many(
            {"title": "undated a"},
            {"title": "later", "due": "2030-05-01T09:00:00Z"},
            {"title": "sooner", "due": "2030-04-01T09:00:00+05:00"},
            {"title": "undated b"},
            {"title": "later, tie", "due": "2030-05-01T11:00:00+02:00"},
            {"title": "all day, before both", "due": "2030-03-31"},
        )

        page = await alice.page(sort="due")

    assert [t["id"] for t in page["tasks"]] == [6, 3, 2, 5, 1, 4]
    assert [t.get("due") for t in page["tasks"]][:4] == [
        "2030-03-31",
        "2030-04-01T04:00:00Z",
        "2030-05-01T09:00:00Z",
        "2030-05-01T09:00:00Z",
    ]


@pytest.mark.parametrize(
    ("timezone", "expected"),
    [
        ("UTC", [1, 2, 3]),  # 03-09 12:00Z, then the 10th at 00:00Z, then 03-10 06:00Z
        (KIRITIMATI, [2, 1, 3]),  # the 10th starts 03-09 10:00Z
        (PAGO_PAGO, [1, 3, 2]),  # the 10th starts 03-10 11:00Z
    ],
)
async def test_due_sort_counts_a_date_only_due_as_the_start_of_its_day_in_the_timezone(users, timezone, expected):
    async with users("alice") as (alice,):
        await alice.add_many(
            {"title": "instant on the 9th", "due": "2030-03-09T12:00:00Z"},
            {"title": "all day on the 10th", "due": "2030-03-10"},
            {"title": "instant on the 10th", "due": "2030-03-10T06:00:00Z"},
        )

        assert await alice.ids(sort="due", timezone=timezone) == expected


async def test_due_sort_breaks_a_tie_between_a_date_and_the_same_instant_by_id(users):
    async with users("alice") as (alice,):
        await alice.add_many(
            {"title": "midnight instant", "due": "2030-03-10T00:00:00Z"},
            {"title": "all day", "due": "2030-03-10"},
            {"title": "midnight again", "due": "2030-03-10T01:00:00+01:00"},
        )

        assert await alice.ids(sort="due") == [1, 2, 3]
        assert await walk(alice, {"sort": "due", "limit": 1}) == [1, 2, 3]


# --- cursors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("sort", "timezone"), sorted(MIXED_ORDER))
async def test_walking_every_page_shows_each_task_once_in_order(users, sort, timezone):
    async with users("alice") as (alice,):
        await add_mixed(alice)

        for limit in (1, 3, 5, 12):
            ids = await walk(alice, {"sort": sort, "timezone": timezone, "limit": limit})
            assert ids == MIXED_ORDER[sort, timezone], limit


@pytest.mark.parametrize(("sort", "timezone"), sorted(MIXED_ORDER))
async def test_walking_pages_while_tasks_are_added_and_changed_skips_and_repeats_no_existing_task(
    users, sort, timezone
):
    async with users("alice") as (alice,):
        await add_mixed(alice)
        expected = MIXED_ORDER[sort, timezone]
        new_items = iter(
            [
                {"title": "new urgent", "priority": "urgent", "due": "2030-03-10"},
                {"title": "new high", "priority": "high", "due": "2030-03-09T12:00:00Z"},
                {"title": "new none"},
                {"title": "new low", "priority": "low", "due": "2030-03-11T06:00:00Z"},
                {"title": "new medium", "priority": "medium", "due": "2030-03-08T00:00:00Z"},
            ]
        )

        async def meanwhile(seen: list[int]) -> None:
            await alice.add(**next(new_items))
            # A change that keeps the task's place in this order: to one already shown, and
            # (unless the order is by update time, where any change moves a task to the top)
            # to the very next one the walk will show.
            await alice.update(seen[-1], description=f"seen at {len(seen)}")
            if sort != "updated":
                upcoming = [i for i in expected if i not in seen]
                await alice.update(upcoming[0], title=f"changed at {len(seen)}")

        ids = await walk(alice, {"sort": sort, "timezone": timezone, "limit": 3}, meanwhile)

    assert len(ids) == len(set(ids)), ids
    assert [i for i in ids if i <= 12] == expected
    assert set(ids) - set(expected) <= set(range(13, 18))


async def test_walking_pages_with_filters_keeps_the_filters_on_every_page(users):
    async with users("alice") as (alice,):
        await alice.add_many(
            *[{"title": f"work {n}", "tags": ["work"], "priority": "high" if n % 2 else "low"} for n in range(9)],
            *[{"title": f"home {n}", "tags": ["home"], "priority": "high"} for n in range(5)],
        )
        query = {"tags": ["work"], "priority": ["high"], "sort": "priority", "limit": 2}

        ids = await walk(alice, query)

    assert ids == [8, 6, 4, 2]


async def test_the_last_page_has_no_next_cursor(users):
    async with users("alice") as (alice,):
        await alice.add_many("a", "b", "c", "d")

        first = await alice.page(limit=2)
        last = await alice.page(limit=2, cursor=first["next_cursor"])
        exact = await alice.page(limit=4)

    assert [t["id"] for t in last["tasks"]] == [2, 1]
    assert last["next_cursor"] is None
    assert exact["next_cursor"] is None


async def test_a_cursor_still_works_after_the_task_it_points_at_was_deleted(users):
    async with users("alice") as (alice,):
        await alice.add_many("a", "b", "c", "d", "e")

        first = await alice.page(limit=2)
        await alice.delete(4)
        second = await alice.page(limit=2, cursor=first["next_cursor"])

    assert [t["id"] for t in first["tasks"]] == [5, 4]
    assert [t["id"] for t in second["tasks"]] == [3, 2]
    assert second["total"] == 4


async def test_a_cursor_reused_with_other_filters_is_invalid_argument(users):
    async with users("alice") as (alice,):
        await alice.add_many("a", "b", "c", "d")
        cursor = (await alice.page(limit=2))["next_cursor"]

        for change in [
            {"status": "all"},
            {"sort": "priority"},
            {"tags": ["work"]},
            {"text": "a"},
            {"priority": ["none"]},
            {"timezone": "Europe/Paris"},
            {"due_before": "2100-01-01"},
            {"overdue": True},
            {"parent_id": 1},
        ]:
            message = await alice.list_error(limit=2, cursor=cursor, **change)

            assert message.startswith("invalid_argument:"), change
            assert "cursor" in message, change


async def test_a_garbage_cursor_is_invalid_argument(users):
    async with users("alice") as (alice,):
        await alice.add_many("a", "b", "c")

        garbage = ["garbage", "not a cursor!", "e30", "eyJmIjoiMTIzIn0", "bnVsbA", "x" * 500, "ünïcödé", "Zm9v\x00"]
        for cursor in garbage:
            message = await alice.list_error(cursor=cursor)

            assert message.startswith("invalid_argument:"), cursor
            assert "cursor" in message, cursor


@pytest.mark.parametrize("sort", ["created", "updated", "priority", "due"])
async def test_an_edited_cursor_is_invalid_argument_not_an_internal_error(users, sort):
    async with users("alice") as (alice,):
        await alice.add_many("a", {"title": "b", "due": "2030-01-01", "priority": "low"}, "c")
        cursor = (await alice.page(limit=1, sort=sort))["next_cursor"]

        for edit in [
            {"k": [1]},
            {"k": {"a": 1}},
            {"k": 5},
            {"k": "not a time"},
            {"k": "2030-01-01T00:00:00"},
            {"k": 2.5},
            {"n": 2**70},
            {"n": 0},
            {"n": True},
            {"n": "3"},
        ]:
            message = await alice.list_error(limit=1, sort=sort, cursor=edit_cursor(cursor, **edit))

            assert message.startswith("invalid_argument:"), edit
            assert "cursor" in message, edit


async def test_a_truncated_cursor_is_invalid_argument(users):
    async with users("alice") as (alice,):
        await alice.add_many("a", "b", "c")
        cursor = (await alice.page(limit=1))["next_cursor"]

        for cut in (1, 2, 3, 5, 12):
            message = await alice.list_error(limit=1, cursor=cursor[:-cut])

            assert message.startswith("invalid_argument:"), cut
            assert "cursor" in message, cut


@SQLITE_ONLY
async def test_an_overlong_cursor_is_invalid_argument(users):
    async with users("alice") as (alice,):
        message = await alice.list_error(cursor="x" * 501)

    assert message.startswith("invalid_argument:")
    assert "cursor" in message


@SQLITE_ONLY
async def test_a_limit_outside_1_to_100_is_invalid_argument_naming_limit(users):
    async with users("alice") as (alice,):
        for limit in (0, -1, 101, 1000):
            message = await alice.list_error(limit=limit)

            assert message.startswith("invalid_argument:"), limit
            assert "limit" in message, limit


async def test_limits_of_1_and_100_are_accepted(users):
    async with users("alice") as (alice,):
        await alice.add_many(*[f"t{n}" for n in range(100)])
        await alice.add("t100")

        one = await alice.page(limit=1)
        hundred = await alice.page(limit=100)

    assert [t["id"] for t in one["tasks"]] == [101]
    assert len(hundred["tasks"]) == 100
    assert hundred["next_cursor"]
    assert hundred["total"] == 101


# --- users ----------------------------------------------------------------------------------------


async def test_a_users_list_never_shows_another_users_tasks(users):
    async with users("alice", "bob") as (alice, bob):
        await alice.add_many({"title": "alice groceries", "tags": ["home"]}, "alice taxes")
        await bob.add_many(
            {"title": "bob secret plan", "tags": ["home"], "priority": "urgent"},
            {"title": "bob secret 2", "due": "2000-01-01"},
            "bob secret 3",
        )
        await bob.complete(3)

        for query in [
            {},
            {"status": "all"},
            {"tags": ["home"]},
            {"priority": ["urgent", "none"]},
            {"overdue": True},
            {"sort": "due", "status": "all"},
            {"text": "secret"},
        ]:
            page = await alice.page(**query, include_description=True)
            assert all(t["title"].startswith("alice") for t in page["tasks"]), query
            assert page["total"] == len(page["tasks"]), query

        mine = await alice.page(status="all")
        theirs = await bob.page(status="all")

    assert [t["id"] for t in mine["tasks"]] == [2, 1]
    assert [t["title"] for t in theirs["tasks"]] == ["bob secret 3", "bob secret 2", "bob secret plan"]
    assert theirs["total"] == 3


async def test_a_cursor_carries_no_other_users_tasks(users):
    async with users("alice", "bob") as (alice, bob):
        await alice.add_many("a1", "a2", "a3")
        await bob.add_many("b1", "b2", "b3", "b4")
        bobs_cursor = (await bob.page(limit=1))["next_cursor"]

        page = await alice.page(limit=1, cursor=bobs_cursor)

    # Bob's position only says where to resume; the page holds Alice's next task, never Bob's.
    assert [t["title"] for t in page["tasks"]] == ["a3"]


# --- bad arguments --------------------------------------------------------------------------------


@SQLITE_ONLY
async def test_an_unknown_timezone_is_invalid_argument(users):
    async with users("alice") as (alice,):
        for timezone in ["Mars/Olympus_Mons", "", "../../etc/passwd", "utc+2", "x" * 65]:
            message = await alice.list_error(timezone=timezone)

            assert message.startswith("invalid_argument:"), timezone
            assert "timezone" in message, timezone


@SQLITE_ONLY
async def test_an_unknown_argument_is_invalid_argument_naming_it(users):
    async with users("alice") as (alice,):
        message = await alice.list_error(stauts="open")

    assert message.startswith("invalid_argument:")
    assert "stauts" in message


@SQLITE_ONLY
async def test_a_malformed_argument_is_invalid_argument_naming_it(users):
    async with users("alice") as (alice,):
        for argument, value in [
            ("status", "done"),
            ("sort", "title"),
            ("tags", ["ok", " "]),
            ("tags", [f"t{n}" for n in range(21)]),
            ("text", "x" * 201),
            ("text", "nul\x00here"),
            ("include_description", "lots"),
            ("overdue", "maybe"),
            ("priority", ["high"] * 6),
        ]:
            message = await alice.list_error(**{argument: value})

            assert message.startswith("invalid_argument:"), (argument, value)
            assert argument in message, (argument, value)


async def test_listing_without_a_token_is_unauthenticated(users):
    async with users("alice") as (alice,):
        await alice.add("a")
        result = await alice.client.call_tool("list_tasks", {})

    assert result.is_error
    assert text_of(result).startswith("unauthenticated:")
