"""Every rule about tasks: ownership, numbering, idempotency, versions, soft delete, lists.

`TaskService` (here) holds the rules of each tool; `listing.py` holds one `list_tasks` call
(filters, sorts, keyset cursors, the total). `TaskService` methods carry the tools' names and
take the caller's `user_id` first: every query is scoped by it, and another user's task is simply
not found. Each method is one transaction (`Database.run`; `Database.read` for the Core reads).
Nothing here knows about MCP; a FastAPI route could call it just the same.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import Any

from sqlalchemy import ColumnElement, Connection, Row, bindparam, delete, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col

from task_mcp.db import Database
from task_mcp.errors import ConflictError, InvalidArgumentError, NotFoundError
from task_mcp.models import (
    PRIORITIES,
    IdempotencyKey,
    Task,
    TaskCounter,
    TaskCreate,
    TaskOut,
    TaskQuery,
    TaskTag,
    TaskUpdate,
    parse_due,
    task_out,
)
from task_mcp.service.listing import TaskList, TaskPage

logger = logging.getLogger(__name__)

IDEMPOTENCY_TTL = dt.timedelta(hours=24)
_INSERT_TASKS = insert(Task.__table__).returning(Task.__table__.c.pk, sort_by_parameter_order=True)
_INSERT_TAGS = insert(TaskTag.__table__)
_INSERT_KEY = insert(IdempotencyKey.__table__)
PURGE_EVERY_SECONDS = 3600


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class TaskService:
    def __init__(
        self, database: Database, *, retention_days: int = 30, clock: Callable[[], dt.datetime] = utcnow
    ) -> None:
        self._db = database
        self._retention = dt.timedelta(days=retention_days)
        self._clock = clock
        self._next_purge = 0.0
        self._purge_lock = threading.Lock()

    # --- reads ----------------------------------------------------------------------------------

    def get_task(self, user_id: str, task_id: int) -> TaskOut:
        return self._db.read(lambda conn: task_out(_live_row(conn, user_id, task_id)))

    def list_tasks(self, user_id: str, query: TaskQuery) -> TaskPage:
        return self._db.read(lambda conn: TaskList(conn, user_id, query, self._clock()).page())

    # --- writes ---------------------------------------------------------------------------------

    def create_task(self, user_id: str, data: TaskCreate, idempotency_key: str | None = None) -> tuple[TaskOut, bool]:
        tasks, created = self._create(user_id, "create_task", [data], idempotency_key)
        return tasks[0], created

    def create_tasks(
        self, user_id: str, items: Sequence[TaskCreate], idempotency_key: str | None = None
    ) -> tuple[list[TaskOut], bool]:
        if not 1 <= len(items) <= 100:
            raise InvalidArgumentError("tasks: give between 1 and 100 tasks.")
        return self._create(user_id, "create_tasks", list(items), idempotency_key)

    def update_task(self, user_id: str, task_id: int, changes: TaskUpdate) -> TaskOut:
        both = [name for name in changes.clear if getattr(changes, name) is not None]
        if both:
            raise InvalidArgumentError(
                f"{both[0]} is both set and cleared; either give a value or list it in clear, not both."
            )
        self._maybe_purge()
        return self._db.run(lambda s: self._update(s, user_id, task_id, changes), write=True)

    def complete_task(self, user_id: str, task_id: int) -> TaskOut:
        return self.update_task(user_id, task_id, TaskUpdate(status="completed"))

    def delete_task(self, user_id: str, task_id: int) -> int:
        """Soft-delete the task and its live subtree; returns how many tasks were deleted now."""
        self._maybe_purge()
        return self._db.run(lambda s: self._delete(s, user_id, task_id), write=True)

    def restore_task(self, user_id: str, task_id: int) -> TaskOut:
        return self._db.run(lambda s: self._restore(s, user_id, task_id), write=True)

    def purge_deleted(self) -> int:
        """Hard-delete tasks deleted longer than the retention period, and expired keys."""
        now = self._clock()

        def purge(session: Session) -> int:
            session.execute(delete(IdempotencyKey).where(col(IdempotencyKey.created_at) < now - IDEMPOTENCY_TTL))
            old = select(Task.pk).where(col(Task.deleted_at) < now - self._retention)
            session.execute(delete(TaskTag).where(col(TaskTag.task_pk).in_(old)))
            return session.execute(delete(Task).where(col(Task.deleted_at) < now - self._retention)).rowcount

        return self._db.run(purge, write=True)

    # --- internals ------------------------------------------------------------------------------

    def _maybe_purge(self) -> None:
        # Purging rides on ordinary writes, at most once an hour per process: no scheduler needed.
        if time.monotonic() < self._next_purge or not self._purge_lock.acquire(blocking=False):
            return
        try:
            self._next_purge = time.monotonic() + PURGE_EVERY_SECONDS
            self.purge_deleted()
        except Exception:
            # Housekeeping never fails the caller's own write (it touches every user's rows, so it
            # can meet a lock or a deadlock the caller's call would not); try again in a minute.
            logger.warning("purging deleted tasks failed; will try again", exc_info=True)
            self._next_purge = time.monotonic() + 60
        finally:
            self._purge_lock.release()

    def _create(self, user_id: str, tool: str, items: list[TaskCreate], key: str | None) -> tuple[list[TaskOut], bool]:
        self._maybe_purge()
        request_hash = _request_hash(tool, items)

        def create(session: Session) -> tuple[list[TaskOut], bool]:
            if key is not None:
                replay = self._replay(session, user_id, key, request_hash)
                if replay is not None:
                    return replay, False
            # Plain Core statements on the connection: the ORM's bookkeeping cost more than the SQL.
            conn = session.connection()
            for item in items:
                if item.parent_id is not None:
                    _live_row(conn, user_id, item.parent_id)
            first = _reserve_numbers(conn, user_id, len(items))
            now = self._clock()
            rows = [self._new_task(user_id, first + i, item, now) for i, item in enumerate(items)]
            pks = conn.execute(_INSERT_TASKS, rows).scalars().all()
            tags = [
                {"task_pk": pk, "tag": tag, "owner_id": user_id}
                for pk, item in zip(pks, items, strict=True)
                for tag in item.tags
            ]
            if tags:
                conn.execute(_INSERT_TAGS, tags)
            if key is not None:
                numbers = ",".join(str(row["number"]) for row in rows)
                conn.execute(
                    _INSERT_KEY,
                    {
                        "owner_id": user_id,
                        "key": key,
                        "request_hash": request_hash,
                        "numbers": numbers,
                        "created_at": now,
                    },
                )
            return [task_out(SimpleNamespace(**row)) for row in rows], True

        return self._db.run(create, write=True)

    def _replay(self, session: Session, user_id: str, key: str, request_hash: str) -> list[TaskOut] | None:
        row = session.get(IdempotencyKey, (user_id, key))
        if row is None or row.created_at < self._clock() - IDEMPOTENCY_TTL:
            if row is not None:
                session.delete(row)
                session.flush()
            return None
        if row.request_hash != request_hash:
            raise ConflictError(
                f"idempotency_key '{key}' was already used with other arguments. "
                "Use a new key for a different request, or resend the original arguments."
            )
        numbers = [int(n) for n in row.numbers.split(",")]
        found = {
            t.number: t
            for t in session.exec(select(Task).where(*_mine(user_id), col(Task.number).in_(numbers))).scalars()
        }
        for number in numbers:
            task = found.get(number)
            if task is None or task.deleted_at is not None:
                raise ConflictError(
                    f"idempotency_key '{key}' created task {number}, which has since been deleted. "
                    f"Call restore_task with task_id {number} to bring it back, or use a new key."
                )
        return [task_out(found[n]) for n in numbers]

    def _new_task(self, user_id: str, number: int, item: TaskCreate, now: dt.datetime) -> dict[str, Any]:
        due_at, due_date = _due_columns(item.due)
        return {
            "owner_id": user_id,
            "number": number,
            "title": item.title,
            "description": item.description,
            "status": "open",
            "priority": PRIORITIES.index(item.priority),
            "due_at": due_at,
            "due_date": due_date,
            "tags": "\n".join(item.tags),
            "parent_number": item.parent_id,
            "version": 1,
            "created_at": now,
            "updated_at": now,
            "completed_at": None,
            "deleted_at": None,
            "deleted_with": None,
        }

    def _update(self, session: Session, user_id: str, task_id: int, changes: TaskUpdate) -> TaskOut:
        # Core statements on the connection, the row as a plain namespace: loading an ORM object and
        # flushing it cost more than the two statements themselves.
        conn = session.connection()
        task = SimpleNamespace(**_live_row(conn, user_id, task_id, lock=True)._mapping)
        if changes.expected_version is not None and changes.expected_version != task.version:
            raise ConflictError(
                f"Task {task_id} is at version {task.version}, not {changes.expected_version}; nothing was "
                f"changed. Call get_task to see its current state, then retry with expected_version "
                f"{task.version}."
            )
        before = task_out(task)
        if changes.title is not None:
            task.title = changes.title
        if changes.description is not None or "description" in changes.clear:
            task.description = changes.description
        if changes.priority is not None:
            task.priority = PRIORITIES.index(changes.priority)
        if changes.due is not None or "due" in changes.clear:
            _set_due(task, changes.due)
        if changes.parent_id is not None:
            self._check_parent(session, user_id, task, changes.parent_id)
            task.parent_number = changes.parent_id
        elif "parent_id" in changes.clear:
            task.parent_number = None
        now = self._clock()
        if changes.status is not None and changes.status != task.status:
            task.status = changes.status
            task.completed_at = now if changes.status == "completed" else None
        if changes.tags is not None and changes.tags != before.tags:
            task.tags = "\n".join(changes.tags)
            conn.execute(delete(TaskTag).where(col(TaskTag.task_pk) == task.pk))
            if changes.tags:
                conn.execute(
                    _INSERT_TAGS, [{"task_pk": task.pk, "tag": tag, "owner_id": user_id} for tag in changes.tags]
                )
        if task_out(task) == before:
            return before  # nothing changed: no new version
        task.version += 1
        task.updated_at = now
        conn.execute(_UPDATE_TASK, {"task_pk": task.pk, **{name: getattr(task, name) for name in _UPDATABLE}})
        return task_out(task)

    def _check_parent(self, session: Session, user_id: str, task: Any, parent_id: int) -> None:
        if parent_id == task.number:
            raise InvalidArgumentError(f"parent_id: task {parent_id} cannot be its own parent.")
        ancestor: int | None = _live_row(session.connection(), user_id, parent_id).number
        seen: set[int] = set()
        while ancestor is not None and ancestor not in seen:
            if ancestor == task.number:
                raise InvalidArgumentError(
                    f"parent_id: task {parent_id} is a subtask of task {task.number}; making it the "
                    "parent would create a cycle. Choose a task outside its subtree."
                )
            seen.add(ancestor)
            ancestor = session.exec(
                select(Task.parent_number).where(*_mine(user_id), col(Task.number) == ancestor)
            ).scalar()

    def _delete(self, session: Session, user_id: str, task_id: int) -> int:
        root = (
            session.exec(select(Task).where(*_mine(user_id), col(Task.number) == task_id).with_for_update())
            .scalars()
            .first()
        )
        if root is None:
            raise NotFoundError.task(task_id)
        if root.deleted_at is not None:
            return 0  # deleting a deleted task is a success that changes nothing
        subtree, frontier = [root], [root.number]
        while frontier:
            children = list(
                session.exec(
                    select(Task).where(
                        *_mine(user_id),
                        col(Task.parent_number).in_(frontier),
                        col(Task.deleted_at).is_(None),
                    )
                ).scalars()
            )
            subtree += children
            frontier = [child.number for child in children]
        now = self._clock()
        for task in subtree:
            task.deleted_at, task.deleted_with = now, root.number
            task.version += 1
            task.updated_at = now
            session.add(task)
        session.flush()
        return len(subtree)

    def _restore(self, session: Session, user_id: str, task_id: int) -> TaskOut:
        task = (
            session.exec(select(Task).where(*_mine(user_id), col(Task.number) == task_id).with_for_update())
            .scalars()
            .first()
        )
        if task is None:
            raise NotFoundError.task(task_id)
        if task.deleted_at is None:
            return task_out(task)  # already live: a repeat
        if task.parent_number is not None:
            parent = (
                session.exec(select(Task).where(*_mine(user_id), col(Task.number) == task.parent_number))
                .scalars()
                .first()
            )
            if parent is not None and parent.deleted_at is not None:
                raise ConflictError(
                    f"Task {task_id} is a subtask of task {parent.number}, which is deleted too. "
                    f"Call restore_task with task_id {parent.number} first; that also restores the subtasks "
                    "deleted together with it."
                )
        group = session.exec(
            select(Task).where(
                *_mine(user_id), col(Task.deleted_with) == task.deleted_with, col(Task.deleted_at).is_not(None)
            )
        ).scalars()
        now = self._clock()
        for member in group:
            member.deleted_at, member.deleted_with = None, None
            member.version += 1
            member.updated_at = now
            session.add(member)
        session.flush()
        session.refresh(task)
        return task_out(task)


# --- helpers ------------------------------------------------------------------------------------

# Built once: building a statement and computing its cache key cost more than running the lookup.
_COLUMNS = Task.__table__.c
_TASK_BY_NUMBER = select(Task.__table__).where(
    _COLUMNS.owner_id == bindparam("owner_id"), _COLUMNS.number == bindparam("number")
)
_TASK_BY_NUMBER_LOCKED = _TASK_BY_NUMBER.with_for_update()
# What update_task can change; the other columns are left as they are.
_UPDATABLE = (
    "title", "description", "priority", "due_at", "due_date", "tags", "parent_number",
    "status", "completed_at", "version", "updated_at",
)  # fmt: skip
_UPDATE_TASK = update(Task.__table__).where(_COLUMNS.pk == bindparam("task_pk"))
_COUNTER = TaskCounter.__table__.c


def _reserve_statement(insert: Callable[[Any], Any]) -> Any:
    # INSERT ... ON CONFLICT DO UPDATE, as PostgreSQL and SQLite both spell it; `count` is used twice.
    return (
        insert(TaskCounter.__table__)
        .values(owner_id=bindparam("owner_id"), last_number=bindparam("count"))
        .on_conflict_do_update(
            index_elements=[_COUNTER.owner_id], set_={"last_number": _COUNTER.last_number + bindparam("count")}
        )
        .returning(_COUNTER.last_number)
    )


_RESERVE_POSTGRES, _RESERVE_SQLITE = _reserve_statement(postgresql.insert), _reserve_statement(sqlite.insert)


def _live_row(conn: Connection, user_id: str, task_id: int, *, lock: bool = False) -> Row[Any]:
    """The caller's live task `task_id` as a row (the attributes of a `Task`), read with Core."""
    stmt = _TASK_BY_NUMBER_LOCKED if lock else _TASK_BY_NUMBER
    task = conn.execute(stmt, {"owner_id": user_id, "number": task_id}).first()
    if task is None:
        raise NotFoundError.task(task_id)
    if task.deleted_at is not None:
        raise NotFoundError(f"Task {task_id} was deleted. Call restore_task with task_id {task_id} to bring it back.")
    return task


