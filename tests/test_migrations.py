"""Migration 0004 moves a database built by 0001-0003 into personal workspaces, keeping every id;
0005 adds the change journal.

The database is made by the real migrations up to 0003 and filled through the statements of that
schema; after `migrate`, every task, tag, counter and key is still there with its number, and the
personal list answers exactly as before, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from alembic import command
from sqlalchemy import text

from task_mcp.db import Database, alembic_config, current_revision, head_revision, migrate
from task_mcp.models import TaskCreate, TaskQuery, TaskUpdate, fold
from task_mcp.service import TaskService
from task_mcp.service.idempotency import request_hash
from task_mcp.service.journal import Receipt

AT = dt.datetime(2026, 3, 1, 12, 0, 0)
TASKS = [  # owner, number, title, status, priority, due_date, tags, parent, deleted
    ("alice", 1, "Plan the trip", "open", 3, "2026-12-01", "travel\nfamily", None, False),
    ("alice", 2, "Book flights", "completed", 2, None, "travel", 1, False),
    ("alice", 3, "Old idea", "open", 0, None, "", None, True),
    ("alice", 4, "İstanbul hotel", "open", 4, None, "", 1, False),
    ("bob", 1, "Bob's only task", "open", 1, "2027-01-15", "work", None, False),
]


def _fill_at_0003(database: Database) -> None:
    insert_task = text(
        "INSERT INTO tasks (owner_id, number, title, description, status, priority, due_date, tags, parent_number, "
        "version, created_at, updated_at, completed_at, deleted_at, deleted_with, title_folded, description_folded) "
        "VALUES (:owner, :number, :title, :description, :status, :priority, :due, :tags, :parent, :version, :at, "
        ":at, :completed, :deleted, :deleted_with, :folded, '')"
    )
    with database.engine.begin() as conn:
        for owner, number, title, status, priority, due, tags, parent, deleted in TASKS:
            conn.execute(
                insert_task,
                {
                    "owner": owner,
                    "number": number,
                    "title": title,
                    "description": f"about {title}",
                    "status": status,
                    "priority": priority,
                    "due": dt.date.fromisoformat(due) if due else None,
                    "tags": tags,
                    "parent": parent,
                    "version": 2 if deleted else 1,
                    "at": AT + dt.timedelta(minutes=number),
                    "completed": AT if status == "completed" else None,
                    "deleted": AT if deleted else None,
                    "deleted_with": number if deleted else None,
                    "folded": fold(title),  # as 0003 fills it
                },
            )
            pk = conn.execute(
                text("SELECT pk FROM tasks WHERE owner_id = :o AND number = :n"), {"o": owner, "n": number}
            ).scalar_one()
            for tag in filter(None, tags.split("\n")):
                conn.execute(
                    text("INSERT INTO task_tags (task_pk, tag, owner_id) VALUES (:pk, :tag, :o)"),
                    {"pk": pk, "tag": tag, "o": owner},
                )
        conn.execute(text("INSERT INTO task_counters (owner_id, last_number) VALUES ('alice', 4), ('bob', 1)"))
        # A key as create_task made it at 0003: replaying it must still answer task 4.
        key_hash = request_hash("create_task", [TaskCreate(title="İstanbul hotel", priority="urgent", parent_id=1)])
        conn.execute(
            text(
                "INSERT INTO idempotency_keys (owner_id, key, request_hash, numbers, created_at) "
                "VALUES ('alice', 'hotel-key', :h, '4', :at)"
            ),
            {"h": key_hash, "at": dt.datetime.now(dt.UTC).replace(tzinfo=None)},
        )


def _listing(service: TaskService, user: str) -> list[dict[str, Any]]:
    page = service.list_tasks(user, TaskQuery(status="all", sort="created", limit=100, include_description=True))
    return [t.model_dump(exclude={"created_by", "assignee"}) for t in page.tasks]


def test_a_database_made_by_0001_to_0003_keeps_every_id_tag_key_and_field_in_personal_workspaces(
    empty_database_url: str,
) -> None:
    database = Database(empty_database_url)
    try:
        command.upgrade(alembic_config(database), "0003")
        _fill_at_0003(database)
        with database.engine.connect() as conn:
            rows_before = conn.execute(
                text("SELECT owner_id, number, title, status, version, parent_number, tags FROM tasks ORDER BY 1, 2")
            ).all()

        migrate(database)
        assert current_revision(database) == head_revision() == "0012"
        with database.engine.connect() as conn:
            rows_after = conn.execute(
                text("SELECT owner_id, number, title, status, version, parent_number, tags FROM tasks ORDER BY 1, 2")
            ).all()
            creators = conn.execute(text("SELECT DISTINCT owner_id, created_by, assignee FROM tasks ORDER BY 1")).all()
            tags = conn.execute(text("SELECT owner_id, tag FROM task_tags ORDER BY 1, 2")).all()
            counters = conn.execute(text("SELECT owner_id, last_number FROM task_counters ORDER BY 1")).all()
            keys = conn.execute(text("SELECT owner_id, user_id, key, numbers FROM idempotency_keys")).all()
        assert rows_after == rows_before
        assert [tuple(r) for r in creators] == [("alice", "alice", None), ("bob", "bob", None)]
        assert [tuple(r) for r in tags] == [
            ("alice", "family"),
            ("alice", "travel"),
            ("alice", "travel"),
            ("bob", "work"),
        ]
        assert [tuple(r) for r in counters] == [("alice", 4), ("bob", 1)]
        assert [tuple(r) for r in keys] == [("alice", "alice", "hotel-key", "4")]

        service = TaskService(database, purge_every=None)
        alice = _listing(service, "alice")
        assert [(t["id"], t["title"]) for t in alice] == [
            (4, "İstanbul hotel"),
            (2, "Book flights"),
            (1, "Plan the trip"),
        ]
        assert {t["id"]: t["tags"] for t in alice} == {4: [], 2: ["travel"], 1: ["travel", "family"]}
        assert [t.id for t in service.list_tasks("alice", TaskQuery(tags=["travel"], status="all")).tasks] == [2, 1]
        assert [t.id for t in service.list_tasks("alice", TaskQuery(text="istanbul")).tasks] == [4]
        # 0008 indexed the existing rows: tag pages by status and the trigram search find them.
        assert [t.id for t in service.list_tasks("alice", TaskQuery(tags=["travel"])).tasks] == [1]
        assert [t.id for t in service.list_tasks("alice", TaskQuery(tags=["travel"], status="completed")).tasks] == [2]
        assert [t.id for t in service.list_tasks("alice", TaskQuery(text="the TRIP")).tasks] == [1]
        assert [t.id for t in service.list_tasks("alice", TaskQuery(parent_id=1, status="all")).tasks] == [4, 2]
        task = service.get_task("alice", 1)
        assert (task.created_by, task.assignee, task.due, task.priority) == ("alice", None, "2026-12-01", "high")
        assert [t.id for t in _bob(service)] == [1]

        # The key replays; the trash restores; numbering goes on where it stopped, per workspace.
        replayed, created = service.create_task(
            "alice", TaskCreate(title="İstanbul hotel", priority="urgent", parent_id=1), "hotel-key"
        )
        assert (replayed.id, created) == (4, False)
        assert service.restore_task("alice", 3).title == "Old idea"
        assert service.create_task("alice", TaskCreate(title="Next"))[0].id == 5
        assert service.create_task("bob", TaskCreate(title="Bob's next"))[0].id == 2
    finally:
        database.dispose()


def _bob(service: TaskService) -> list[Any]:
    return service.list_tasks("bob", TaskQuery(status="all")).tasks


def test_0005_adds_the_journal_to_a_0004_database_and_its_existing_tasks_get_history_from_then_on(
    empty_database_url: str,
) -> None:
    database = Database(empty_database_url)
    try:
        command.upgrade(alembic_config(database), "0003")
        _fill_at_0003(database)
        command.upgrade(alembic_config(database), "0004")
        migrate(database)
        assert current_revision(database) == head_revision()
        service = TaskService(database)
        # Existing tasks keep their numbers; their first journaled change is the workspace's change 1.
        receipt = Receipt()
        service.update_task("alice", 1, TaskUpdate(priority="low"), receipt=receipt)
        assert receipt.change_id == 1
        task, _ = service.create_task("alice", TaskCreate(title="After 0005"), receipt=receipt)
        assert (task.id, receipt.change_id) == (5, 2)
        undo = service.undo_change("alice", 1)
        assert service.get_task("alice", 1).priority == "high" and undo == 3
        # Task 3 was deleted before the retention period: no longer restorable, so not in the trash.
        service.delete_task("alice", 4)
        assert [t.id for t in service.list_tasks("alice", TaskQuery(status="deleted")).tasks] == [4]
        command.downgrade(alembic_config(database), "0004")
        assert current_revision(database) == "0004"
    finally:
        database.dispose()
