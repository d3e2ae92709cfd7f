"""Repeating tasks and grounded dates (DESIGN §11, §10's "a repeating task cannot block"): the
service on both databases with a clock the test moves, and the contract through a real MCP client."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator

import pytest

from task_mcp.db import Database
from task_mcp.errors import ConflictError, InvalidArgumentError
from task_mcp.models import TaskCreate, TaskQuery, TaskUpdate
from task_mcp.server import TaskMcp
from task_mcp.service import TaskService
from task_mcp.service.journal import Receipt
from tests.helpers import Caller, Clock, connect

NOON = dt.datetime(2026, 3, 2, 12, 0, tzinfo=dt.UTC)  # a Monday


@pytest.fixture
def clock() -> Clock:
    return Clock(NOON)


@pytest.fixture
def service(database_url: str, clock: Clock) -> Iterator[TaskService]:
    db = Database(database_url)
    yield TaskService(db, clock=clock, purge_every=None)
    db.dispose()


def daily(service: TaskService, due: str = "2026-03-02", **fields: object) -> int:
    return service.create_task("alice", TaskCreate.model_validate({"title": "Water plants", "due": due, **fields}))[
        0
    ].id


# --- the service ------------------------------------------------------------------------------------


def test_a_phrase_is_stored_and_shown_as_its_rrule(service: TaskService) -> None:
    task, _ = service.create_task("alice", TaskCreate(title="Standup", due="2026-03-02", repeat="Every Monday and Thu"))
    assert task.repeat == "FREQ=WEEKLY;BYDAY=MO,TH"
    assert task.repeat_timezone is None  # a date-only due repeats by date


def test_repeat_needs_a_due_and_a_timed_due_needs_a_timezone(service: TaskService) -> None:
    with pytest.raises(InvalidArgumentError, match="needs a due"):
        service.create_task("alice", TaskCreate(title="x", repeat="daily"))
    with pytest.raises(InvalidArgumentError, match="timezone"):
        service.create_task("alice", TaskCreate(title="x", due="2026-03-02T09:00:00Z", repeat="daily"))
    with pytest.raises(InvalidArgumentError, match="FREQ"):
        service.create_task("alice", TaskCreate(title="x", due="2026-03-02", repeat="FREQ=HOURLY"))
    assert service.list_tasks("alice", TaskQuery(status="all")).total == 0  # nothing was created


def test_completing_moves_the_due_and_keeps_the_task_open(service: TaskService) -> None:
    number = daily(service, repeat="daily")
    task = service.complete_task("alice", number)
    assert (task.status, task.due, task.version) == ("open", "2026-03-03", 2)
    assert task.completed_occurrence == {"due": "2026-03-02", "next_due": "2026-03-03"}


def test_an_overdue_date_moves_to_today_and_a_timed_one_keeps_its_local_time(
    service: TaskService, clock: Clock
) -> None:
    late = daily(service, due="2026-02-25", repeat="daily")
    assert service.complete_task("alice", late).due == "2026-03-02"
    timed = daily(service, due="2026-03-02T08:00:00Z", repeat="daily", timezone="Europe/Berlin")  # 09:00 local
    clock.now = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)  # 10:00 in Berlin: today's is overdue
    task = service.complete_task("alice", timed)
    assert (task.due, task.repeat_timezone) == ("2026-03-03T08:00:00Z", "Europe/Berlin")


def test_count_three_completes_for_good_on_the_third(service: TaskService) -> None:
    number = daily(service, repeat="FREQ=DAILY;COUNT=3")
    service.complete_task("alice", number)
    service.complete_task("alice", number)
    last = service.complete_task("alice", number)
    assert (last.status, last.completed_occurrence) == ("completed", {"due": "2026-03-04", "next_due": None})
    assert service.complete_task("alice", number).version == last.version  # completed: a repeat changes nothing


def test_skipped_occurrences_count_towards_count(service: TaskService, clock: Clock) -> None:
    number = daily(service, repeat="FREQ=DAILY;COUNT=3")
    clock.now += dt.timedelta(days=3)  # the 2nd and 3rd are overdue, the 4th is beyond COUNT=3
    task = service.complete_task("alice", number)
    assert (task.status, task.completed_occurrence) == ("completed", {"due": "2026-03-02", "next_due": None})


def test_a_retry_with_the_version_it_read_is_a_conflict(service: TaskService) -> None:
    number = daily(service, repeat="daily")
    service.complete_task("alice", number, expected_version=1)
    with pytest.raises(ConflictError, match="version 2"):
        service.complete_task("alice", number, expected_version=1)
    assert service.get_task("alice", number).due == "2026-03-03"


def test_changing_due_keeps_repeat_and_clearing_due_needs_clear_repeat(service: TaskService) -> None:
    number = daily(service, repeat="weekly")
    assert service.update_task("alice", number, TaskUpdate(due="2026-03-05")).repeat == "FREQ=WEEKLY"
    with pytest.raises(InvalidArgumentError, match='clear \\["due", "repeat"\\]'):
        service.update_task("alice", number, TaskUpdate(clear=["due"]))
    task = service.update_task("alice", number, TaskUpdate(clear=["due", "repeat"]))
    assert (task.due, task.repeat) == (None, None)


def test_undo_of_a_completed_occurrence_puts_the_old_due_back(service: TaskService) -> None:
    number = daily(service, repeat="daily")
    receipt = Receipt()
    service.complete_task("alice", number, receipt=receipt)
    assert receipt.change_id is not None
    summary = service.list_changes("alice", task_id=number, limit=1).changes[0]["summary"]
    assert summary == f"#{number} completed an occurrence; due 2026-03-02 → 2026-03-03"
    service.undo_change("alice", receipt.change_id)
    task = service.get_task("alice", number)
    assert (task.due, task.status, task.repeat) == ("2026-03-02", "open", "FREQ=DAILY")


def test_a_repeating_task_cannot_block(service: TaskService) -> None:
    repeating = daily(service, repeat="daily")
    with pytest.raises(InvalidArgumentError, match=f"task {repeating} repeats"):
        service.create_task("alice", TaskCreate(title="After", blocked_by=[repeating]))
    plain = daily(service)
    service.create_task("alice", TaskCreate(title="Waits", blocked_by=[plain]))
    with pytest.raises(InvalidArgumentError, match=f"task {plain} blocks task"):
        service.update_task("alice", plain, TaskUpdate(repeat="daily"))


def test_update_tasks_and_release_task_complete_occurrences_too(service: TaskService) -> None:
    first, second = daily(service, repeat="daily"), daily(service, repeat="weekly")
    done = service.update_tasks("alice", [(first, TaskUpdate(status="completed"))])
    assert done[0].completed_occurrence == {"due": "2026-03-02", "next_due": "2026-03-03"}
    service.claim_task("alice", second)
    released = service.release_task("alice", second, outcome="completed")
    assert (released.status, released.due, released.claim) == ("open", "2026-03-09", None)


# --- through an MCP client ------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_repeat_and_now_through_mcp(app: TaskMcp, mint: Callable[..., str]) -> None:
    async with connect(app) as client:
        alice = Caller(client, mint("alice"))
        task = await alice.add("Report", due="2026-12-07T09:00:00+01:00", repeat="weekdays", timezone="Europe/Paris")
        assert (task["repeat"], task["repeat_timezone"]) == ("FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR", "Europe/Paris")
        message = await alice.fails(
            "create_task", "invalid_argument", title="x", due="2026-12-07T09:00:00Z", repeat="daily"
        )
        assert "timezone" in message
        done = await alice.ok("complete_task", task_id=task["id"], expected_version=1)
        assert done["completed_occurrence"]["due"] == "2026-12-07T08:00:00Z"
        assert done["task"]["status"] == "open" and done["task"]["version"] == 2
        assert await alice.fails("complete_task", "conflict", task_id=task["id"], expected_version=1)
        page = await alice.page(timezone="Asia/Tokyo")
        assert page["now"].endswith("+09:00")
        assert page["tasks"][0]["repeat"] == "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR"
        undone = await alice.ok("undo_change", change_id=done["change_id"])
        assert undone["undoes"] == done["change_id"]
        assert (await alice.task(task["id"]))["due"] == "2026-12-07T08:00:00Z"


def test_a_series_near_the_last_storable_day_completes_for_good(service: TaskService) -> None:
    number = daily(service, due="9999-12-30", repeat="daily")
    task = service.complete_task("alice", number)
    assert (task.status, task.completed_occurrence) == ("completed", {"due": "9999-12-30", "next_due": None})


def test_undo_that_would_make_a_blocker_repeat_again_is_a_conflict(service: TaskService) -> None:
    number = daily(service, repeat="daily")
    receipt = Receipt()
    service.update_task("alice", number, TaskUpdate(clear=["repeat"]), receipt=receipt)
    service.create_task("alice", TaskCreate(title="Waits", blocked_by=[number]))
    assert receipt.change_id is not None
    with pytest.raises(ConflictError, match=f"task {number} blocks task"):
        service.undo_change("alice", receipt.change_id)
    assert service.get_task("alice", number).repeat is None
