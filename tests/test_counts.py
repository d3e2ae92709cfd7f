"""The per-workspace counts behind list_tasks' `total` stay equal to counting the rows.

Triggers keep `task_counters.open_tasks`, `completed_tasks` and `deleted_tasks` (migration 0009)
and `tag_counts` (migration 0012) in each writing transaction; a random sequence of every kind of
write, on SQLite and PostgreSQL, must leave them equal to counting the rows of `tasks` and
`task_tags`, and the totals list_tasks answers (by status, and by tag with priorities) equal to
the number of tasks it can page through.
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
from task_mcp.models import PRIORITIES, TaskCreate, TaskQuery, TaskUpdate
from task_mcp.service import TaskService
from task_mcp.service.journal import Receipt

USERS = ("alice", "bob")
STEP = st.tuples(
    st.sampled_from(
        ["create", "create_many", "complete", "reopen", "retag", "prioritize", "delete", "restore", "undo", "purge"]
    ),
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
# tag_counts, less its emptied rows, against grouping the live task_tags rows; both sorted alike.
_TAG_COUNTS = "SELECT owner_id, tag, status, priority, n FROM tag_counts WHERE n <> 0 ORDER BY 1, 2, 3, 4"
_TAG_ROWS = """
SELECT owner_id, tag, status, priority, count(*) FROM task_tags WHERE deleted_at IS NULL
GROUP BY owner_id, tag, status, priority ORDER BY 1, 2, 3, 4
"""
TAG_SETS = ([], ["work"], ["home"], ["work", "home"], ["work", "q3"])


def _tagged(title: str, n: int) -> TaskCreate:
    return TaskCreate(title=title, tags=TAG_SETS[n % len(TAG_SETS)], priority=PRIORITIES[n % len(PRIORITIES)])


class Clock:
    def __init__(self) -> None:
        self.now = dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now


def _step(service: TaskService, clock: Clock, kind: str, user: str, n: int, changes: dict[str, list[int]]) -> None:
    receipt = Receipt()
    if kind == "create":
        service.create_task(user, _tagged(f"task {n}", n), receipt=receipt)
    elif kind == "create_many":
        service.create_tasks(user, [_tagged(f"task {i}", i) for i in range(n)], receipt=receipt)
    elif kind == "retag":
        service.update_task(user, n, TaskUpdate(tags=TAG_SETS[(n + 1) % len(TAG_SETS)]), receipt=receipt)
    elif kind == "prioritize":
        service.update_task(user, n, TaskUpdate(priority=PRIORITIES[(n + 2) % len(PRIORITIES)]), receipt=receipt)
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
            assert list(conn.execute(text(_TAG_COUNTS))) == list(conn.execute(text(_TAG_ROWS)))
        for user in USERS:
            for status in ("open", "completed", "all"):
                page = service.list_tasks(user, TaskQuery(status=status, limit=1))
                seen = service.list_tasks(user, TaskQuery(status=status, limit=100))
                assert page.total == len(seen.tasks) == seen.total, (user, status)
                for tag in ("work", "home", "q3"):
                    for priority in (None, ["high", "urgent"], ["none"]):
                        query: dict[str, Any] = {"status": status, "tags": [tag], "priority": priority}
                        page = service.list_tasks(user, TaskQuery(**query, limit=1))
                        seen = service.list_tasks(user, TaskQuery(**query, limit=100))
                        assert page.total == len(seen.tasks) == seen.total, (user, status, tag, priority)
    finally:
        database.dispose()
