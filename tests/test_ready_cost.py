"""The ready list and claim_task cost a page's worth of work, not a pass over the workspace per
candidate (DESIGN §10). Work is counted in SQLite virtual-machine steps (its progress handler), which
is the same on every run, so the bounds hold without timing anything."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from task_mcp.db import Database, migrate
from task_mcp.models import TaskCreate, TaskQuery, TaskUpdate
from task_mcp.service import TaskService

TASKS = 2_000


class Steps:
    """Counts the SQLite VM steps (in units of 10) of every statement run on the database."""

    def __init__(self, database: Database) -> None:
        self.count = 0
        event.listen(database.engine, "before_cursor_execute", self._arm)

    def _arm(self, conn: Any, *_: Any) -> None:
        conn.connection.driver_connection.set_progress_handler(self._tick, 10)

    def _tick(self) -> int:
        self.count += 1
        return 0  # go on

    def of(self, call: Callable[[], object]) -> int:
        self.count = 0
        call()
        return self.count


@pytest.fixture
def seeded(tmp_path: Path) -> Iterator[tuple[TaskService, Steps]]:
    """1,000 low-priority tasks, then 1,000 urgent ones, each blocked by the low one 1,000 below it;
    blockers 1-10 are completed, so urgent tasks 1001-1010 are ready."""
    database = Database(f"sqlite:///{tmp_path / 'ready.db'}")
    migrate(database)
    service = TaskService(database, purge_every=None)
    for start in range(1, TASKS // 2 + 1, 100):
        service.create_tasks("alice", [TaskCreate(title=f"Low {n}", priority="low") for n in range(start, start + 100)])
    for start in range(1, TASKS // 2 + 1, 100):
        urgent = [TaskCreate(title=f"Urgent {n}", priority="urgent", blocked_by=[n]) for n in range(start, start + 100)]
        service.create_tasks("alice", urgent)
    for blocker in range(1, 11):
        service.complete_task("alice", blocker)
    try:
        yield service, Steps(database)
    finally:
        database.dispose()


def test_a_ready_page_and_a_claim_step_over_blocked_tasks_once_not_once_per_open_task(
    seeded: tuple[TaskService, Steps],
) -> None:
    service, steps = seeded
    page = service.list_tasks("alice", TaskQuery(ready=True))
    assert [t.id for t in page.tasks[:10]] == list(range(1001, 1011))  # the unblocked urgent ones first
    assert [t.id for t in page.tasks[10:]] == list(range(11, 21))  # then the low ones, by id
    assert page.total == TASKS - 10 - 990  # completed and blocked left out

    # A page that reads every task of the workspace once (a two-letter text search compares them all).
    one_pass = steps.of(lambda: service.list_tasks("alice", TaskQuery(status="all", text="zz")))
    # The 990 blocked urgent tasks come first in claim order. Stepping over each costs a few index
    # lookups (its links, its blocker), so a page or a claim costs a few such passes; comparing each
    # candidate with every open task of the workspace cost thousands of passes.
    assert steps.of(lambda: service.list_tasks("alice", TaskQuery(ready=True))) < 10 * one_pass
    claimed = service.claim_task("alice")
    assert claimed.task is not None and claimed.task.id == 1001
    assert steps.of(lambda: service.claim_task("alice")) < 10 * one_pass


def test_when_every_open_task_is_ready_a_ready_page_and_a_claim_cost_less_than_a_pass(
    seeded: tuple[TaskService, Steps],
) -> None:
    service, steps = seeded
    for blocker in range(11, TASKS // 2 + 1, 100):  # complete every remaining blocker, 100 per change
        done = TaskUpdate(status="completed")
        service.update_tasks("alice", [(n, done) for n in range(blocker, min(blocker + 100, TASKS // 2 + 1))])
    page = service.list_tasks("alice", TaskQuery(ready=True))
    assert [t.id for t in page.tasks] == list(range(1001, 1021))
    assert page.total == TASKS // 2 and page.next_cursor is not None

    one_pass = steps.of(lambda: service.list_tasks("alice", TaskQuery(status="all", text="zz")))
    # Three index ranges of 21 rows, and the total as the open count less the tasks held back,
    # found from the workspace's 1,000 links with a lookup or two each: a couple of passes. Checking
    # each ready task against every open one cost a thousand.
    assert steps.of(lambda: service.list_tasks("alice", TaskQuery(ready=True))) < 3 * one_pass
    assert steps.of(lambda: service.list_tasks("alice", TaskQuery(ready=True, cursor=page.next_cursor))) < 3 * one_pass
    assert steps.of(lambda: service.claim_task("alice")) < one_pass // 4  # no total: the first rows only
