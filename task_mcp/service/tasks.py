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
from functools import partial
from typing import TYPE_CHECKING

from sqlalchemy import Connection

import task_mcp.service.journal as journal
import task_mcp.service.links as links
import task_mcp.service.notes as notes
import task_mcp.service.store as store
import task_mcp.service.undo as undo
from task_mcp.db import Database
from task_mcp.errors import InvalidArgumentError
from task_mcp.models import (
    TaskCreate,
    TaskOut,
    TaskQuery,
    TaskUpdate,
)
from task_mcp.service.agents import AgentTasks
from task_mcp.service.housekeeping import PURGE_EVERY_SECONDS, Housekeeping
from task_mcp.service.journal import ChangePage, Receipt
from task_mcp.service.listing import TaskList, TaskPage
from task_mcp.service.workspaces import Action, Caller, MemberDirectory, Workspace, WorkspaceInfo, resolve
from task_mcp.service.writes import fill

if TYPE_CHECKING:
    from task_mcp.config import Settings

DEFAULT_MAX_TASKS = 100_000


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class TaskService(AgentTasks):
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
        self._history = dt.timedelta(days=history_days)
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
        self.members.record(who)  # first: a token that dropped an organization leaves it even when refused
        ws = resolve(who, workspace)
        ws.allow(who, action)
        return ws

    def list_workspaces(self, caller: Caller | str, workspace: str | None = None) -> list[WorkspaceInfo]:
        """The caller's workspaces, personal first, with their member counts; with `workspace`,
        that one alone with its members (at most 50, the caller first, then by last seen).

        Raises:
            NotFoundError, ForbiddenError, UnavailableError: as `workspace`.
        """
        who = Caller.of(caller)
        ws = self.workspace(who, workspace)  # records the caller, checks the read scope
        named = ws if workspace is not None else None
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

        def read(conn: Connection) -> TaskOut:
            task = links.out(conn, ws.key, store.live_row(conn, ws, task_id), self._clock())
            shown, total = notes.newest(conn, ws, task_id)
            return task.model_copy(update={"notes": shown, "notes_total": total})

        return self._db.read(read)

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
            now = self._clock()
            return TaskList(conn, ws, query, now, assignee=assignee, trash_since=now - self._retention).page()

        return self._db.read(page)

    # --- writes ---------------------------------------------------------------------------------

    def create_task(
        self,
        caller: Caller | str,
        data: TaskCreate,
        idempotency_key: str | None = None,
        *,
        workspace: str | None = None,
        receipt: Receipt | None = None,
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
        tasks, created = self._create(caller, workspace, "create_task", [data], idempotency_key, receipt)
        return tasks[0], created

    def create_tasks(
        self,
        caller: Caller | str,
        items: Sequence[TaskCreate],
        idempotency_key: str | None = None,
        *,
        workspace: str | None = None,
        receipt: Receipt | None = None,
    ) -> tuple[list[TaskOut], bool]:
        """Create 1-100 tasks, all or nothing; items cannot refer to each other.

        Raises:
            InvalidArgumentError: not 1-100 items, or more tasks than the workspace may hold.
            NotFoundError, ForbiddenError, ConflictError, UnavailableError: as `create_task`.
        """
        if not 1 <= len(items) <= 100:
            raise InvalidArgumentError("tasks: give between 1 and 100 tasks.")
        return self._create(caller, workspace, "create_tasks", list(items), idempotency_key, receipt)

    def update_task(
        self,
        caller: Caller | str,
        task_id: int,
        changes: TaskUpdate,
        *,
        workspace: str | None = None,
        receipt: Receipt | None = None,
        tool: str = "update_task",
    ) -> TaskOut:
        """Apply `changes`; a change that changes nothing keeps the version (and journals nothing).
        Every write fills `receipt` with the change_id it journaled (None: nothing changed).

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
        task, change_id = self._db.run(lambda conn: self._update(conn, ws, who, task_id, changes, tool), write=True)
        fill(receipt, change_id)
        return task

    def complete_task(
        self,
        caller: Caller | str,
        task_id: int,
        expected_version: int | None = None,
        *,
        workspace: str | None = None,
        receipt: Receipt | None = None,
    ) -> TaskOut:
        """Mark the task completed; completing a completed task is a success that changes nothing.

        Raises:
            NotFoundError, ForbiddenError, ConflictError, UnavailableError: as `update_task`.
        """
        changes = TaskUpdate(status="completed", expected_version=expected_version)
        return self.update_task(caller, task_id, changes, workspace=workspace, receipt=receipt, tool="complete_task")

    def delete_task(
        self, caller: Caller | str, task_id: int, *, workspace: str | None = None, receipt: Receipt | None = None
    ) -> int:
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
        count, change_id = self._db.run(lambda conn: self._delete(conn, ws, who, task_id), write=True)
        fill(receipt, change_id)
        return count

    def restore_task(
        self, caller: Caller | str, task_id: int, *, workspace: str | None = None, receipt: Receipt | None = None
    ) -> TaskOut:
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
        task, change_id = self._db.run(lambda conn: self._restore(conn, ws, who, task_id), write=True)
        fill(receipt, change_id)
        return task

    # --- history ----------------------------------------------------------------------------------

    def list_changes(
        self,
        caller: Caller | str,
        *,
        workspace: str | None = None,
        task_id: int | None = None,
        by: str | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> ChangePage:
        """One page of the workspace's changes, newest first; `by` is "me" or a user id.

        Raises:
            InvalidArgumentError: a cursor that is not this list's `next_cursor`.
            NotFoundError, ForbiddenError, UnavailableError: as `get_task`.
        """
        who = Caller.of(caller)
        ws = self.workspace(who, workspace)
        since = self._clock() - self._history
        user = who.user_id if by == "me" else by
        return self._db.read(
            lambda conn: journal.list_changes(
                conn, ws, task_id=task_id, by=user, limit=limit, cursor=cursor, since=since
            )
        )

    def undo_change(
        self, caller: Caller | str, change_id: int, *, workspace: str | None = None, receipt: Receipt | None = None
    ) -> int:
        """Put every task change `change_id` touched back to its state before, as one new change;
        returns its change_id (also in `receipt`). See `undo.undo_change`.

        Raises:
            NotFoundError: no such workspace, or no such change there within the history window.
            ForbiddenError: the role may not undo (a member: someone else's change).
            ConflictError: already undone, a task changed since, or a rule the undo would break.
            InvalidArgumentError: it would restore tasks past the workspace's task limit.
            UnavailableError: the database stayed busy or unreachable; nothing was changed.
        """
        who = Caller.of(caller)
        ws = self.workspace(who, workspace, "undo")
        room = partial(self._check_room, ws=ws)

        def run(conn: Connection) -> int:
            return undo.undo_change(conn, ws, who, change_id, self._clock(), history=self._history, check_room=room)

        done = self._db.run(run, write=True)
        fill(receipt, done)
        return done

    def purge_deleted(self) -> int:
        """Hard-delete tasks deleted longer than the retention period, expired keys and members
        not seen for `history_days`; returns the tasks purged (see `Housekeeping.purge`).

        Raises:
            UnavailableError: the database stayed busy or unreachable (batches done stay done).
        """
        return self._housekeeping.purge()
