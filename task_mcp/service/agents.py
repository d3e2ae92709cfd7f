"""Agent coordination (DESIGN §10): claims with leases, notes, and bulk updates with a dry run.

`AgentTasks` is the part of `TaskService` behind `claim_task`, `release_task`, `add_note` and
`update_tasks`. A claim lives in four columns of the task (`store.CLAIM`), is live while
`claim_until` is in the future, and never bumps `version`; taking a task without a `task_id` is a
conditional UPDATE of the first ready task (PostgreSQL also skips rows another claimer holds
locked), so two claimers never get the same task.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import Connection, Row, bindparam, or_, update

import task_mcp.service.journal as journal
import task_mcp.service.links as links
import task_mcp.service.notes as notes
import task_mcp.service.pages as pages
import task_mcp.service.repeats as repeats
import task_mcp.service.store as store
from task_mcp.dates import format_instant
from task_mcp.errors import ConflictError, ForbiddenError, InvalidArgumentError, TaskMcpError
from task_mcp.models import TASKS, TaskOut, TaskQuery, TaskUpdate
from task_mcp.service.journal import Receipt, Touch
from task_mcp.service.listing import TaskList, ready_key
from task_mcp.service.workspaces import Caller, Workspace
from task_mcp.service.writes import TaskWrites, fill

T = TASKS.c
TAKE = (
    update(TASKS)
    .where(T.pk == bindparam("task_pk"), or_(T.claim_until.is_(None), T.claim_until <= bindparam("now")))
    .values(
        claim_id=bindparam("claim_id"),
        claim_user=bindparam("user"),
        claim_client=bindparam("client"),
        claim_until=bindparam("until"),
    )
    .returning(*T)
)
RENEW = update(TASKS).where(T.pk == bindparam("task_pk")).values(claim_until=bindparam("until")).returning(*T)
PICK_ATTEMPTS = 20


@dataclass(frozen=True)
class Claimed:
    """What `claim_task` answers: the task and its claim (with the claim_id), or both None."""

    task: TaskOut | None
    claim: dict[str, Any] | None


@dataclass(frozen=True)
class Noted:
    task_id: int
    note: dict[str, Any]


class _DryRun(TaskMcpError):
    """Carries a dry run's answer out of its transaction, which is then rolled back."""

    def __init__(self, answer: list[TaskOut]) -> None:
        super().__init__("dry run")
        self.answer = answer


def _holder(row: Row[Any]) -> str:
    return str(row.claim_user) + (f" via {row.claim_client}" if row.claim_client else "")


