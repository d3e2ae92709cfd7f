"""TaskService rules that a tool call alone cannot show: statement counts of subtree and cycle work,
the workspace task limit, the purge (batched, on its own thread, retention and key expiry), and
contract rules of DESIGN §4. Real databases, SQLite and PostgreSQL, through the service's API.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event, update

from task_mcp.config import load_settings
from task_mcp.db import Database
from task_mcp.errors import ConflictError, InvalidArgumentError, NotFoundError
from task_mcp.models import TASKS, TaskCreate, TaskQuery, TaskUpdate
from task_mcp.server import TaskMcp
from task_mcp.service import PURGE_BATCH, TaskService
from tests.helpers import rows

# --- helpers ----------------------------------------------------------------------------------------


class Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += dt.timedelta(**delta)


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    db = Database(database_url)
    yield db
    db.dispose()


@pytest.fixture
def service(database: Database) -> TaskService:
    return TaskService(database, purge_every=None)


@contextmanager
def statements(database: Database) -> Iterator[list[tuple[str, int]]]:
    """Every SQL statement sent while inside, with the id of the thread that sent it."""
    seen: list[tuple[str, int]] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append((statement, threading.get_ident()))

    event.listen(database.engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(database.engine, "before_cursor_execute", record)


def wide_tree(service: TaskService, user: str, children: int) -> None:
    """Task 1 with `children` subtasks (2 … children + 1)."""
    service.create_task(user, TaskCreate(title="Root"))
    for start in range(0, children, 100):
        batch = [TaskCreate(title=f"Child {n}", parent_id=1) for n in range(start, min(start + 100, children))]
        service.create_tasks(user, batch)


def chain(service: TaskService, user: str, depth: int) -> None:
    """Tasks 1 … depth, each the parent of the next."""
    service.create_task(user, TaskCreate(title="Level 1"))
    for level in range(2, depth + 1):
        service.create_task(user, TaskCreate(title=f"Level {level}", parent_id=level - 1))


def live_total(service: TaskService, user: str) -> int:
    return service.list_tasks(user, TaskQuery(status="all", limit=1)).total


# --- set-based subtree work (DESIGN §12) --------------------------------------------------------------


def test_deleting_and_restoring_a_subtree_takes_the_same_statements_for_10_or_2000_subtasks(
    service: TaskService, database: Database
) -> None:
    counts = {}
    for size in (10, 2000):
        user = f"user-{size}"
        wide_tree(service, user, size)
        with statements(database) as deleting:
            assert service.delete_task(user, 1) == size + 1
        assert live_total(service, user) == 0
        with statements(database) as restoring:
            assert service.restore_task(user, 1).id == 1
        assert live_total(service, user) == size + 1
        counts[size] = (len(deleting), len(restoring))
    assert counts[10] == counts[2000]


def test_deleting_restoring_and_cycle_checks_take_the_same_statements_for_3_or_60_levels(
    service: TaskService, database: Database
) -> None:
    counts = {}
    for depth in (3, 60):
        user = f"user-{depth}"
        chain(service, user, depth)
        with statements(database) as cycle_check, pytest.raises(InvalidArgumentError, match="cycle"):
            service.update_task(user, 1, TaskUpdate(parent_id=depth))  # the bottom cannot become the top's parent
        with statements(database) as deleting:
            assert service.delete_task(user, 1) == depth
        with statements(database) as restoring:
            service.restore_task(user, 1)
        assert live_total(service, user) == depth
        counts[depth] = (len(cycle_check), len(deleting), len(restoring))
    assert counts[3] == counts[60]


def test_a_subtree_delete_skips_what_was_deleted_before_and_restore_brings_back_only_its_own(
    service: TaskService,
) -> None:
    chain(service, "alice", 4)  # 1 > 2 > 3 > 4
    service.create_task("alice", TaskCreate(title="Sibling", parent_id=1))  # 5
    assert service.delete_task("alice", 3) == 2  # 3 and 4
    assert service.delete_task("alice", 1) == 3  # 1, 2 and 5: 3 and 4 were already gone
    service.restore_task("alice", 1)
    listed = service.list_tasks("alice", TaskQuery(status="all"))
    assert sorted(t.id for t in listed.tasks) == [1, 2, 5]
    assert service.get_task("alice", 2).version == 3  # created, deleted, restored


# --- the workspace task limit (TASK_MCP_MAX_TASKS_PER_WORKSPACE) --------------------------------------


def test_a_create_past_the_task_limit_is_invalid_and_the_trash_counts(database: Database) -> None:
    clock = Clock(dt.datetime(2026, 3, 1, tzinfo=dt.UTC))
    service = TaskService(database, max_tasks=5, retention_days=30, clock=clock, purge_every=None)
    service.create_tasks("alice", [TaskCreate(title=f"Task {n}") for n in range(4)])
    with pytest.raises(InvalidArgumentError) as raised:
        service.create_tasks("alice", [TaskCreate(title="One"), TaskCreate(title="Two")])
    message = str(raised.value)
    assert message.startswith("invalid_argument: ") and "at most 5" in message
    assert "TASK_MCP_MAX_TASKS_PER_WORKSPACE" in message and "purged" in message
    assert service.create_task("alice", TaskCreate(title="Fifth"))[0].id == 5  # the refusal used no number

    service.delete_task("alice", 5)
    with pytest.raises(InvalidArgumentError, match="at most 5"):
        service.create_task("alice", TaskCreate(title="Sixth"))  # a deleted task still counts
    assert service.create_task("bob", TaskCreate(title="Bob's first"))[0].id == 1  # per list

    clock.advance(days=31)
    assert service.purge_deleted() == 1
    assert service.create_task("alice", TaskCreate(title="Sixth"))[0].id == 6


def test_a_restore_past_a_lowered_task_limit_is_invalid(database: Database) -> None:
    TaskService(database, purge_every=None).create_tasks("alice", [TaskCreate(title=f"T{n}") for n in range(3)])
    TaskService(database, purge_every=None).delete_task("alice", 3)
    lowered = TaskService(database, max_tasks=2, purge_every=None)
    with pytest.raises(InvalidArgumentError, match="at most 2"):
        lowered.restore_task("alice", 3)
    with pytest.raises(NotFoundError):
        lowered.get_task("alice", 3)
    assert TaskService(database, max_tasks=3, purge_every=None).restore_task("alice", 3).id == 3


def test_the_task_limit_setting_reaches_the_service(database: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASK_MCP_MAX_TASKS_PER_WORKSPACE", "2")
    monkeypatch.setenv("TASK_MCP_RETENTION_DAYS", "3")
    settings = load_settings(database_url=database.url)
    service = TaskService.from_settings(database, settings)
    service.create_tasks("alice", [TaskCreate(title="A"), TaskCreate(title="B")])
    with pytest.raises(InvalidArgumentError, match="at most 2"):
        service.create_task("alice", TaskCreate(title="C"))


# --- retention, keys and the purge --------------------------------------------------------------------


def test_the_retention_setting_reaches_the_servers_service(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASK_MCP_RETENTION_DAYS", "3")
    app = TaskMcp(load_settings(database_url=database_url, better_auth_url="http://127.0.0.1:9"))
    try:
        for n in (1, 2):
            app.service.create_task("alice", TaskCreate(title=f"Task {n}"))
            app.service.delete_task("alice", n)
        app.database.wait_for_background()
        now = dt.datetime.now(dt.UTC)
        for number, days in ((1, 4), (2, 2)):
            aged = update(TASKS).where(TASKS.c.number == number).values(deleted_at=now - dt.timedelta(days=days))
            app.database.run(lambda c, aged=aged: c.execute(aged), write=True)
        assert app.service.purge_deleted() == 1  # deleted 4 days ago: past 3 days, not past the default 30
        assert rows(database_url, "SELECT number FROM tasks") == [(2,)]
    finally:
        app.database.dispose()


def test_an_idempotency_key_expires_after_a_day_and_the_purge_removes_it(
    service: TaskService, database_url: str
) -> None:
    clock = Clock(dt.datetime(2026, 3, 1, tzinfo=dt.UTC))
    service = TaskService(service._db, clock=clock, purge_every=None)
    first, created = service.create_task("alice", TaskCreate(title="Pay rent"), "rent-march")
    assert created
    clock.advance(hours=23)
    assert service.create_task("alice", TaskCreate(title="Pay rent"), "rent-march") == (first, False)
    service.create_task("alice", TaskCreate(title="Water plants"), "plants")
    assert service.purge_deleted() == 0
    assert sorted(rows(database_url, "SELECT key FROM idempotency_keys")) == [("plants",), ("rent-march",)]

    clock.advance(hours=2)  # rent-march is 25 hours old, plants 2 hours
    assert service.purge_deleted() == 0
    assert rows(database_url, "SELECT key FROM idempotency_keys") == [("plants",)]
    again, created = service.create_task("alice", TaskCreate(title="Pay rent in April"), "rent-march")
    assert created and again.id == 3  # an expired key is free again, even with other arguments


def test_an_expired_key_is_replaced_by_its_next_use_even_before_the_purge(service: TaskService) -> None:
    clock = Clock(dt.datetime(2026, 3, 1, tzinfo=dt.UTC))
    service = TaskService(service._db, clock=clock, purge_every=None)
    service.create_task("alice", TaskCreate(title="Pay rent"), "rent")
    clock.advance(hours=24, seconds=1)
    task, created = service.create_task("alice", TaskCreate(title="Other"), "rent")
    assert (task.id, created) == (2, True)
    assert service.create_task("alice", TaskCreate(title="Other"), "rent") == (task, False)


def test_the_purge_deletes_in_batches_each_in_its_own_transaction(database: Database, database_url: str) -> None:
    clock = Clock(dt.datetime(2026, 3, 1, tzinfo=dt.UTC))
    service = TaskService(database, retention_days=1, clock=clock, purge_every=None)
    size = 2 * PURGE_BATCH + 100
    wide_tree(service, "alice", size - 1)
    service.update_task("alice", 2, TaskUpdate(tags=["kept-until-purged"]))
    service.create_task("alice", TaskCreate(title="Live"))
    service.delete_task("alice", 1)
    clock.advance(days=2)
    with statements(database) as sent:
        assert service.purge_deleted() == size
    deletes = [s for s, _ in sent if s.lstrip().upper().startswith("DELETE FROM TASKS")]
    assert len(deletes) == 3  # 500 + 500 + 100
    assert rows(database_url, "SELECT number FROM tasks") == [(size + 1,)]
    assert rows(database_url, "SELECT count(*) FROM task_tags") == [(0,)]


def test_the_hourly_purge_runs_on_its_own_thread_never_in_the_callers_call(database: Database) -> None:
    clock = Clock(dt.datetime(2026, 3, 1, tzinfo=dt.UTC))
    setup = TaskService(database, retention_days=1, clock=clock, purge_every=None)
    setup.create_task("alice", TaskCreate(title="Old"))
    setup.delete_task("alice", 1)
    clock.advance(days=2)
    service = TaskService(database, retention_days=1, clock=clock)  # purges at most hourly
    with statements(database) as sent:
        service.create_task("alice", TaskCreate(title="New"))
        database.wait_for_background()
        service.create_task("alice", TaskCreate(title="Newer"))  # within the hour: no second purge
        database.wait_for_background()
    purges = [thread for s, thread in sent if s.lstrip().upper().startswith("DELETE FROM TASKS")]
    assert len(purges) == 1 and purges[0] != threading.get_ident()
    with pytest.raises(NotFoundError):
        service.restore_task("alice", 1)


# --- contract rules (DESIGN §4) -----------------------------------------------------------------------


def test_expected_version_is_checked_before_a_repeat(service: TaskService) -> None:
    service.create_task("alice", TaskCreate(title="Ship it"))
    assert service.complete_task("alice", 1).version == 2
    with pytest.raises(ConflictError, match="version 2"):
        service.complete_task("alice", 1, expected_version=1)  # a repeat, but the version is stale
    with pytest.raises(ConflictError):
        service.update_task("alice", 1, TaskUpdate(status="completed", expected_version=1))
    assert service.complete_task("alice", 1, expected_version=2).version == 2  # the repeat itself


def test_items_of_one_create_tasks_call_cannot_refer_to_each_other(service: TaskService) -> None:
    with pytest.raises(NotFoundError):
        service.create_tasks("alice", [TaskCreate(title="Parent"), TaskCreate(title="Child", parent_id=1)])
    assert live_total(service, "alice") == 0
    tasks, _ = service.create_tasks("alice", [TaskCreate(title="Parent")])
    assert tasks[0].id == 1  # the refused call used up no number


def test_deleted_tasks_are_absent_from_completed_and_all(service: TaskService) -> None:
    service.create_tasks("alice", [TaskCreate(title="Done"), TaskCreate(title="Done, then deleted")])
    service.complete_task("alice", 1)
    service.complete_task("alice", 2)
    service.delete_task("alice", 2)
    for status in ("completed", "all"):
        page = service.list_tasks("alice", TaskQuery(status=status))  # type: ignore[arg-type]
        assert ([t.id for t in page.tasks], page.total) == ([1], 1), status


def test_the_service_and_database_come_from_settings(database_url: str) -> None:
    settings = load_settings(database_url=database_url, db_pool_timeout_seconds=7, retention_days=9)
    database = Database.from_settings(settings)
    try:
        if not database_url.startswith("sqlite"):
            assert database.engine.pool.timeout() == 7  # type: ignore[attr-defined]
        service = TaskService.from_settings(database, settings)
        assert service.create_task("alice", TaskCreate(title="From settings"))[0].id == 1
        assert service._retention == dt.timedelta(days=9)
    finally:
        database.dispose()
