"""`undo_change` (DESIGN §9): put every task a change touched back to its state before the change,
as one new change that names the one it undoes, in one transaction.

A change can be undone while every task it touched is still at the version the change left: a
task changed since is a `conflict` naming the later changes to undo first. The state the undo
would produce must pass the rules a direct call would (a live parent, no parent cycle, a known
assignee, room in the workspace); a failure is a `conflict` naming the task and the rule. Undoing
an undo applies the undone change again (redo).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, Row, bindparam, select, update

import task_mcp.service.journal as journal
import task_mcp.service.links as links
import task_mcp.service.notes as notes
import task_mcp.service.store as store
from task_mcp.errors import ConflictError, ForbiddenError, InvalidArgumentError, NotFoundError
from task_mcp.models import TASKS, fold
from task_mcp.service.journal import Touch
from task_mcp.service.workspaces import MEMBER, Caller, Workspace

T = TASKS.c
TASKS_LOCKED = select(TASKS).where(store.MINE, T.number.in_(bindparam("numbers", expanding=True))).with_for_update()
LIVE_CHILDREN = (
    select(T.number, T.parent_number)
    .where(
        store.MINE,
        T.parent_number.in_(bindparam("parents", expanding=True)),
        T.deleted_at.is_(None),
        T.number.not_in(bindparam("numbers", expanding=True)),
    )
    .order_by(T.number)
    .limit(1)
)
SET_DELETION = (
    update(TASKS)
    .where(T.pk == bindparam("task_pk"))
    .values(
        deleted_at=bindparam("deleted_at"),
        deleted_with=bindparam("deleted_with"),
        version=T.version + 1,
        updated_at=bindparam("now"),
    )
)


def undo_change(
    conn: Connection,
    ws: Workspace,
    who: Caller,
    change_id: int,
    now: dt.datetime,
    *,
    history: dt.timedelta,
    check_room: Callable[[Connection], None],
) -> int:
    """Undo change `change_id`; returns the change_id of the undo.

    Raises:
        NotFoundError: no such change within the history window, or one of its tasks was purged.
        ForbiddenError: a member undoing someone else's change.
        ConflictError: already undone; a task changed since; the state it would produce breaks a rule.
        InvalidArgumentError: restoring tasks past the workspace's task limit.
    """
    params = {"owner": ws.key, "change": change_id}
    change = conn.execute(journal.CHANGE_BY_ID, params).first()
    gone = NotFoundError(
        f"No change {change_id} in {ws.place} within the last {history.days} days (older changes are forgotten). "
        f"Call list_changes{ws.hint} to see the changes you can undo."
    )
    if change is None or change.at < now - history:
        raise gone
    if ws.level != "admin" and change.by_user != who.user_id:
        raise ForbiddenError(
            f"Change {change_id} in workspace '{ws.label}' was made by someone else, and your role there is "
            f"{ws.role!r}: a member may undo only changes they made; admins and owners any change. Nothing was "
            "changed; ask an admin or owner of the organization."
        )
    if change.undone_by is not None:
        raise ConflictError(
            f"Change {change_id} was already undone by change {change.undone_by}; nothing was changed. To apply "
            f"it again, call undo_change{ws.hint} with change_id {change.undone_by}."
        )
    touches = [journal.touch_of(row) for row in conn.execute(journal.TOUCHES_OF, params)]
    numbers = [t.number for t in touches]
    tasks = {row.number: row for row in conn.execute(TASKS_LOCKED, {"owner": ws.key, "numbers": numbers})}
    if len(touches) < change.task_count or len(tasks) < len(touches):
        raise NotFoundError(
            f"Change {change_id} touched tasks that have since been purged from the trash, so it can no longer be "
            f"undone. Call list_changes{ws.hint} to see the changes you can undo."
        )
    if any(t.kind == "claimed" for t in touches):
        raise InvalidArgumentError(
            f"Change {change_id} is a claim, and claims cannot be undone; nothing was changed. Call "
            f"release_task{ws.hint} to end it."
        )
    if all(t.kind == "released" for t in touches):
        raise InvalidArgumentError(
            f"Change {change_id} released a claim and changed nothing else, so there is nothing to undo (a claim "
            f"stays released). Call claim_task{ws.hint} to claim the task again."
        )
    _check_versions(conn, ws, change_id, touches, tasks)
    undo = _Undo(conn, ws, who, tasks, now, check_room)
    for kind in ("created", "fields", "deleted", "restored"):
        mine = [t for t in touches if t.kind == kind]
        if mine:
            getattr(undo, f"undo_{kind}")(mine)
    return undo.record(change_id, change.undoes)


def _only_note(t: Touch) -> bool:
    return t.after is not None and set(t.after) == {"note"}


def _check_versions(
    conn: Connection, ws: Workspace, change_id: int, touches: list[Touch], tasks: dict[int, Row[Any]]
) -> None:
    # A task moved on when its version is no longer the one the change left, unless every later
    # change touching it was undone again (a change and its undo cancel out; a redo does not).
    # A note leaves the version alone, and undoing one ignores it.
    moved = [t.number for t in touches if tasks[t.number].version != t.version_after and not _only_note(t)]
    if not moved:
        return
    params = {"owner": ws.key, "change": change_id, "numbers": moved}
    later = conn.execute(journal.LATER_CHANGES, params).all()
    ids = {row.change_id for row in later}
    standing = [row.change_id for row in later if row.undone_by not in ids and row.undoes not in ids]
    if later and not standing:
        return
    which = ", ".join(f"#{n}" for n in moved[:5]) + (" and others" if len(moved) > 5 else "")
    if standing:
        listed = ", ".join(str(c) for c in standing[:20])
        raise ConflictError(
            f"Task {which} changed after change {change_id}, so undoing it would overwrite later work; nothing was "
            f"changed. Later changes touching it, newest first: {listed}. Undo those first (call undo_change{ws.hint} "
            f"with each change_id in that order), then undo change {change_id}."
        )
    raise ConflictError(
        f"Task {which} changed after change {change_id} in a way the journal no longer holds, so it cannot be "
        f"undone; nothing was changed. Call get_task{ws.hint} and change it back with update_task instead."
    )


class _Undo:
    """The new change being built: each touched kind played backwards, with the rules re-checked."""

    def __init__(
        self,
        conn: Connection,
        ws: Workspace,
        who: Caller,
        tasks: dict[int, Row[Any]],
        now: dt.datetime,
        check_room: Callable[[Connection], None],
    ) -> None:
        self.conn, self.ws, self.who, self.tasks, self.now = conn, ws, who, tasks, now
        self.check_room = check_room
        self.change_id = journal.reserve(conn, ws)
        self.touches: list[Touch] = []

    def _conflict(self, number: int, rule: str) -> ConflictError:
        return ConflictError(f"Undoing it would break a rule for task {number}: {rule} Nothing was changed.")

    def undo_created(self, touches: list[Touch]) -> None:
        # Each created task is deleted with its live subtree (tasks added under it since included).
        for touch in touches:
            row = self.conn.execute(store.TASK_BY_NUMBER, {"owner": self.ws.key, "number": touch.number}).one()
            if row.deleted_at is not None:
                continue  # already deleted as part of an earlier created task's subtree
            params = {"owner": self.ws.key, "root": touch.number, "now": self.now}
            journal.journal_subtree(self.conn, store.SUBTREE, self.ws, self.change_id, self.now, touch.number)
            self.conn.execute(store.DELETE_SUBTREE, params)

    def undo_restored(self, touches: list[Touch]) -> None:
        numbers = [t.number for t in touches]
        child = self.conn.execute(LIVE_CHILDREN, {"owner": self.ws.key, "parents": numbers, "numbers": numbers}).first()
        if child is not None:
            raise self._conflict(
                child.number,
                f"it is a live subtask of task {child.parent_number}, which the undo would delete again. Delete task "
                f"{child.number} or move it to another parent first.",
            )
        for t in touches:
            self._set_deletion(t, t.deleted_before, t.group_before, "deleted")

    def undo_deleted(self, touches: list[Touch]) -> None:
        numbers = {t.number for t in touches}
        for t in touches:
            parent = self.tasks[t.number].parent_number
            if parent is None or parent in numbers:
                continue
            found = self.conn.execute(store.TASK_BY_NUMBER, {"owner": self.ws.key, "number": parent}).first()
            if found is not None and found.deleted_at is not None:
                raise self._conflict(
                    t.number,
                    f"its parent, task {parent}, is deleted, and a subtask cannot be live under a deleted parent. "
                    f"Call restore_task{self.ws.hint} with task_id {parent} first.",
                )
        self.check_room(self.conn)
        for t in touches:
            self._set_deletion(t, t.deleted_before, t.group_before, "restored")

    def _set_deletion(self, t: Touch, deleted_at: dt.datetime | None, group: int | None, kind: str) -> None:
        row = self.tasks[t.number]
        values = {"task_pk": row.pk, "deleted_at": deleted_at, "deleted_with": group, "now": self.now}
        self.conn.execute(SET_DELETION, values)
        self.touches.append(
            Touch(
                t.number,
                kind,
                row.version,
                row.version + 1,
                deleted_before=row.deleted_at,
                deleted_after=deleted_at,
                group_before=row.deleted_with,
                group_after=group,
            )
        )

    def undo_fields(self, touches: list[Touch]) -> None:
        for t in touches:
            assert t.before is not None and t.after is not None
            row = self.tasks[t.number]
            target = dict(t.before)
            target.pop("occurrence", None)  # a marker for the summary: the due fields carry the occurrence
            note_before, note_after = target.pop("note", None), t.after.get("note")
            if note_after is not None:  # a note added: removed (and a removal undone: brought back)
                notes.set_removed(self.conn, self.ws, note_after, True)
            if note_before is not None:
                notes.set_removed(self.conn, self.ws, note_before, False)
            if not target:
                note = {"note": note_before}, {"note": note_after}
                self.touches.append(Touch(t.number, "fields", row.version, row.version, note[1], note[0]))
                continue
            self._check_fields(row, target)
            values = {name: row._mapping[name] for name in store.UPDATABLE} | target
            values |= {"title_folded": fold(values["title"]), "description_folded": fold(values["description"])}
            if "tags" in target:
                self.conn.execute(store.DELETE_TAGS, {"task_pk": row.pk})
                tags = [tag for tag in target["tags"].split("\n") if tag]
                if tags:
                    rows = [{"task_pk": row.pk, "tag": tag, "owner_id": self.ws.key} for tag in tags]
                    self.conn.execute(store.INSERT_TAGS, rows)
            if "blocked_by" in target:
                links.write_links(self.conn, self.ws.key, row.number, links.stored(target["blocked_by"]))
            values |= {"task_pk": row.pk, "version": row.version + 1, "updated_at": self.now}
            self.conn.execute(store.UPDATE_TASK, values)
            current: dict[str, Any] = {name: row._mapping[name] for name in target}
            new = dict(target)
            if "note" in t.after:
                current["note"], new["note"] = note_after, note_before
            self.touches.append(Touch(t.number, "fields", row.version, row.version + 1, current, new))

    def _check_fields(self, row: Row[Any], target: dict[str, Any]) -> None:
        parent = target.get("parent_number")
        if parent is not None:
            found = self.conn.execute(store.TASK_BY_NUMBER, {"owner": self.ws.key, "number": parent}).first()
            if found is None or found.deleted_at is not None:
                raise self._conflict(
                    row.number,
                    f"its old parent, task {parent}, is deleted or purged, and a parent must be a live task. "
                    f"Call restore_task{self.ws.hint} with task_id {parent} first.",
                )
            above = {"owner": self.ws.key, "parent": parent, "task": row.number}
            if self.conn.execute(store.IS_ABOVE, above).first() is not None:
                raise self._conflict(
                    row.number,
                    f"task {parent} is now inside its subtree, so making it the parent again would create a "
                    "parent cycle. Move one of them with update_task first.",
                )
        blockers = target.get("blocked_by")
        if blockers:
            try:
                links.check_blockers(self.conn, self.ws, row.number, links.stored(blockers))
            except (InvalidArgumentError, NotFoundError) as exc:
                raise self._conflict(row.number, f"its old blocked_by breaks a rule: {exc.message}") from None
        if target.get("repeat") is not None and row.repeat is None:
            try:
                links.check_not_blocking(self.conn, self.ws, row.number)
            except InvalidArgumentError as exc:
                raise self._conflict(row.number, f"its old repeat breaks a rule: {exc.message}") from None
        assignee = target.get("assignee")
        known = assignee is None or self.ws.personal
        if not known and self.conn.execute(MEMBER, {"ws": self.ws.key, "who": assignee}).first() is None:
            raise self._conflict(
                row.number,
                f"its old assignee '{assignee}' is no longer a known member of {self.ws.place}, and an "
                f"assignee must be one. Call list_workspaces{self.ws.hint} to see its members.",
            )

    def record(self, undone: int, undone_undoes: int | None) -> int:
        if self.touches:
            rows = [t.values(self.ws.key, self.change_id) for t in self.touches]
            self.conn.execute(journal.INSERT_TOUCHES, rows)
        params = {"owner": self.ws.key, "change": self.change_id}
        touches = [journal.touch_of(row) for row in self.conn.execute(journal.TOUCHES_OF, params)]
        journal.record(
            self.conn, self.ws, self.who, "undo_change", touches, self.now, undoes=undone, change_id=self.change_id
        )
        if undone_undoes is not None:  # a redo: the change undone before is applied again
            self.conn.execute(journal.MARK_UNDONE, {"owner": self.ws.key, "change": undone_undoes, "by": None})
        return self.change_id