class AgentTasks(TaskWrites):
    def claim_task(
        self,
        caller: Caller | str,
        task_id: int | None = None,
        *,
        claim_id: str | None = None,
        lease_seconds: int = 1800,
        query: TaskQuery | None = None,
        workspace: str | None = None,
        receipt: Receipt | None = None,
    ) -> Claimed:
        """Claim task `task_id` (or renew the claim `claim_id`), or without `task_id` the first ready
        task matching `query`'s filters in claim order; `Claimed(None, None)` when none is ready.

        Raises:
            ConflictError: the task is completed, blocked, or under another live claim.
            NotFoundError, ForbiddenError, UnavailableError: as `update_task`.
        """
        if not 60 <= lease_seconds <= 86_400:
            raise InvalidArgumentError("lease_seconds: give between 60 and 86400 seconds.")
        who = Caller.of(caller)
        ws = self.workspace(who, workspace, "write")
        lease = dt.timedelta(seconds=lease_seconds)

        def run(conn: Connection) -> tuple[Claimed, int | None]:
            now = self._clock()
            if task_id is None:
                return self._claim_next(conn, ws, who, query or TaskQuery(), now, lease)
            return self._claim_one(conn, ws, who, task_id, claim_id, now, lease)

        claimed, change_id = self._db.run(run, write=True)
        fill(receipt, change_id)
        return claimed

    def _claim_one(
        self,
        conn: Connection,
        ws: Workspace,
        who: Caller,
        task_id: int,
        claim_id: str | None,
        now: dt.datetime,
        lease: dt.timedelta,
    ) -> tuple[Claimed, int | None]:
        row = store.live_row(conn, ws, task_id, lock=True)
        live = row.claim_until is not None and row.claim_until > now
        if claim_id is not None and row.claim_id == claim_id and live:  # a renewal: not journaled
            renewed = conn.execute(RENEW, {"task_pk": row.pk, "until": now + lease}).one()
            return self._claimed(conn, ws, renewed, now), None
        if row.status != "open":
            raise ConflictError(
                f"Task {task_id} is completed, so it cannot be claimed. Call update_task{ws.hint} with status "
                "'open' to reopen it, or claim_task without task_id to take the next ready task."
            )
        # `blocked_by` names every stored link (and perhaps purged blockers): empty, there is none to read.
        blockers = links.blockers_of(conn, ws.key, [row.number] if row.blocked_by else [])
        open_blockers = [n for n, is_open in blockers.get(row.number, []) if is_open]
        if open_blockers:
            named = ", ".join(f"#{n}" for n in open_blockers)
            raise ConflictError(
                f"Task {task_id} is blocked by {named}, still open. Complete those first, or call claim_task{ws.hint} "
                "without task_id to take a ready task."
            )
        if live:
            wrong = " The claim_id given is not that claim's." if claim_id is not None else ""
            raise ConflictError(
                f"Task {task_id} is claimed by {_holder(row)} until {format_instant(row.claim_until)}.{wrong} Call "
                f"claim_task{ws.hint} without task_id to take another ready task, or wait until the claim ends."
            )
        taken = self._take(conn, ws, who, row, now, lease)
        assert taken is not None  # the row is locked and its claim is not live
        return taken

    def _claim_next(
        self, conn: Connection, ws: Workspace, who: Caller, query: TaskQuery, now: dt.datetime, lease: dt.timedelta
    ) -> tuple[Claimed, int | None]:
        assignee = self.members.assignee_filter(conn, ws, who, query.assignee)
        ready = query.model_copy(update={"ready": True, "status": "open"})
        picking = TaskList(conn, ws, ready, now, assignee=assignee)
        # On PostgreSQL another claimer's candidate stays locked until it commits: take the next one.
        skip = conn.dialect.name == "postgresql"
        if picking.shape == "ready":  # nothing but readiness asked for: statements built once
            streams, params = pages.ready_firsts(skip), {"owner": ws.key, "now": now}
        else:
            streams, params = tuple(s.limit(1) for s in pages.ready_streams(picking.filters)), {}
            if skip:
                streams = tuple(s.with_for_update(skip_locked=True, of=TASKS) for s in streams)
        for _ in range(PICK_ATTEMPTS):
            found = [row for s in streams for row in conn.execute(s, params).all()]
            if not found:
                return Claimed(None, None), None
            row = min(found, key=ready_key)
            taken = self._take(conn, ws, who, row, now, lease)
            if taken is not None:
                return taken
        raise ConflictError("Every ready task was being claimed by others at the same moment; call claim_task again.")

    def _take(
        self, conn: Connection, ws: Workspace, who: Caller, row: Row[Any], now: dt.datetime, lease: dt.timedelta
    ) -> tuple[Claimed, int | None] | None:
        claim_id = secrets.token_urlsafe(24)
        params = {"task_pk": row.pk, "now": now, "claim_id": claim_id, "user": who.user_id, "client": who.client}
        taken = conn.execute(TAKE, {**params, "until": now + lease}).first()
        if taken is None:
            return None  # another claimer was first
        touch = Touch(row.number, "claimed", row.version, row.version)
        change_id = journal.record(conn, ws, who, "claim_task", [touch], now)
        return self._claimed(conn, ws, taken, now), change_id

    def _claimed(self, conn: Connection, ws: Workspace, row: Row[Any], now: dt.datetime) -> Claimed:
        task = links.out(conn, ws.key, row, now)
        assert task.claim is not None
        return Claimed(task, {"claim_id": row.claim_id, **task.claim})

    def release_task(
        self,
        caller: Caller | str,
        task_id: int,
        *,
        claim_id: str | None = None,
        outcome: Literal["released", "completed"] = "released",
        note: str | None = None,
        workspace: str | None = None,
        receipt: Receipt | None = None,
    ) -> TaskOut:
        """End the claim on `task_id`; `outcome` "completed" completes the task and `note` adds a
        note, in the same change. Without `claim_id`: the holder's own user, or an admin or owner.

        Raises:
            ConflictError: a wrong or expired claim_id, or no live claim.
            ForbiddenError: without claim_id, a member who does not hold the claim.
            NotFoundError, UnavailableError: as `update_task`.
        """
        who = Caller.of(caller)
        ws = self.workspace(who, workspace, "write")

        def run(conn: Connection) -> tuple[TaskOut, int | None]:
            now = self._clock()
            row = store.live_row(conn, ws, task_id, lock=True)
            live = row.claim_until is not None and row.claim_until > now
            if claim_id is not None and (not live or row.claim_id != claim_id):
                raise ConflictError(
                    f"claim_id does not hold a live claim on task {task_id} (wrong, released or expired); nothing "
                    f"was changed. Call get_task{ws.hint} to see its claim, or claim_task to claim it again."
                )
            if claim_id is None and not live:
                raise ConflictError(f"Task {task_id} has no live claim to release; nothing was changed.")
            if claim_id is None and row.claim_user != who.user_id and ws.level != "admin":
                raise ForbiddenError(
                    f"Task {task_id} is claimed by someone else, and your role in workspace '{ws.label}' is "
                    f"{ws.role!r}: without its claim_id only the holder, an admin or an owner may release it."
                )
            conn.execute(store.END_CLAIM, {"task_pk": row.pk})
            before: dict[str, Any] = {}
            after: dict[str, Any] = {}
            version = row.version
            occurrence = None
            if outcome == "completed" and row.status != "completed":
                stored = {name: row._mapping[name] for name in store.UPDATABLE}
                values = stored | {"status": "completed", "completed_at": now}
                if values["repeat"] is not None:
                    occurrence = repeats.complete(values, now)
                before, after = journal.changed_fields(stored, values)
                if occurrence is not None and occurrence["next_due"] is not None:
                    before["occurrence"], after["occurrence"] = None, occurrence["due"]
                version += 1
                conn.execute(store.UPDATE_TASK, {"task_pk": row.pk, **values, "version": version, "updated_at": now})
            change_id = journal.reserve(conn, ws)
            if note is not None:
                before["note"], after["note"] = None, notes.add(conn, ws, who, row.number, note, now)
            if after:
                touch = Touch(row.number, "fields", row.version, version, before, after)
            else:
                touch = Touch(row.number, "released", row.version, version)
            conn.execute(journal.INSERT_TOUCHES, [touch.values(ws.key, change_id)])
            journal.record(conn, ws, who, "release_task", [touch], now, change_id=change_id)
            task = links.out(conn, ws.key, store.live_row(conn, ws, task_id), now)
            task.completed_occurrence = occurrence
            return task, change_id

        task, change_id = self._db.run(run, write=True)
        fill(receipt, change_id)
        return task

    def add_note(
        self,
        caller: Caller | str,
        task_id: int,
        text: str,
        *,
        workspace: str | None = None,
        receipt: Receipt | None = None,
    ) -> Noted:
        """Append a note to the task; a journaled change that leaves its version alone.

        Raises:
            InvalidArgumentError: the task already holds 1,000 notes.
            NotFoundError, ForbiddenError, UnavailableError: as `update_task`.
        """
        who = Caller.of(caller)
        ws = self.workspace(who, workspace, "write")

        def run(conn: Connection) -> tuple[Noted, int]:
            now = self._clock()
            row = store.live_row(conn, ws, task_id, lock=True)
            change_id = journal.reserve(conn, ws)
            note_id = notes.add(conn, ws, who, row.number, text, now)
            touch = Touch(row.number, "fields", row.version, row.version, {"note": None}, {"note": note_id})
            conn.execute(journal.INSERT_TOUCHES, [touch.values(ws.key, change_id)])
            journal.record(conn, ws, who, "add_note", [touch], now, change_id=change_id)
            by = {"user_id": who.user_id} | {k: v for k, v in (("name", who.name), ("client", who.client)) if v}
            shown = {"note_id": note_id, "at": format_instant(now), "by": by, "text": text[: notes.CLIPPED]}
            return Noted(row.number, shown | ({"truncated": True} if len(text) > notes.CLIPPED else {})), change_id

        noted, change_id = self._db.run(run, write=True)
        fill(receipt, change_id)
        return noted

    def update_tasks(
        self,
        caller: Caller | str,
        updates: Sequence[tuple[int, TaskUpdate]],
        *,
        dry_run: bool = False,
        workspace: str | None = None,
        receipt: Receipt | None = None,
    ) -> list[TaskOut]:
        """Apply 1-100 updates, all or nothing, as one change; each item's rules are checked as it
        applies, and those linking tasks (blocker cycles, repeating blockers) once every item is
        stored, so on the final state. `dry_run`
        answers the same and changes nothing (the transaction is rolled back).

        Raises:
            InvalidArgumentError: not 1-100 updates, the same task twice, or an item's own argument error.
            NotFoundError, ForbiddenError, ConflictError: an item's own failure, naming the item.
            UnavailableError: the database stayed busy or unreachable; nothing was changed.
        """
        if not 1 <= len(updates) <= 100:
            raise InvalidArgumentError("updates: give between 1 and 100 updates.")
        seen: dict[int, int] = {}
        for i, (task_id, changes) in enumerate(updates):
            if task_id in seen:
                raise InvalidArgumentError(
                    f"updates[{i}] (task {task_id}): task {task_id} is already updates[{seen[task_id]}]; merge them "
                    "into one item."
                )
            seen[task_id] = i
            both = [name for name in changes.clear if getattr(changes, name) is not None]
            if both:
                raise InvalidArgumentError(f"updates[{i}] (task {task_id}): {both[0]} is both set and cleared.")
        who = Caller.of(caller)
        ws = self.workspace(who, workspace, "write")

        def run(conn: Connection) -> tuple[list[TaskOut], int | None]:
            now = self._clock()
            rows, touches = [], []
            occurrences: list[dict[str, str | None] | None] = []
            deferred: list[tuple[int, list[int] | None]] = []  # links and repeats: checked on the final state
            for i, (task_id, changes) in enumerate(updates):
                try:
                    row, touch = self._apply(conn, ws, who, task_id, changes, now, deferred_cycles=deferred)
                except TaskMcpError as exc:
                    raise type(exc)(f"updates[{i}] (task {task_id}): {exc.message}") from None
                rows.append(row)
                occurrences.append(touch.occurrence if touch is not None else None)
                if touch is not None:
                    touches.append(touch)
            for number, blockers in deferred:
                try:
                    if blockers is None:  # it starts repeating: nothing may wait for it
                        links.check_not_blocking(conn, ws, number)
                    else:
                        links.check_blockers(conn, ws, number, blockers)
                except TaskMcpError as exc:
                    i = seen[number]
                    raise type(exc)(f"updates[{i}] (task {number}): {exc.message}") from None
            tasks = links.outs(conn, ws.key, rows, now)
            for task, occurrence in zip(tasks, occurrences, strict=True):
                task.completed_occurrence = occurrence
            if dry_run:
                raise _DryRun(tasks)
            return tasks, journal.record(conn, ws, who, "update_tasks", touches, now) if touches else None

        try:
            tasks, change_id = self._db.run(run, write=True)
        except _DryRun as done:
            return done.answer
        fill(receipt, change_id)
        return tasks
