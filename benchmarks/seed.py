"""Test data: through the service (for the stdio benchmark) or bulk SQL (for the growth benchmark).

Both produce the same kind of list for user `user-000`: numbers 1…N, 1 in 5 completed, a spread
of priorities, a due date or instant on half, tags `work`/`home`/`errands` (and `q3` on 1 in 10),
a description on 1 in 3. Other users' rows are interleaved with hers in time. The bulk seed also
journals each task's creation (one change per task).
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import time
from collections.abc import Iterator

from sqlalchemy import text

from task_mcp.db import Database, migrate
from task_mcp.models import PRIORITIES, TaskCreate
from task_mcp.service import TaskService

USER = "user-000"  # whose list every benchmark reads
TAG = "work"  # the tag filter used by the benchmarks: on 1 in 4 tasks
TITLES = (
    "Follow up with the vendor about invoice",
    "Draft the quarterly planning notes",
    "Book a table for the team dinner",
    "Review pull request for the parser",
)
FIRST_TAG = ("work", "home", "errands", None)


def user_id(index: int) -> str:
    return f"user-{index:03d}"


# --- Through the service, as a real client would have created them -------------------------------


def _items(start: int, count: int) -> Iterator[TaskCreate]:
    base = dt.date(2026, 1, 1)
    for number in range(start, start + count):
        tags = [t for t in (FIRST_TAG[number % 4], "q3" if number % 10 == 0 else None) if t]
        due = None
        if number % 4 == 1:
            due = (base + dt.timedelta(days=number % 365)).isoformat()
        elif number % 4 == 2:
            due = f"{base + dt.timedelta(days=number % 365)}T{number % 24:02d}:30:00Z"
        yield TaskCreate(
            title=f"{TITLES[number % len(TITLES)]} #{number}",
            description=f"Details for task {number}: who, what and by when." if number % 3 == 0 else None,
            priority=PRIORITIES[(number // 3) % 5],
            due=due,
            tags=tags,
        )


def seed_with_service(url: str, *, user_tasks: int, other_users: int, other_tasks: int) -> float:
    """Create the tasks with `TaskService.create_tasks`, 100 per call; returns seconds taken."""
    started = time.perf_counter()
    database = Database(url)
    migrate(database)
    service = TaskService(database)
    wanted = {USER: user_tasks} | {user_id(u): other_tasks for u in range(1, other_users + 1)}
    done = dict.fromkeys(wanted, 0)
    while any(done[u] < wanted[u] for u in wanted):  # round-robin, so users interleave in time
        for user, target in wanted.items():
            count = min(100, target - done[user])
            if count > 0:
                service.create_tasks(user, list(_items(done[user] + 1, count)))
                done[user] += count
    # Complete 1 in 5 of the user's tasks, as the bulk seed does.
    with database.engine.begin() as conn:
        conn.execute(text("UPDATE tasks SET status = 'completed', completed_at = updated_at WHERE number % 5 = 0"))
    database.dispose()
    return time.perf_counter() - started


# --- Bulk SQL: a million rows in seconds ------------------------------------------------------------
#
# Row i (0-based) belongs to user i % users and is that user's task number i // users + 1, so every
# user has `total / users` tasks and the users' rows interleave in created_at (one second apart).
# Columns are spelled out to match task_mcp/models.py; the schema itself comes from `migrate`.

_COLUMNS = (
    "owner_id, number, title, description, status, priority, due_at, due_date, tags, "
    "parent_number, version, created_at, updated_at, completed_at, deleted_at, deleted_with"
)

_SQLITE_ROWS = """
WITH RECURSIVE seq(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM seq WHERE i < :total - 1),
rows AS (
  SELECT i, printf('user-%03d', i % :users) AS owner, i / :users + 1 AS n,
         strftime('%Y-%m-%d %H:%M:%S', '2025-01-01', '+' || i || ' seconds') || '.000000' AS ts
  FROM seq)