def _reserve_numbers(conn: Connection, user_id: str, count: int) -> int:
    """Take `count` consecutive task numbers; the counter row's lock serialises creators."""
    upsert = _RESERVE_POSTGRES if conn.dialect.name == "postgresql" else _RESERVE_SQLITE
    last = conn.execute(upsert, {"owner_id": user_id, "count": count}).scalar_one()
    return int(last) - count + 1


def _mine(user_id: str) -> tuple[ColumnElement[bool]]:
    return (col(Task.owner_id) == user_id,)


def _due_columns(due: str | None) -> tuple[dt.datetime | None, dt.date | None]:
    """(due_at, due_date) for a `due` argument: an instant in UTC, or an all-day date."""
    value = parse_due(due) if due is not None else None
    if isinstance(value, dt.datetime):
        # Whole seconds, as the task is written: a due that reads 16:00:00Z must match a 16:00:00Z
        # bound, and a change below a second would be stored without showing (or bumping the version).
        return value.replace(microsecond=0), None
    return None, value


def _set_due(task: Any, due: str | None) -> None:
    task.due_at, task.due_date = _due_columns(due)


def _request_hash(tool: str, items: list[TaskCreate]) -> str:
    payload = json.dumps([tool, [item.model_dump(mode="json") for item in items]], sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()
