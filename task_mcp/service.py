"""Every rule about tasks: ownership, numbering, idempotency, versions, soft delete, lists.

`TaskService` methods carry the tools' names and take the caller's `user_id` first: every query
is scoped by it, and another user's task is simply not found. Each method is one transaction
(`Database.run`). Nothing here knows about MCP; a FastAPI route could call it just the same.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, Select, and_, delete, false, func, insert, or_, select, tuple_
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

logger = logging.getLogger(__name__)

IDEMPOTENCY_TTL = dt.timedelta(hours=24)
_INSERT_TASKS = insert(Task.__table__).returning(Task.__table__.c.pk, sort_by_parameter_order=True)
_INSERT_TAGS = insert(TaskTag.__table__)
_INSERT_KEY = insert(IdempotencyKey.__table__)
_TASKS = Task.__table__
PURGE_EVERY_SECONDS = 3600


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class TaskPage:
    tasks: list[TaskOut]
    next_cursor: str | None
    total: int


def _not_found(task_id: int) -> NotFoundError:
    return NotFoundError(f"No task {task_id} in your list. Call list_tasks to see your task ids.")


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
        return self._db.run(lambda s: task_out(self._live_task(s, user_id, task_id)), write=False)

    def list_tasks(self, user_id: str, query: TaskQuery) -> TaskPage:
        return self._db.run(lambda s: _TaskList(s, user_id, query, self._clock()).page(), write=False)

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
            for item in items:
                if item.parent_id is not None:
                    self._live_task(session, user_id, item.parent_id)
            first = self._reserve_numbers(session, user_id, len(items))
            now = self._clock()
            rows = [self._new_task(user_id, first + i, item, now) for i, item in enumerate(items)]
            # Plain Core statements on the connection: the ORM's bookkeeping cost more than the SQL.
            conn = session.connection()
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

    def _reserve_numbers(self, session: Session, user_id: str, count: int) -> int:
        """Take `count` consecutive task numbers; the counter row's lock serialises creators."""
        upsert = (postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert)(TaskCounter)
        last = session.execute(
            upsert.values(owner_id=user_id, last_number=count)
            .on_conflict_do_update(
                index_elements=[col(TaskCounter.owner_id)],
                set_={"last_number": col(TaskCounter.last_number) + count},
            )
            .returning(col(TaskCounter.last_number))
        ).scalar_one()
        return last - count + 1

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

    def _live_task(self, session: Session, user_id: str, task_id: int, *, lock: bool = False) -> Task:
        stmt = select(Task).where(*_mine(user_id), col(Task.number) == task_id)
        if lock:
            stmt = stmt.with_for_update()
        task = session.exec(stmt).scalars().first()
        if task is None:
            raise _not_found(task_id)
        if task.deleted_at is not None:
            raise NotFoundError(
                f"Task {task_id} was deleted. Call restore_task with task_id {task_id} to bring it back."
            )
        return task

    def _update(self, session: Session, user_id: str, task_id: int, changes: TaskUpdate) -> TaskOut:
        task = self._live_task(session, user_id, task_id, lock=True)
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
            session.execute(delete(TaskTag).where(col(TaskTag.task_pk) == task.pk))
            for tag in changes.tags:
                session.add(TaskTag(task_pk=task.pk, tag=tag, owner_id=user_id))
        if task_out(task) == before:
            return before  # nothing changed: no new version
        task.version += 1
        task.updated_at = now
        session.add(task)
        session.flush()
        return task_out(task)

    def _check_parent(self, session: Session, user_id: str, task: Task, parent_id: int) -> None:
        if parent_id == task.number:
            raise InvalidArgumentError(f"parent_id: task {parent_id} cannot be its own parent.")
        ancestor: int | None = self._live_task(session, user_id, parent_id).number
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
            raise _not_found(task_id)
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
            raise _not_found(task_id)
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


def _set_due(task: Task, due: str | None) -> None:
    task.due_at, task.due_date = _due_columns(due)


def _request_hash(tool: str, items: list[TaskCreate]) -> str:
    payload = json.dumps([tool, [item.model_dump(mode="json") for item in items]], sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def _start_of_day(day: dt.date, zone: ZoneInfo) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), tzinfo=zone).astimezone(dt.UTC)


def _lower(value: str | None) -> str | None:
    return None if value is None else value.lower()


def _local_date(instant: dt.datetime, zone: ZoneInfo) -> dt.date:
    return instant.astimezone(zone).date()