SELECT owner, n,
  CASE n % 4 WHEN 0 THEN 'Follow up with the vendor about invoice' WHEN 1 THEN 'Draft the quarterly planning notes'
             WHEN 2 THEN 'Book a table for the team dinner' ELSE 'Review pull request for the parser' END || ' #' || n,
  CASE WHEN n % 3 = 0 THEN 'Details for task ' || n || ': who, what and by when.' END,
  CASE WHEN n % 5 = 0 THEN 'completed' ELSE 'open' END,
  (n / 3) % 5,
  CASE WHEN n % 4 = 2 THEN date('2026-01-01', '+' || (n % 365) || ' days') || ' '
       || printf('%02d', n % 24) || ':30:00.000000' END,
  CASE WHEN n % 4 = 1 THEN date('2026-01-01', '+' || (n % 365) || ' days') END,
  CASE n % 4 WHEN 0 THEN 'work' WHEN 1 THEN 'home' WHEN 2 THEN 'errands' ELSE '' END
       || CASE WHEN n % 10 = 0 THEN (CASE WHEN n % 4 = 3 THEN '' ELSE char(10) END) || 'q3' ELSE '' END,
  NULL, 1, ts, ts, CASE WHEN n % 5 = 0 THEN ts END, NULL, NULL
FROM rows
"""

_PG_ROWS = """
SELECT 'user-' || lpad((i % :users)::text, 3, '0'), i / :users + 1,
  (ARRAY['Follow up with the vendor about invoice', 'Draft the quarterly planning notes',
         'Book a table for the team dinner', 'Review pull request for the parser'])[(i / :users + 1) % 4 + 1]
       || ' #' || (i / :users + 1),
  CASE WHEN (i / :users + 1) % 3 = 0 THEN 'Details for task ' || (i / :users + 1) || ': who, what and by when.' END,
  CASE WHEN (i / :users + 1) % 5 = 0 THEN 'completed' ELSE 'open' END,
  ((i / :users + 1) / 3) % 5,
  CASE WHEN (i / :users + 1) % 4 = 2 THEN timestamptz '2026-01-01 00:30:00+00'
       + make_interval(days => (i / :users + 1) % 365, hours => (i / :users + 1) % 24) END,
  CASE WHEN (i / :users + 1) % 4 = 1 THEN date '2026-01-01' + (i / :users + 1) % 365 END,
  CASE (i / :users + 1) % 4 WHEN 0 THEN 'work' WHEN 1 THEN 'home' WHEN 2 THEN 'errands' ELSE '' END
       || CASE WHEN (i / :users + 1) % 10 = 0 THEN (CASE WHEN (i / :users + 1) % 4 = 3 THEN '' ELSE chr(10) END)
       || 'q3' ELSE '' END,
  NULL, 1, timestamptz '2025-01-01 00:00:00+00' + make_interval(secs => i),
  timestamptz '2025-01-01 00:00:00+00' + make_interval(secs => i),
  CASE WHEN (i / :users + 1) % 5 = 0 THEN timestamptz '2025-01-01 00:00:00+00' + make_interval(secs => i) END,
  NULL, NULL
FROM generate_series(0, :total - 1) AS i
"""

# Columns the service derives: the case-folded copies the text search compares (the seed's text is
# ASCII, where lower() is the same fold as task_mcp.models.fold) and the creator (the list's owner).
_FOLD = (
    "UPDATE tasks SET title_folded = lower(title), description_folded = coalesce(lower(description), ''), "
    "created_by = owner_id"
)

# One task_tags row per tag in the `tags` column (at most two here), with its copy of the task's keys.
_TAG_ROWS = """
INSERT INTO task_tags (task_pk, tag, owner_id, status, priority, number, created_at, deleted_at)
SELECT pk, CASE number % 4 WHEN 0 THEN 'work' WHEN 1 THEN 'home' ELSE 'errands' END, owner_id,
       status, priority, number, created_at, deleted_at
  FROM tasks WHERE number % 4 <> 3
