"""The rules of each task tool: ownership, numbering, idempotency, versions, soft delete, limits.

`TaskService` methods carry the tools' names and take the caller's `user_id` first: every query
is scoped by it, and another user's task is simply not found. Each method is one transaction
(`Database.run` / `Database.read`), written as SQLAlchemy Core statements on a `Connection`,
built once against the tables of `models`; a stored task becomes a `TaskOut` in `task_out` only.
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
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection

import task_mcp.service.store as store
from task_mcp.db import Database
from task_mcp.errors import ConflictError, InvalidArgumentError, NotFoundError
from task_mcp.models import (
    PRIORITIES,
    TaskCreate,
    TaskOut,
    TaskQuery,
    TaskUpdate,
    fold,
    task_out,
)
from task_mcp.service.listing import TaskList, TaskPage
from task_mcp.service.store import PURGE_BATCH

if TYPE_CHECKING:
    from task_mcp.config import Settings

logger = logging.getLogger(__name__)

IDEMPOTENCY_TTL = dt.timedelta(hours=24)
PURGE_EVERY_SECONDS = 3600.0
DEFAULT_MAX_TASKS = 100_000


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class TaskService:
    """Every rule of the task tools, one transaction per call."""

    def __init__(
        self,
        database: Database,
        *,
        retention_days: int = 30,
        max_tasks: int = DEFAULT_MAX_TASKS,
        clock: Callable[[], dt.datetime] = utcnow,
        purge_every: float | None = PURGE_EVERY_SECONDS,
    ) -> None:
        """`max_tasks`: tasks one list may hold, deleted ones included. `purge_every`: seconds
        between background purges of expired trash and keys (None: only `purge_deleted`)."""
        self._db = database
        self._retention = dt.timedelta(days=retention_days)
        self._max_tasks = max_tasks
        self._clock = clock
        self._purge_every = purge_every
        self._next_purge = 0.0
        self._purge_lock = threading.Lock()

    @classmethod
    def from_settings(cls, database: Database, settings: Settings) -> TaskService:
        """A service with the retention period and task limit of `settings`."""
        return cls(database, retention_days=settings.retention_days, max_tasks=settings.max_tasks_per_workspace)

    # --- reads ----------------------------------------------------------------------------------

    def get_task(self, user_id: str, task_id: int) -> TaskOut:
        """The caller's live task `task_id`.

        Raises:
            NotFoundError: no such task of the caller's, or it is deleted.
            UnavailableError: the database stayed busy or unreachable.
        """
        return self._db.read(lambda conn: task_out(store.live_row(conn, user_id, task_id)))

    def list_tasks(self, user_id: str, query: TaskQuery) -> TaskPage:
        """One page of the caller's tasks matching `query`, with the exact total.

        Raises:
            InvalidArgumentError: a cursor that is not this list's `next_cursor`.
            NotFoundError: `parent_id` names no live task of the caller's.
            UnavailableError: the database stayed busy or unreachable.
        """
        return self._db.read(lambda conn: TaskList(conn, user_id, query, self._clock()).page())

    # --- writes ---------------------------------------------------------------------------------

    def create_task(self, user_id: str, data: TaskCreate, idempotency_key: str | None = None) -> tuple[TaskOut, bool]:
        """Create one task; `(task, created)`, where `created` is False for a replayed key.

        Raises:
            ConflictError: the key was used with other arguments, or its task was deleted since.
            NotFoundError: `parent_id` names no live task of the caller's.
            InvalidArgumentError: the list already holds `max_tasks` tasks.
            UnavailableError: the database stayed busy or unreachable; nothing was created.
        """
        tasks, created = self._create(user_id, "create_task", [data], idempotency_key)
        return tasks[0], created

    def create_tasks(
        self, user_id: str, items: Sequence[TaskCreate], idempotency_key: str | None = None
    ) -> tuple[list[TaskOut], bool]:
        """Create 1-100 tasks, all or nothing; items cannot refer to each other.

        Raises:
            InvalidArgumentError: not 1-100 items, or more tasks than the list may hold.
            ConflictError, NotFoundError, UnavailableError: as `create_task`.
        """
        if not 1 <= len(items) <= 100:
            raise InvalidArgumentError("tasks: give between 1 and 100 tasks.")
        return self._create(user_id, "create_tasks", list(items), idempotency_key)

    def update_task(self, user_id: str, task_id: int, changes: TaskUpdate) -> TaskOut:
        """Apply `changes`; a change that changes nothing keeps the version.

        Raises:
            InvalidArgumentError: a field both set and cleared, or a parent that makes a cycle.
            ConflictError: `expected_version` is not the task's version (checked first).
            NotFoundError: the task or the new parent is not a live task of the caller's.
            UnavailableError: the database stayed busy or unreachable; nothing was changed.
        """
        both = [name for name in changes.clear if getattr(changes, name) is not None]
        if both:
            raise InvalidArgumentError(
                f"{both[0]} is both set and cleared; either give a value or list it in clear, not both."
            )
        self._maybe_purge()
        return self._db.run(lambda conn: self._update(conn, user_id, task_id, changes), write=True)

    def complete_task(self, user_id: str, task_id: int, expected_version: int | None = None) -> TaskOut:
        """Mark the task completed; completing a completed task is a success that changes nothing.

        Raises:
            ConflictError, NotFoundError, UnavailableError: as `update_task`.
        """
        return self.update_task(user_id, task_id, TaskUpdate(status="completed", expected_version=expected_version))

    def delete_task(self, user_id: str, task_id: int) -> int:
        """Soft-delete the task and its live subtree; returns how many tasks were deleted now.

        Raises:
            NotFoundError: no such task of the caller's.
            UnavailableError: the database stayed busy or unreachable; nothing was deleted.
        """
        self._maybe_purge()
        return self._db.run(lambda conn: self._delete(conn, user_id, task_id), write=True)

    def restore_task(self, user_id: str, task_id: int) -> TaskOut:
        """Bring back a deleted task with the tasks deleted together with it.

        Raises:
            NotFoundError: no such task of the caller's (purged ones included).
            ConflictError: its parent is deleted too (restore the parent first).
            InvalidArgumentError: the list holds more than `max_tasks` tasks.
            UnavailableError: the database stayed busy or unreachable; nothing was restored.
        """
        return self._db.run(lambda conn: self._restore(conn, user_id, task_id), write=True)

    def purge_deleted(self) -> int:
        """Hard-delete tasks deleted longer than the retention period, and expired keys, in
        batches of `PURGE_BATCH` rows, each in its own transaction; returns the tasks purged.

        Raises:
            UnavailableError: the database stayed busy or unreachable (batches done stay done).
        """
        now = self._clock()
        while self._db.run(lambda conn: store.purge_keys(conn, now - IDEMPOTENCY_TTL), write=True) == PURGE_BATCH:
            pass
        purged = 0
        while True:
            batch = self._db.run(lambda conn: store.purge_tasks(conn, now - self._retention), write=True)
            purged += batch
            if batch < PURGE_BATCH:
                return purged

    # --- internals ------------------------------------------------------------------------------

    def _maybe_purge(self) -> None:
        # Purging starts from ordinary writes, at most once per `purge_every` per process, on a
        # thread of its own: never on the caller's latency path, and its failure is never theirs.
        if self._purge_every is None or time.monotonic() < self._next_purge:
            return
        with self._purge_lock:
            if time.monotonic() < self._next_purge:
                return
            self._next_purge = time.monotonic() + self._purge_every
            self._db.in_background(self._purge_in_background, name="task-mcp-purge")

    def _purge_in_background(self) -> None:
        try:
            self.purge_deleted()
        except Exception:
            # It touches every user's rows, so it can meet a lock the callers would not: retry soon.
            logger.warning("purging deleted tasks failed; will try again", exc_info=True)
            self._next_purge = time.monotonic() + 60

    def _create(self, user_id: str, tool: str, items: list[TaskCreate], key: str | None) -> tuple[list[TaskOut], bool]:
        self._maybe_purge()
        request_hash = _request_hash(tool, items)

        def create(conn: Connection) -> tuple[list[TaskOut], bool]:
            if key is not None:
                replay = self._replay(conn, user_id, key, request_hash)
                if replay is not None:
                    return replay, False
            for item in items:
                if item.parent_id is not None:
                    store.live_row(conn, user_id, item.parent_id)
            first = store.reserve_numbers(conn, user_id, len(items))
            self._check_room(conn, user_id, last_number=first + len(items) - 1, adding=len(items))
            now = self._clock()
            rows = conn.execute(
                store.INSERT_TASKS, [self._new_task(user_id, first + i, item, now) for i, item in enumerate(items)]
            ).all()
            tags = [
                {"task_pk": row.pk, "tag": tag, "owner_id": user_id}
                for row, item in zip(rows, items, strict=True)
                for tag in item.tags
            ]
            if tags:
                conn.execute(store.INSERT_TAGS, tags)
            if key is not None:
                numbers = ",".join(str(row.number) for row in rows)
                conn.execute(
                    store.INSERT_KEY,
                    {
                        "owner_id": user_id,
                        "key": key,
                        "request_hash": request_hash,
                        "numbers": numbers,
                        "created_at": now,
                    },
                )
            return [task_out(row) for row in rows], True

        return self._db.run(create, write=True)

    def _new_task(self, user_id: str, number: int, item: TaskCreate, now: dt.datetime) -> dict[str, Any]:
        return store.new_task(user_id, number, item, now)

    def _check_room(self, conn: Connection, user_id: str, *, last_number: int | None = None, adding: int = 0) -> None:
        # Numbers are gap-free and never reused, so the last number bounds the rows held: the count
        # is needed only by lists that have ever created more tasks than the limit.
        if last_number is None:
            last_number = conn.execute(store.LAST_NUMBER, {"owner": user_id}).scalar() or 0
        if last_number <= self._max_tasks:
            return
        held = conn.execute(store.COUNT_TASKS, {"owner": user_id}).scalar_one()
        if held + adding > self._max_tasks:
            raise InvalidArgumentError(
                f"Your list holds {held} tasks, deleted ones included, and can hold at most {self._max_tasks}; "
                "nothing was changed. Deleted tasks count until they are purged "
                f"({self._retention.days} days after deletion): complete or reuse existing tasks, or ask the "
                "server's operator to raise TASK_MCP_MAX_TASKS_PER_WORKSPACE."
            )

    def _replay(self, conn: Connection, user_id: str, key: str, request_hash: str) -> list[TaskOut] | None:
        found = conn.execute(store.KEY_BY_ID, {"owner": user_id, "key": key}).first()
        if found is None or found.created_at < self._clock() - IDEMPOTENCY_TTL:
            if found is not None:
                conn.execute(store.DELETE_KEY, {"owner": user_id, "key": key})
            return None
        if found.request_hash != request_hash:
            raise ConflictError(
                f"idempotency_key '{key}' was already used with other arguments. "
                "Use a new key for a different request, or resend the original arguments."
            )
        numbers = [int(n) for n in found.numbers.split(",")]
        tasks = {
            row.number: row for row in conn.execute(store.TASKS_BY_NUMBERS, {"owner": user_id, "numbers": numbers})
        }
        for number in numbers:
            task = tasks.get(number)
            if task is None or task.deleted_at is not None:
                raise ConflictError(
                    f"idempotency_key '{key}' created task {number}, which has since been deleted. "
                    f"Call restore_task with task_id {number} to bring it back, or use a new key."
                )
        return [task_out(tasks[n]) for n in numbers]

    def _update(self, conn: Connection, user_id: str, task_id: int, changes: TaskUpdate) -> TaskOut:
        row = store.live_row(conn, user_id, task_id, lock=True)
        if changes.expected_version is not None and changes.expected_version != row.version:
            raise ConflictError(
                f"Task {task_id} is at version {row.version}, not {changes.expected_version}; nothing was "
                f"changed. Call get_task to see its current state, then retry with expected_version "
                f"{row.version}."
            )
        before = {name: row._mapping[name] for name in store.UPDATABLE}
        after = dict(before)
        if changes.title is not None:
            after |= {"title": changes.title, "title_folded": fold(changes.title)}
        if changes.description is not None or "description" in changes.clear:
            after |= {"description": changes.description, "description_folded": fold(changes.description)}
        if changes.priority is not None:
            after["priority"] = PRIORITIES.index(changes.priority)
        if changes.due is not None or "due" in changes.clear:
            after["due_at"], after["due_date"] = store.due_columns(changes.due)
        if changes.parent_id is not None:
            store.check_parent(conn, user_id, row.number, changes.parent_id)
            after["parent_number"] = changes.parent_id
        elif "parent_id" in changes.clear:
            after["parent_number"] = None
        now = self._clock()
        if changes.status is not None and changes.status != row.status:
            after["status"] = changes.status
            after["completed_at"] = now if changes.status == "completed" else None
        if changes.tags is not None:
            after["tags"] = "\n".join(changes.tags)
        if after == before:
            return task_out(row)  # nothing changed: no new version
        if after["tags"] != before["tags"]:
            conn.execute(store.DELETE_TAGS, {"task_pk": row.pk})
            if changes.tags:
                conn.execute(
                    store.INSERT_TAGS, [{"task_pk": row.pk, "tag": tag, "owner_id": user_id} for tag in changes.tags]
                )
        after |= {"version": row.version + 1, "updated_at": now}
        return task_out(conn.execute(store.UPDATE_TASK, {"task_pk": row.pk, **after}).one())

    def _delete(self, conn: Connection, user_id: str, task_id: int) -> int:
        root = conn.execute(store.TASK_BY_NUMBER_LOCKED, {"owner": user_id, "number": task_id}).first()
        if root is None:
            raise NotFoundError.task(task_id)
        if root.deleted_at is not None:
            return 0  # deleting a deleted task is a success that changes nothing
        return conn.execute(store.DELETE_SUBTREE, {"owner": user_id, "root": task_id, "now": self._clock()}).rowcount

    def _restore(self, conn: Connection, user_id: str, task_id: int) -> TaskOut:
        task = conn.execute(store.TASK_BY_NUMBER_LOCKED, {"owner": user_id, "number": task_id}).first()
        if task is None:
            raise NotFoundError.task(task_id)
        if task.deleted_at is None:
            return task_out(task)  # already live: a repeat
        if task.parent_number is not None:
            parent = conn.execute(store.TASK_BY_NUMBER, {"owner": user_id, "number": task.parent_number}).first()
            if parent is not None and parent.deleted_at is not None:
                raise ConflictError(
                    f"Task {task_id} is a subtask of task {parent.number}, which is deleted too. "
                    f"Call restore_task with task_id {parent.number} first; that also restores the subtasks "
                    "deleted together with it."
                )
        self._check_room(conn, user_id)
        conn.execute(store.RESTORE_GROUP, {"owner": user_id, "group": task.deleted_with, "now": self._clock()})
        return task_out(store.live_row(conn, user_id, task_id))


def _request_hash(tool: str, items: list[TaskCreate]) -> str:
    payload = json.dumps([tool, [item.model_dump(mode="json") for item in items]], sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()
