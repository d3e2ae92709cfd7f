"""The steps of each write inside its one transaction: numbering, idempotency, versions, soft
delete, the workspace's room, and the journal entry of every call that changes something.

`TaskWrites` is the part of `TaskService` that runs on a `Connection`; `tasks.py` holds the public
methods (workspace and role checks first, then one `Database.run` of these steps).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, Row

import task_mcp.service.idempotency as idempotency
import task_mcp.service.journal as journal
import task_mcp.service.links as links
import task_mcp.service.repeats as repeats
import task_mcp.service.store as store
from task_mcp.db import Database
from task_mcp.errors import ConflictError, InvalidArgumentError
from task_mcp.models import PRIORITIES, TaskCreate, TaskOut, TaskUpdate, fold
from task_mcp.service.housekeeping import Housekeeping
from task_mcp.service.journal import Receipt, Touch
from task_mcp.service.workspaces import Action, Caller, MemberDirectory, Workspace


def fill(receipt: Receipt | None, change_id: int | None) -> None:
    if receipt is not None:
        receipt.change_id = change_id


class TaskWrites:
    """What `TaskService` sets up: storage, members, limits, clock, housekeeping."""

    _db: Database
    members: MemberDirectory
    _max_tasks: int
    _retention: dt.timedelta
    _housekeeping: Housekeeping
    _clock: Callable[[], dt.datetime]

    def workspace(self, caller: Caller | str, workspace: str | None = None, action: Action = "read") -> Workspace:
        raise NotImplementedError

    def _create(
        self,
        caller: Caller | str,
        workspace: str | None,
        tool: str,
        items: list[TaskCreate],
        key: str | None,
        receipt: Receipt | None,
    ) -> tuple[list[TaskOut], bool]:
        who = Caller.of(caller)
        ws = self.workspace(who, workspace, "write")
        self._housekeeping.maybe_purge()
        request_hash = idempotency.request_hash(tool, items) if key is not None else ""  # only a key needs it

        def create(conn: Connection) -> tuple[list[TaskOut], bool, int | None]:
            if key is not None:
                replay = idempotency.replay(conn, ws, who.user_id, key, request_hash, self._clock())
                if replay is not None:
                    return replay[0], False, replay[1]
            assignees: list[str | None] = []
            for item in items:
                if item.parent_id is not None:
                    store.live_row(conn, ws, item.parent_id)
                links.check_blockers(conn, ws, None, item.blocked_by or [])
                assignees.append(self.members.assignee(conn, ws, who, item.assignee) if item.assignee else None)
            first, change_id = store.reserve_numbers(conn, ws.key, len(items))
            self._check_room(conn, ws=ws, last_number=first + len(items) - 1, adding=len(items))
            now = self._clock()
            values = [
                self._new_task(ws.key, first + i, item, now, created_by=who.user_id, assignee=assignees[i])
                for i, item in enumerate(items)
            ]
            for i, (item, value) in enumerate(zip(items, values, strict=True)):
                try:
                    repeats.settle(value, repeat=item.repeat, timezone=item.timezone, clear=())
                except InvalidArgumentError as exc:
                    raise exc if tool == "create_task" else InvalidArgumentError(f"tasks[{i}].{exc.message}") from None
            rows = conn.execute(store.INSERT_TASKS, values).all()
            tags = [
                {"task_pk": row.pk, "tag": tag, "owner_id": ws.key}
                for row, item in zip(rows, items, strict=True)
                for tag in item.tags
            ]
            if tags:
                conn.execute(store.INSERT_TAGS, tags)
            for row, item in zip(rows, items, strict=True):
                links.write_links(conn, ws.key, row.number, item.blocked_by or [], replace=False)
            touches = [Touch(row.number, "created", None, 1) for row in rows]
            titles = {row.number: row.title for row in rows}
            journal.add_touches(conn, ws, change_id, touches)
            journal.record(conn, ws, who, tool, touches, now, titles=titles, change_id=change_id)
            if key is not None:
                numbers = [row.number for row in rows]
                idempotency.remember(conn, ws, who.user_id, key, request_hash, numbers, now, change_id)
            return links.outs(conn, ws.key, rows, now), True, change_id

        tasks, created, change_id = self._db.run(create, write=True)
        fill(receipt, change_id)
        return tasks, created

    def _new_task(
        self, owner: str, number: int, item: TaskCreate, now: dt.datetime, *, created_by: str, assignee: str | None
    ) -> dict[str, Any]:
        return store.new_task(owner, number, item, now, created_by=created_by, assignee=assignee)

    def _check_room(self, conn: Connection, *, ws: Workspace, last_number: int | None = None, adding: int = 0) -> None:
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

    def _update(
        self, conn: Connection, ws: Workspace, who: Caller, task_id: int, changes: TaskUpdate, tool: str
    ) -> tuple[TaskOut, int | None]:
        now = self._clock()
        row, touch = self._apply(conn, ws, who, task_id, changes, now)
        task = links.out(conn, ws.key, row, now)
        if touch is None:
            return task, None
        task.completed_occurrence = touch.occurrence
        return task, journal.record(conn, ws, who, tool, [touch], now)

    def _apply(
        self,
        conn: Connection,
        ws: Workspace,
        who: Caller,
        task_id: int,
        changes: TaskUpdate,
        now: dt.datetime,
        *,
        deferred_cycles: list[tuple[int, list[int] | None]] | None = None,
    ) -> tuple[Row[Any], Touch | None]:
        """Apply one update on `conn`; the row after it and its journal touch (None: nothing changed).

        With `deferred_cycles`, the checks that depend on other tasks of a bulk call (blocker cycles,
        and that no repeating task blocks) are left to the caller, which runs them once every update is
        stored, so they see the final state: `(task, blockers)` is appended there instead, or
        `(task, None)` for a task that starts repeating (nothing may wait for it)."""
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
        if changes.blocked_by is not None:
            if deferred_cycles is None:
                links.check_blockers(conn, ws, row.number, changes.blocked_by)
            else:  # the blockers themselves now, the cycle on the final state
                if row.number in changes.blocked_by:
                    links.check_blockers(conn, ws, row.number, changes.blocked_by)  # names the self-reference
                links.check_blockers(conn, ws, None, changes.blocked_by, repeats=False)
                deferred_cycles.append((row.number, list(changes.blocked_by)))
            after["blocked_by"] = links.joined(changes.blocked_by)
        elif "blocked_by" in changes.clear:
            after["blocked_by"] = ""
        if changes.status is not None and changes.status != row.status:
            after["status"] = changes.status
            after["completed_at"] = now if changes.status == "completed" else None
        if changes.tags is not None:
            after["tags"] = "\n".join(changes.tags)
        if repeats.settle(after, repeat=changes.repeat, timezone=changes.timezone, clear=changes.clear):
            if deferred_cycles is None:
                links.check_not_blocking(conn, ws, row.number)
            else:
                deferred_cycles.append((row.number, None))
        occurrence = None
        if after["status"] == "completed" != before["status"] and after["repeat"] is not None:
            occurrence = repeats.complete(after, now)
        if after == before:
            return row, None  # nothing changed: no new version, no change
        if after["tags"] != before["tags"]:
            conn.execute(store.DELETE_TAGS, {"task_pk": row.pk})
            if changes.tags:
                conn.execute(
                    store.INSERT_TAGS, [{"task_pk": row.pk, "tag": tag, "owner_id": ws.key} for tag in changes.tags]
                )
        if after["blocked_by"] != before["blocked_by"]:
            links.write_links(conn, ws.key, row.number, links.stored(after["blocked_by"]))
        if after["status"] == "completed" != before["status"] or occurrence is not None:
            conn.execute(store.END_CLAIM, {"task_pk": row.pk})  # completing a task (or an occurrence) ends its claim
        old, new = journal.changed_fields(before, after)
        if occurrence is not None and occurrence["next_due"] is not None:
            old["occurrence"], new["occurrence"] = None, occurrence["due"]  # for the summary; undo ignores it
        after |= {"version": row.version + 1, "updated_at": now}
        updated = conn.execute(store.UPDATE_TASK, {"task_pk": row.pk, **after}).one()
        return updated, Touch(row.number, "fields", row.version, row.version + 1, old, new, occurrence=occurrence)

    def _delete(self, conn: Connection, ws: Workspace, who: Caller, task_id: int) -> tuple[int, int | None]:
        root = store.any_row(conn, ws, task_id, lock=True)
        ws.check_creator(who, root.number, root.created_by, "delete")
        if root.deleted_at is not None:
            return 0, None  # deleting a deleted task is a success that changes nothing
        params = {"owner": ws.key, "root": task_id}
        if ws.level != "admin":
            found = conn.execute(store.NOT_MINE_IN_SUBTREE, {**params, "user": who.user_id}).scalar()
            ws.check_creator(who, found, None, "delete")
        now = self._clock()
        change_id = journal.reserve(conn, ws)
        journal.journal_subtree(conn, store.SUBTREE, ws, change_id, now, task_id)
        count = conn.execute(store.DELETE_SUBTREE, {**params, "now": now}).rowcount
        touch = Touch(task_id, "deleted", root.version, root.version + 1, group_after=task_id)
        journal.record(conn, ws, who, "delete_task", [touch], now, change_id=change_id, task_count=count)
        return count, change_id

    def _restore(self, conn: Connection, ws: Workspace, who: Caller, task_id: int) -> tuple[TaskOut, int | None]:
        task = store.any_row(conn, ws, task_id, lock=True)
        ws.check_creator(who, task.number, task.created_by, "restore")
        if task.deleted_at is None:
            return links.out(conn, ws.key, task, self._clock()), None  # already live: a repeat
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
        self._check_room(conn, ws=ws)
        now, group = self._clock(), task.deleted_with
        change_id = journal.reserve(conn, ws)
        journal.journal_group(conn, ws, change_id, group)
        count = conn.execute(store.RESTORE_GROUP, {"owner": ws.key, "group": group, "now": now}).rowcount
        touch = Touch(group, "restored", None, 0, group_before=group)
        journal.record(conn, ws, who, "restore_task", [touch], now, change_id=change_id, task_count=count)
        return links.out(conn, ws.key, store.live_row(conn, ws, task_id), now), change_id
