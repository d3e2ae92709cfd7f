"""The per-workspace counts behind list_tasks' `total` stay equal to counting the rows.

Triggers keep `task_counters.open_tasks`, `completed_tasks` and `deleted_tasks` in each writing
transaction (migration 0009); a random sequence of every kind of write, on SQLite and
PostgreSQL, must leave them equal to COUNT(*) over `tasks`, and the totals list_tasks answers
equal to the number of tasks it can page through.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from task_mcp.db import Database
from task_mcp.errors import TaskMcpError
from task_mcp.models import TaskCreate, TaskQuery, TaskUpdate
from task_mcp.service import TaskService
from task_mcp.service.journal import Receipt

USERS = ("alice", "bob")
STEP = st.tuples(
    st.sampled_from(["create", "create_many", "complete", "reopen", "delete", "restore", "undo", "purge"]),
    st.sampled_from(USERS),
    st.integers(min_value=1, max_value=8),
)

_COUNTED = """
SELECT c.owner_id, c.open_tasks, c.completed_tasks, c.deleted_tasks,
  (SELECT count(*) FROM tasks t WHERE t.owner_id = c.owner_id AND t.deleted_at IS NULL AND t.status = 'open'),
  (SELECT count(*) FROM tasks t WHERE t.owner_id = c.owner_id AND t.deleted_at IS NULL AND t.status = 'completed'),
  (SELECT count(*) FROM tasks t WHERE t.owner_id = c.owner_id AND t.deleted_at IS NOT NULL)
FROM task_counters c
"""


class Clock:
    def __init__(self) -> None:
        self.now = dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now


def _step(service: TaskService, clock: Clock, kind: str, user: str, n: int, changes: dict[str, list[int]]) -> None:
    receipt = Receipt()
    if kind == "create":
        service.create_task(user, TaskCreate(title=f"task {n}"), receipt=receipt)
    elif kind == "create_many":
        service.create_tasks(user, [TaskCreate(title=f"task {i}") for i in range(n)], receipt=receipt)
    elif kind in ("complete", "reopen"):
        status: Any = "completed" if kind == "complete" else "open"
        service.update_task(user, n, TaskUpdate(status=status), receipt=receipt)
    elif kind == "delete":
        service.delete_task(user, n, receipt=receipt)
    elif kind == "restore":
        service.restore_task(user, n, receipt=receipt)
    elif kind == "undo" and changes[user]:
        service.undo_change(user, changes[user][-n % len(changes[user])], receipt=receipt)
    elif kind == "purge":
        clock.now += dt.timedelta(days=31)  # past the retention: the trash is purged
        service.purge_deleted()
    if receipt.change_id is not None:
        changes[user].append(receipt.change_id)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(STEP, min_size=1, max_size=25))
def test_counts_equal_counting_the_rows_after_any_writes(database_url: str, steps: list[tuple[str, str, int]]) -> None:
    database = Database(database_url)
    clock = Clock()
    service = TaskService(database, clock=clock, purge_every=None)
    changes: dict[str, list[int]] = {user: [] for user in USERS}
    try:
        for kind, user, n in steps:
            with contextlib.suppress(TaskMcpError):  # a refused write (no such task…) changes nothing
                _step(service, clock, kind, user, n, changes)
        with database.engine.connect() as conn:
            for owner, *kept in conn.execute(text(_COUNTED)):
                assert kept[:3] == kept[3:], owner
        for user in USERS:
            for status in ("open", "completed", "all"):
                page = service.list_tasks(user, TaskQuery(status=status, limit=1))
                seen = service.list_tasks(user, TaskQuery(status=status, limit=100))
                assert page.total == len(seen.tasks) == seen.total, (user, status)
    finally:
        database.dispose()
