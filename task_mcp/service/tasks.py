"""The rules of each task tool: workspaces and roles, numbering, idempotency, versions, soft
delete, limits.

`TaskService` methods carry the tools' names and take the caller first (a `Caller`, or a plain user
id for that user's personal workspace) and a keyword `workspace` (DESIGN §8). Every query is scoped
by the workspace's key, and a task of another workspace is simply not found. Checks run in the
order of §8: the workspace, scope and role for the tool, the task, then rules that depend on the
task. Each method is one transaction (`Database.run` / `Database.read`) of Core statements
(`store.py`); a stored task becomes a `TaskOut` in `task_out` only. Nothing here knows about MCP.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection

import task_mcp.service.idempotency as idempotency
import task_mcp.service.store as store
from task_mcp.db import Database
from task_mcp.errors import ConflictError, InvalidArgumentError
from task_mcp.models import (
    PRIORITIES,
    TaskCreate,
    TaskOut,
    TaskQuery,
    TaskUpdate,
    fold,
    task_out,
)
from task_mcp.service.housekeeping import PURGE_EVERY_SECONDS, Housekeeping
from task_mcp.service.listing import TaskList, TaskPage
from task_mcp.service.workspaces import Action, Caller, MemberDirectory, Workspace, WorkspaceInfo, resolve

if TYPE_CHECKING:
    from task_mcp.config import Settings

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
        history_days: int = 90,
        max_tasks: int = DEFAULT_MAX_TASKS,
        clock: Callable[[], dt.datetime] = utcnow,
        purge_every: float | None = PURGE_EVERY_SECONDS,
    ) -> None:
        """`max_tasks`: tasks one workspace may hold, deleted ones included. `history_days`: how long
        an unseen member stays known. `purge_every`: seconds between background purges of expired
        trash, keys and members (None: only `purge_deleted`)."""
        self._db = database
        self._retention = dt.timedelta(days=retention_days)
        self.members = MemberDirectory(database, clock)
        self._max_tasks = max_tasks
        self._clock = clock
        self._housekeeping = Housekeeping(
            database,
            clock,
            retention=self._retention,
            history=dt.timedelta(days=history_days),
            purge_every=purge_every,
        )

    @classmethod
    def from_settings(cls, database: Database, settings: Settings) -> TaskService:
        """A service with the retention period and task limit of `settings`."""
        return cls(
            database,
            retention_days=settings.retention_days,
            history_days=settings.history_days,
            max_tasks=settings.max_tasks_per_workspace,
        )

    def workspace(self, caller: Caller | str, workspace: str | None = None, action: Action = "read") -> Workspace:
        """The workspace the call names, once the caller is recorded in their token's organizations
        and allowed `action` there.

        Raises:
            NotFoundError: the token lists no such workspace.
            ForbiddenError: the scope or the role does not allow `action` there.
            UnavailableError: the database stayed busy or unreachable.
        """
        who = Caller.of(caller)
        ws = resolve(who, workspace)
        self.members.record(who)
        ws.allow(who, action)
        return ws

    def list_workspaces(self, caller: Caller | str, workspace: str | None = None) -> list[WorkspaceInfo]:
        """The caller's workspaces, personal first, with their member counts; with `workspace`,
        that one alone with its members (at most 50, the caller first, then by last seen).

        Raises:
            NotFoundError, ForbiddenError, UnavailableError: as `workspace`.
        """
        who = Caller.of(caller)
        named = self.workspace(who, workspace) if workspace is not None else None
        return self._db.read(lambda conn: self.members.describe(conn, who, named))

    # --- reads ----------------------------------------------------------------------------------

    def get_task(self, caller: Caller | str, task_id: int, *, workspace: str | None = None) -> TaskOut:
        """The live task `task_id` of the workspace.

        Raises:
            NotFoundError: no such workspace, no such task there, or it is deleted.
            ForbiddenError: the token lacks the read scope.
            UnavailableError: the database stayed busy or unreachable.
        """
        ws = self.workspace(caller, workspace)
        return self._db.read(lambda conn: task_out(store.live_row(conn, ws, task_id)))

    def list_tasks(self, caller: Caller | str, query: TaskQuery, *, workspace: str | None = None) -> TaskPage:
        """One page of the workspace's tasks matching `query`, with the exact total.

        Raises:
            InvalidArgumentError: a cursor that is not this list's `next_cursor`.
            NotFoundError: no such workspace; `parent_id` names no live task there; `assignee` is
                an email that names no known member.
            ForbiddenError: the token lacks the read scope.
            UnavailableError: the database stayed busy or unreachable.
        """
        who = Caller.of(caller)
        ws = self.workspace(who, workspace)

        def page(conn: Connection) -> TaskPage:
            assignee = self.members.assignee_filter(conn, ws, who, query.assignee)
            return TaskList(conn, ws, query, self._clock(), assignee=assignee).page()

        return self._db.read(page)

    # --- writes ---------------------------------------------------------------------------------

    def create_task(
        self,
        caller: Caller | str,
        data: TaskCreate,
        idempotency_key: str | None = None,
        *,
        workspace: str | None = None,
    ) -> tuple[TaskOut, bool]:
        """Create one task; `(task, created)`, where `created` is False for a replayed key.

        Raises:
            NotFoundError: no such workspace; `parent_id` names no live task there; `assignee`
                names no known member.
            ForbiddenError: the scope or the role does not allow creating tasks there.
            ConflictError: the key was used with other arguments, or its task was deleted since.
            InvalidArgumentError: the workspace already holds `max_tasks` tasks.
            UnavailableError: the database stayed busy or unreachable; nothing was created.
        """
        tasks, created = self._create(caller, workspace, "create_task", [data], idempotency_key)
        return tasks[0], created

    def create_tasks(
        self,
        caller: Caller | str,
        items: Sequence[TaskCreate],
        idempotency_key: str | None = None,
        *,
        workspace: str | None = None,
    ) -> tuple[list[TaskOut], bool]:
        """Create 1-100 tasks, all or nothing; items cannot refer to each other.

        Raises:
            InvalidArgumentError: not 1-100 items, or more tasks than the workspace may hold.
            NotFoundError, ForbiddenError, ConflictError, UnavailableError: as `create_task`.
        """
        if not 1 <= len(items) <= 100:
            raise InvalidArgumentError("tasks: give between 1 and 100 tasks.")
        return self._create(caller, workspace, "create_tasks", list(items), idempotency_key)

    def update_task(
        self, caller: Caller | str, task_id: int, changes: TaskUpdate, *, workspace: str | None = None
    ) -> TaskOut:
        """Apply `changes`; a change that changes nothing keeps the version.

        Raises:
            InvalidArgumentError: a field both set and cleared, or a parent that makes a cycle.
            NotFoundError: no such workspace; the task, the new parent or the assignee is not there.
            ForbiddenError: the scope or the role does not allow changing tasks there.
            ConflictError: `expected_version` is not the task's version (checked first).
            UnavailableError: the database stayed busy or unreachable; nothing was changed.
        """
        both = [name for name in changes.clear if getattr(changes, name) is not None]
        if both:
            raise InvalidArgumentError(
                f"{both[0]} is both set and cleared; either give a value or list it in clear, not both."
            )
        who = Caller.of(caller)
        ws = self.workspace(who, workspace, "write")
        self._housekeeping.maybe_purge()
        return self._db.run(lambda conn: self._update(conn, ws, who, task_id, changes), write=True)

    def complete_task(
        self,
        caller: Caller | str,
        task_id: int,
        expected_version: int | None = None,
        *,
        workspace: str | None = None,
    ) -> TaskOut:
        """Mark the task completed; completing a completed task is a success that changes nothing.

        Raises:
            NotFoundError, ForbiddenError, ConflictError, UnavailableError: as `update_task`.
        """
        changes = TaskUpdate(status="completed", expected_version=expected_version)
        return self.update_task(caller, task_id, changes, workspace=workspace)

    def delete_task(self, caller: Caller | str, task_id: int, *, workspace: str | None = None) -> int:
        """Soft-delete the task and its live subtree; returns how many tasks were deleted now.

        Raises:
            NotFoundError: no such workspace, or no such task there.
            ForbiddenError: the scope or the role does not allow it (a member: a task of the
                subtree that someone else created, named).
            UnavailableError: the database stayed busy or unreachable; nothing was deleted.
        """
        who = Caller.of(caller)
        ws = self.workspace(who, workspace, "delete")
        self._housekeeping.maybe_purge()
        return self._db.run(lambda conn: self._delete(conn, ws, who, task_id), write=True)

    def restore_task(self, caller: Caller | str, task_id: int, *, workspace: str | None = None) -> TaskOut:
        """Bring back a deleted task with the tasks deleted together with it.

        Raises:
            NotFoundError: no such workspace, or no such task there (purged ones included).
            ForbiddenError: as `delete_task`, for the tasks deleted together.
            ConflictError: its parent is deleted too (restore the parent first).
            InvalidArgumentError: the workspace holds more than `max_tasks` tasks.
            UnavailableError: the database stayed busy or unreachable; nothing was restored.
        """
        who = Caller.of(caller)
        ws = self.workspace(who, workspace, "delete")
        return self._db.run(lambda conn: self._restore(conn, ws, who, task_id), write=True)

    def purge_deleted(self) -> int:
        """Hard-delete tasks deleted longer than the retention period, expired keys and members
        not seen for `history_days`; returns the tasks purged (see `Housekeeping.purge`).

        Raises:
            UnavailableError: the database stayed busy or unreachable (batches done stay done).
        """
        return self._housekeeping.purge()

    # --- internals ------------------------------------------------------------------------------

    def _create(
        self, caller: Caller | str, workspace: str | None, tool: str, items: list[TaskCreate], key: str | None
    ) -> tuple[list[TaskOut], bool]:
        who = Caller.of(caller)
        ws = self.workspace(who, workspace, "write")
        self._housekeeping.maybe_purge()
        request_hash = idempotency.request_hash(tool, items)

        def create(conn: Connection) -> tuple[list[TaskOut], bool]:
            if key is not None:
                replay = idempotency.replay(conn, ws, who.user_id, key, request_hash, self._clock())
                if replay is not None:
                    return replay, False
            assignees: list[str | None] = []
            for item in items:
                if item.parent_id is not None:
                    store.live_row(conn, ws, item.parent_id)
                assignees.append(self.members.assignee(conn, ws, who, item.assignee) if item.assignee else None)
            first = store.reserve_numbers(conn, ws.key, len(items))
            self._check_room(conn, ws, last_number=first + len(items) - 1, adding=len(items))
            now = self._clock()
            values = [
                self._new_task(ws.key, first + i, item, now, created_by=who.user_id, assignee=assignees[i])
                for i, item in enumerate(items)
            ]
            rows = conn.execute(store.INSERT_TASKS, values).all()
            tags = [
                {"task_pk": row.pk, "tag": tag, "owner_id": ws.key}
                for row, item in zip(rows, items, strict=True)
                for tag in item.tags
            ]
            if tags:
                conn.execute(store.INSERT_TAGS, tags)
            if key is not None:
                idempotency.remember(conn, ws, who.user_id, key, request_hash, [row.number for row in rows], now)
            return [task_out(row) for row in rows], True

        return self._db.run(create, write=True)

    def _new_task(
        self, owner: str, number: int, item: TaskCreate, now: dt.datetime, *, created_by: str, assignee: str | None
    ) -> dict[str, Any]:
        return store.new_task(owner, number, item, now, created_by=created_by, assignee=assignee)

    def _check_room(self, conn: Connection, ws: Workspace, *, last_number: int | None = None, adding: int = 0) -> None:
        # Numbers are gap-free and never reused, so the last number bounds the rows held: the count
        # is needed only by workspaces that have ever created more tasks than the limit.
        if last_number is None:
            last_number = conn.execute(store.LAST_NUMBER, {"owner": ws.key}).scalar() or 0
        if last_number <= self._max_tasks:
            return
        held = conn.execute(store.COUNT_TASKS, {"owner": ws.key}).scalar_one()
        if held + adding > self._max_tasks:
            holder = "Your list" if ws.personal else f"Workspace '{ws.label}'"
            raise InvalidArgumentError(
                f"{holder} holds {held} tasks, deleted ones included, and can hold at most {self._max_tasks}; "
                "nothing was changed. Deleted tasks count until they are purged "
                f"({self._retention.days} days after deletion): complete or reuse existing tasks, or ask the "
                "server's operator to raise TASK_MCP_MAX_TASKS_PER_WORKSPACE."
            )

    def _update(self, conn: Connection, ws: Workspace, who: Caller, task_id: int, changes: TaskUpdate) -> TaskOut:
        row = store.live_row(conn, ws, task_id, lock=True)
        if changes.expected_version is not None and changes.expected_version != row.version:
            raise ConflictError(
                f"Task {task_id} is at version {row.version}, not {changes.expected_version}; nothing was "
                f"changed. Call get_task{ws.hint} to see its current state, then retry with expected_version "
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
            store.check_parent(conn, ws, row.number, changes.parent_id)
            after["parent_number"] = changes.parent_id
        elif "parent_id" in changes.clear:
            after["parent_number"] = None
        if changes.assignee is not None:
            after["assignee"] = self.members.assignee(conn, ws, who, changes.assignee)
        elif "assignee" in changes.clear:
            after["assignee"] = None
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
                    store.INSERT_TAGS, [{"task_pk": row.pk, "tag": tag, "owner_id": ws.key} for tag in changes.tags]
                )
        after |= {"version": row.version + 1, "updated_at": now}
        return task_out(conn.execute(store.UPDATE_TASK, {"task_pk": row.pk, **after}).one())

    def _delete(self, conn: Connection, ws: Workspace, who: Caller, task_id: int) -> int:
        root = store.any_row(conn, ws, task_id, lock=True)
        ws.check_creator(who, root.number, root.created_by, "delete")
        if root.deleted_at is not None:
            return 0  # deleting a deleted task is a success that changes nothing
        params = {"owner": ws.key, "root": task_id}
        if ws.level != "admin":
            found = conn.execute(store.NOT_MINE_IN_SUBTREE, {**params, "user": who.user_id}).scalar()
            ws.check_creator(who, found, None, "delete")
        return conn.execute(store.DELETE_SUBTREE, {**params, "now": self._clock()}).rowcount

    def _restore(self, conn: Connection, ws: Workspace, who: Caller, task_id: int) -> TaskOut:
        task = store.any_row(conn, ws, task_id, lock=True)
        ws.check_creator(who, task.number, task.created_by, "restore")
        if task.deleted_at is None:
            return task_out(task)  # already live: a repeat
        if ws.level != "admin":
            params = {"owner": ws.key, "group": task.deleted_with, "user": who.user_id}
            ws.check_creator(who, conn.execute(store.NOT_MINE_IN_GROUP, params).scalar(), None, "restore")
        if task.parent_number is not None:
            parent = conn.execute(store.TASK_BY_NUMBER, {"owner": ws.key, "number": task.parent_number}).first()
            if parent is not None and parent.deleted_at is not None:
                raise ConflictError(
                    f"Task {task_id} is a subtask of task {parent.number}, which is deleted too. "
                    f"Call restore_task{ws.hint} with task_id {parent.number} first; that also restores the "
                    "subtasks deleted together with it."
                )
        self._check_room(conn, ws)
        conn.execute(store.RESTORE_GROUP, {"owner": ws.key, "group": task.deleted_with, "now": self._clock()})
        return task_out(store.live_row(conn, ws, task_id))
