"""The tag and text indexes (migration 0008) give the same answers as reading every task, after
every kind of write: create, update (tags, title, priority, status), complete, delete, restore,
undo, purge. On SQLite and PostgreSQL.

The reference answer comes from `status: "all"` / `"deleted"` listings filtered in Python, so a
tag row or a text index entry left behind by a write shows up as a task too many or too few.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from alembic import command
from sqlalchemy import text

from task_mcp.db import Database, alembic_config, current_revision, head_revision, migrate
from task_mcp.models import TaskCreate, TaskQuery, TaskUpdate, fold
from task_mcp.service import TaskService

USER = "alice"


def _all(service: TaskService) -> list[tuple[int, str, str, str, list[str], str]]:
    page = service.list_tasks(USER, TaskQuery(status="all", limit=100, include_description=True))
    return [(t.id, t.status, t.priority, t.title, t.tags, t.description or "") for t in page.tasks]


def _ids(service: TaskService, **query: object) -> tuple[list[int], int]:
    """Every id of a listing read one task per page (so each page after the first counts the total)."""
    ids: list[int] = []
    cursor = None
    totals = set()
    while True:
        page = service.list_tasks(USER, TaskQuery.model_validate(query | {"limit": 1, "cursor": cursor}))
        ids += [t.id for t in page.tasks]
        totals.add(page.total)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert len(totals) == 1, totals  # the same exact total on every page
    return ids, totals.pop()


def _check(service: TaskService) -> None:
    tasks = _all(service)
    for status in ("open", "completed", "all"):
        for priority in (None, ["high", "urgent"]):
            for tag in ("red", "blue"):
                want = [
                    i
                    for i, s, p, _, tags, _ in tasks
                    if tag in tags and status in (s, "all") and (priority is None or p in priority)
                ]
                query = {"tags": [tag], "status": status} | ({"priority": priority} if priority else {})
                assert _ids(service, **query) == (want, len(want)), query
    for needle in ("Ünïcode", "alpha beta", "GAMMA", "x%_", "be"):
        want = [
            i
            for i, s, _, title, _, d in tasks
            if s == "open" and (fold(needle) in fold(title) or fold(needle) in fold(d))
        ]
        assert _ids(service, text=needle) == (want, len(want)), needle


def test_tag_and_text_filters_follow_every_write(database_url: str) -> None:
    now = [dt.datetime(2026, 3, 1, tzinfo=dt.UTC)]
    database = Database(database_url)
    service = TaskService(database, retention_days=1, purge_every=None, clock=lambda: now[0])
    try:
        items = [
            TaskCreate(title="Alpha beta", tags=["red"], priority="high"),
            TaskCreate(title="gamma", description="ÜNÏCODE notes x%_", tags=["red", "blue"]),
            TaskCreate(title="delta", tags=["blue"], priority="urgent"),
            TaskCreate(title="Beta alpha beta", description="alpha beta", tags=["red"]),
        ]
        for item in items:
            service.create_task(USER, item)
        _check(service)
        service.complete_task(USER, 1)
        service.update_task(USER, 2, TaskUpdate(tags=["blue"], title="Gamma ray", priority="urgent"))
        service.update_task(USER, 3, TaskUpdate(description="now with alpha beta"))
        _check(service)
        service.delete_task(USER, 4)
        _check(service)
        service.restore_task(USER, 4)
        _check(service)
        last = service.list_changes(USER, task_id=2, limit=1).changes[0]["change_id"]
        service.undo_change(USER, last)  # 2 gets its tags, title and priority back
        _check(service)
        service.update_task(USER, 1, TaskUpdate(status="open"))
        service.delete_task(USER, 2)
        now[0] += dt.timedelta(days=2)
        assert service.purge_deleted() == 1
        _check(service)
    finally:
        database.dispose()


def test_0010_numbers_an_existing_sqlite_index_by_workspace_and_the_search_answers_as_before(tmp_path: Path) -> None:
    """A database indexed by 0008 (entries keyed by tasks.pk, workspaces interleaved) is keyed
    space * 2**32 + number by 0010: every workspace's entries are one range, the search finds the
    same tasks, and later writes keep the new keys."""
    database = Database(f"sqlite:///{tmp_path / 'old.db'}")
    try:
        command.upgrade(alembic_config(database), "0008")
        insert = text(
            "INSERT INTO tasks (owner_id, number, title, status, priority, tags, version, created_at, updated_at, "
            "title_folded, description_folded) VALUES (:o, :n, :t, 'open', 0, '', 1, :at, :at, :f, '')"
        )
        at = dt.datetime(2026, 3, 1)
        with database.engine.begin() as conn:
            for n in range(1, 4):  # interleaved: alice 1, bob 1, alice 2, bob 2, ...
                for owner in ("alice", "bob"):
                    title = f"{owner} invoice {n}"
                    conn.execute(insert, {"o": owner, "n": n, "t": title, "at": at, "f": fold(title)})
            conn.execute(text("INSERT INTO task_counters (owner_id, last_number) VALUES ('alice', 3), ('bob', 3)"))
        migrate(database)
        assert current_revision(database) == head_revision()

        service = TaskService(database, purge_every=None)
        assert [t.id for t in service.list_tasks(USER, TaskQuery(text="INVOICE")).tasks] == [3, 2, 1]
        assert [t.id for t in service.list_tasks("bob", TaskQuery(text="bob invoice 2")).tasks] == [2]
        service.create_task(USER, TaskCreate(title="Another invoice"))
        service.update_task("bob", 1, TaskUpdate(title="Paid"))
        assert [t.id for t in service.list_tasks(USER, TaskQuery(text="invoice")).tasks] == [4, 3, 2, 1]
        assert [t.id for t in service.list_tasks("bob", TaskQuery(text="invoice")).tasks] == [3, 2]
        with database.engine.connect() as conn:
            spaces = dict(conn.execute(text("SELECT owner_id, space FROM task_search_spaces")).all())
            keys = conn.execute(text("""SELECT rowid FROM task_search WHERE task_search MATCH '"invoice"'""")).scalars()
            found = sorted(divmod(key, 2**32) for key in keys)
        assert found == sorted([(spaces[USER], n) for n in (1, 2, 3, 4)] + [(spaces["bob"], n) for n in (2, 3)])
    finally:
        database.dispose()