class _TaskList:
    """One `list_tasks` call: filters, a keyset page in the requested order, and the total."""

    def __init__(self, session: Session, user_id: str, query: TaskQuery, now: dt.datetime) -> None:
        self.session, self.user_id, self.query, self.now = session, user_id, query, now
        self.zone = ZoneInfo(query.timezone)
        self.filters = self._filters()
        self.cursor = _decode_cursor(query.cursor, _query_fingerprint(query), query.sort)

    def page(self) -> TaskPage:
        rows = self._due_rows() if self.query.sort == "due" else self._simple_rows()
        more = len(rows) > self.query.limit
        rows = rows[: self.query.limit]
        if self.cursor is None and not more:
            total = len(rows)  # the first page holds them all: no need to count
        else:
            total = self.session.exec(select(func.count()).select_from(Task).where(*self.filters)).scalar_one()
        next_cursor = self._cursor_after(rows[-1]) if more else None
        tasks = [task_out(t) for t in rows]
        return TaskPage(tasks=tasks, next_cursor=next_cursor, total=total)

    def _filters(self) -> list[ColumnElement[bool]]:
        q = self.query
        where: list[ColumnElement[bool]] = [*_mine(self.user_id), col(Task.deleted_at).is_(None)]
        if q.status != "all":
            where.append(col(Task.status) == q.status)
        if q.priority:
            where.append(col(Task.priority).in_([PRIORITIES.index(p) for p in q.priority]))
        for tag in q.tags or []:
            tagged = select(TaskTag.task_pk).where(col(TaskTag.owner_id) == self.user_id, col(TaskTag.tag) == tag)
            where.append(col(Task.pk).in_(tagged))
        if q.text:
            where.append(or_(*(self._contains(col(c), q.text) for c in (Task.title, Task.description))))
        if q.due_after is not None or q.due_before is not None:
            where.append(self._due_range(q.due_after, q.due_before))
        if q.overdue:
            today = _local_date(self.now, self.zone)
            where.append(col(Task.status) == "open")
            where.append(or_(col(Task.due_at) < self.now, col(Task.due_date) < today))
        if q.parent_id is not None:
            parent = self.session.exec(
                select(Task.deleted_at).where(*_mine(self.user_id), col(Task.number) == q.parent_id)
            ).first()
            if parent is None or parent[0] is not None:
                raise _not_found(q.parent_id)
            where.append(col(Task.parent_number) == q.parent_id)
        return where

    def _contains(self, column: Any, text: str) -> ColumnElement[bool]:
        if self.session.get_bind().dialect.name != "sqlite":
            return column.icontains(text, autoescape=True)  # type: ignore[no-any-return]
        # SQLite's lower() and LIKE fold ASCII letters only ("ÉCOLE" would not match "école"):
        # fold every letter in Python, as PostgreSQL's ILIKE does.
        raw = self.session.connection().connection.driver_connection
        raw.create_function("task_mcp_lower", 1, _lower, deterministic=True)  # type: ignore[union-attr]
        folded = func.task_mcp_lower(column, type_=column.type)
        return folded.contains(text.lower(), autoescape=True)  # type: ignore[no-any-return]

    def _due_range(self, after: str | None, before: str | None) -> ColumnElement[bool]:
        # A dated task's day [start, next start) in the zone overlaps [A, B] exactly when
        # local_date(A) <= day <= local_date(B), so date-only dues compare as plain dates.
        instant: list[ColumnElement[bool]] = [col(Task.due_at).is_not(None)]
        day: list[ColumnElement[bool]] = [col(Task.due_date).is_not(None)]
        if after is not None:
            bound = parse_due(after)
            if isinstance(bound, dt.datetime):
                instant.append(col(Task.due_at) >= bound)
                day.append(col(Task.due_date) >= _local_date(bound, self.zone))
            else:
                instant.append(col(Task.due_at) >= _start_of_day(bound, self.zone))
                day.append(col(Task.due_date) >= bound)
        if before is not None:
            bound = parse_due(before)
            if isinstance(bound, dt.datetime):
                instant.append(col(Task.due_at) <= bound)
                day.append(col(Task.due_date) <= _local_date(bound, self.zone))
            else:
                instant.append(col(Task.due_at) < _start_of_day(bound + dt.timedelta(days=1), self.zone))
                day.append(col(Task.due_date) <= bound)
        return or_(and_(*instant), and_(*day))

    # created / updated / priority: newest or highest first, ties by id in the same direction.
    def _simple_rows(self) -> list[Any]:
        column = {"created": Task.created_at, "updated": Task.updated_at, "priority": Task.priority}[self.query.sort]
        stmt = select(_TASKS).where(*self.filters)
        if self.cursor is not None:
            key, number = self.cursor["k"], self.cursor["n"]
            if self.query.sort != "priority":
                key = dt.datetime.fromisoformat(key)
            stmt = stmt.where(tuple_(col(column), col(Task.number)) < tuple_(key, number))
        stmt = stmt.order_by(col(column).desc(), col(Task.number).desc()).limit(self.query.limit + 1)
        return self._rows(stmt)

    def _rows(self, stmt: Select[Any]) -> list[Any]:
        # Plain rows with Task's columns, not ORM objects: nothing here is changed, and building
        # objects cost more than the query.
        return list(self.session.connection().execute(stmt).all())

    # due: soonest first, undated last, ties by id ascending. Instants and all-day dates are two
    # index-ordered streams; a date counts as the start of its day in the zone, so the page is
    # their merge, followed by the undated tasks.
    def _due_key(self, task: Any) -> dt.datetime:
        if task.due_at is not None:
            return task.due_at
        assert task.due_date is not None
        return _start_of_day(task.due_date, self.zone)

    def _due_rows(self) -> list[Any]:
        want = self.query.limit + 1
        cursor = self.cursor
        rows: list[Any] = []
        if cursor is None or cursor["k"] is not None:
            instants = select(_TASKS).where(*self.filters, col(Task.due_at).is_not(None))
            days = select(_TASKS).where(*self.filters, col(Task.due_date).is_not(None))
            if cursor is not None:
                key, number = dt.datetime.fromisoformat(cursor["k"]), cursor["n"]
                instants = instants.where(tuple_(col(Task.due_at), col(Task.number)) > tuple_(key, number))
                day = _local_date(key, self.zone)
                same_day = and_(col(Task.due_date) == day, col(Task.number) > number)
                days = days.where(
                    or_(col(Task.due_date) > day, same_day if _start_of_day(day, self.zone) == key else false())
                )
            instants = instants.order_by(col(Task.due_at), col(Task.number)).limit(want)
            days = days.order_by(col(Task.due_date), col(Task.number)).limit(want)
            dated = self._rows(instants) + self._rows(days)
            rows = sorted(dated, key=lambda t: (self._due_key(t), t.number))[:want]
        if len(rows) < want:
            undated = select(_TASKS).where(*self.filters, col(Task.due_at).is_(None), col(Task.due_date).is_(None))
            if cursor is not None and cursor["k"] is None:
                undated = undated.where(col(Task.number) > cursor["n"])
            undated = undated.order_by(col(Task.number)).limit(want - len(rows))
            rows += self._rows(undated)
        return rows

    def _cursor_after(self, task: Any) -> str:
        key: Any
        if self.query.sort == "due":
            dated = task.due_at is not None or task.due_date is not None
            key = self._due_key(task).isoformat() if dated else None
        elif self.query.sort == "priority":
            key = task.priority
        else:
            key = (task.created_at if self.query.sort == "created" else task.updated_at).isoformat()
        return _encode_cursor({"k": key, "n": task.number, "f": _query_fingerprint(self.query)})


def _query_fingerprint(query: TaskQuery) -> str:
    shape = query.model_dump(exclude={"cursor", "limit", "include_description"}, mode="json")
    return hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()[:12]


def _encode_cursor(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str | None, fingerprint: str, sort: str) -> dict[str, Any] | None:
    if cursor is None:
        return None
    bad = InvalidArgumentError(
        "cursor: not a next_cursor from this list. Pass next_cursor unchanged, with the same filters "
        "and sort as the call that returned it, or leave cursor out to start from the first page."
    )
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise bad from None
    if not isinstance(data, dict) or data.get("f") != fingerprint:
        raise bad
    # An edited cursor must fail as a bad cursor, not reach the query as a key of the wrong type.
    key, number = data.get("k"), data.get("n")
    if type(number) is not int or not 0 < number < 2**31:
        raise bad
    if sort == "priority":
        if type(key) is not int or not 0 <= key < len(PRIORITIES):
            raise bad
    elif not (key is None and sort == "due"):
        try:
            if dt.datetime.fromisoformat(key).tzinfo is None:
                raise bad
        except (TypeError, ValueError):
            raise bad from None
    return data