UNION ALL
SELECT pk, 'q3', owner_id, status, priority, number, created_at, deleted_at FROM tasks WHERE number % 10 = 0
"""
# The journal: each task's creation as its own change (change_id = number), dated like the task.
_CHANGES = """
INSERT INTO changes (owner_id, change_id, at, tool, by_user, summary, task_count)
SELECT owner_id, number, created_at, 'create_task', owner_id, 'Created #' || number || ': ' || title, 1 FROM tasks
"""
_CHANGE_TASKS = """
INSERT INTO change_tasks (owner_id, change_id, number, kind, version_after)
SELECT owner_id, number, number, 'created', 1 FROM tasks
"""
# The counts the triggers keep (migration 0009) found no counter row while the bulk insert ran.
_COUNTERS = (
    "INSERT INTO task_counters (owner_id, last_number, last_change, open_tasks, completed_tasks, deleted_tasks) "
    "SELECT owner_id, max(number), max(number), "
    "sum(CASE WHEN deleted_at IS NULL AND status = 'open' THEN 1 ELSE 0 END), "
    "sum(CASE WHEN deleted_at IS NULL AND status = 'completed' THEN 1 ELSE 0 END), "
    "sum(CASE WHEN deleted_at IS NOT NULL THEN 1 ELSE 0 END) FROM tasks GROUP BY owner_id"
)
# The per-tag counts their triggers keep (migration 0012), set aside like the others while seeding.
_TAG_COUNTS = (
    "INSERT INTO tag_counts (owner_id, tag, status, priority, n) SELECT owner_id, tag, status, priority, count(*) "
    "FROM task_tags WHERE deleted_at IS NULL GROUP BY owner_id, tag, status, priority"
)
SEEDED_UNTIL = dt.datetime(2025, 1, 13, tzinfo=dt.UTC)  # after the last bulk-seeded row (1,000,000 s)

# SQLite's text index (migrations 0008, 0010): each workspace's integer, then its entries keyed by it.
_SEARCH_SPACES = "INSERT INTO task_search_spaces (owner_id) SELECT DISTINCT owner_id FROM tasks ORDER BY owner_id"
_SEARCH_ROWS = """
INSERT INTO task_search (rowid, title_folded, description_folded)
SELECT s.space * 4294967296 + t.number, t.title_folded, t.description_folded
  FROM tasks t JOIN task_search_spaces s ON s.owner_id = t.owner_id
"""


def bulk_seed(database: Database, *, total: int, users: int) -> float:
    """Fill an empty, migrated database with `total` tasks of `users` users; returns seconds.

    Migrate first, in the main thread: Alembic's `context` is global, so two threads migrating
    at once step on each other.
    """
    started = time.perf_counter()
    if database.dialect == "sqlite":
        path = database.engine.url.database
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            conn.execute("PRAGMA cache_size = -400000")  # 400 MB: keeps the index inserts in memory
            conn.execute("BEGIN")
            # Like PostgreSQL's indexes below: the triggers that keep the text index, the tag rows'
            # copies and the tag counts in step row by row are set aside, and each is built once.
            triggers = conn.execute(
                "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' "
                "AND name IN ('tasks_search_insert', 'tasks_search_update', 'task_tags_fill', 'tag_counts_insert')"
            ).fetchall()
            for name, _ in triggers:
                conn.execute(f'DROP TRIGGER "{name}"')
            conn.execute(f"INSERT INTO tasks ({_COLUMNS}) {_SQLITE_ROWS}", {"total": total, "users": users})
            conn.execute(_FOLD)
            conn.execute(_TAG_ROWS)
            conn.execute(_CHANGES)
            conn.execute(_CHANGE_TASKS)
            conn.execute(_COUNTERS)
            conn.execute(_TAG_COUNTS)
            conn.execute(_SEARCH_SPACES)
            conn.execute(_SEARCH_ROWS)
            conn.execute("INSERT INTO task_search (task_search) VALUES ('optimize')")  # as migration 0010 does
            for _, definition in triggers:
                conn.execute(definition)
            conn.execute("COMMIT")
            conn.execute("ANALYZE")
        finally:
            conn.close()
    else:
        # PostgreSQL builds an index from all rows far faster than it maintains eight indexes row by
        # row, so the secondary indexes are dropped, the rows inserted, and the same indexes rebuilt.
        with database.engine.begin() as conn:
            indexes = conn.execute(
                text(
                    "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() "
                    "AND indexname LIKE 'ix\\_%'"
                )
            ).all()
            for name, _ in indexes:
                conn.execute(text(f'DROP INDEX "{name}"'))
            # No foreign-key checks while seeding: the rows are consistent by construction.
            conn.execute(text("SET LOCAL session_replication_role = replica"))
            conn.execute(text(f"INSERT INTO tasks ({_COLUMNS}) {_PG_ROWS}"), {"total": total, "users": users})
            conn.execute(text(_FOLD))
            conn.execute(text(_TAG_ROWS))
            conn.execute(text(_CHANGES))
            conn.execute(text(_CHANGE_TASKS))
            conn.execute(text(_COUNTERS))
            conn.execute(text(_TAG_COUNTS))  # the replica role kept the triggers from counting
            conn.execute(text("SET LOCAL maintenance_work_mem = '256MB'"))
            for _, definition in indexes:
                conn.execute(text(definition))
        with database.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
    return time.perf_counter() - started
