"""The change journal (DESIGN §9): every call that changes something is one change, recorded in
the call's own transaction.

A change is a row of `CHANGES` (its `change_id`, increasing per workspace and taken from the
workspace's counter row, the time, the tool, who made it, a one-line `summary`) and one row of
`CHANGE_TASKS` per task it touched (a `Touch`): its kind (`created`, `fields`, `deleted`,
`restored`), the versions before and after, and only the fields it changed. The deletion state
has columns of its own, so a subtree delete journals its tasks with one INSERT ... SELECT.
`list_changes` reads it newest first; `undo.py` plays a change backwards.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, bindparam, func, insert, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite

import task_mcp.service.cursors as cursors
from task_mcp.dates import format_instant
from task_mcp.errors import InvalidArgumentError
from task_mcp.models import CHANGE_TASKS, CHANGES, TASK_COUNTERS, TASKS
from task_mcp.service.summary import clip, summarize
from task_mcp.service.workspaces import Caller, Workspace

SUMMARY_LENGTH = 160
MAX_TASK_IDS = 20  # task ids shown per change; `task_count` says how many there were
# The task columns a change may journal (the case-folded copies and the tag rows follow them).
JOURNALED = (
    "title",
    "description",
    "priority",
    "due_at",
    "due_date",
    "tags",
    "status",
    "completed_at",
    "parent_number",
    "assignee",
    "blocked_by",
    "repeat",
    "repeat_timezone",
    "repeat_start_at",
    "repeat_start_date",
)
_INSTANTS = frozenset({"due_at", "completed_at", "repeat_start_at"})
_DATES = frozenset({"due_date", "repeat_start_date"})

C, CT, T = CHANGES.c, CHANGE_TASKS.c, TASKS.c


@dataclass
class Receipt:
    """Filled by a write of `TaskService`: the `change_id` it recorded, or None when it changed
    nothing (a repeat, a no-op update) or replayed a key whose call recorded none."""

    change_id: int | None = None


@dataclass(frozen=True)
class Touch:
    """One task a change touched: the fields it changed (stored values), before and after."""

    number: int
    kind: str  # created, fields, deleted, restored
    version_before: int | None
    version_after: int
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    deleted_before: dt.datetime | None = None
    deleted_after: dt.datetime | None = None
    group_before: int | None = None
    group_after: int | None = None
    # Not stored: the {due, next_due} of an occurrence of a repeating task this change completed.
    occurrence: dict[str, str | None] | None = None

    def values(self, owner: str, change_id: int) -> dict[str, Any]:
        return {
            "owner_id": owner,
            "change_id": change_id,
            "number": self.number,
            "kind": self.kind,
            "version_before": self.version_before,
            "version_after": self.version_after,
            "before": encode(self.before),
            "after": encode(self.after),
            "deleted_before": self.deleted_before,
            "deleted_after": self.deleted_after,
            "group_before": self.group_before,
            "group_after": self.group_after,
        }


def touch_of(row: Any) -> Touch:
    """A `Touch` from a row of `CHANGE_TASKS`."""
    return Touch(
        row.number,
        row.kind,
        row.version_before,
        row.version_after,
        decode(row.before),
        decode(row.after),
        row.deleted_before,
        row.deleted_after,
        row.group_before,
        row.group_after,
    )


def encode(fields: dict[str, Any] | None) -> str | None:
    if fields is None:
        return None
    return json.dumps(
        {k: v.isoformat() if isinstance(v, dt.date) else v for k, v in fields.items()}, separators=(",", ":")
    )


def decode(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    fields: dict[str, Any] = json.loads(text)
    for name, value in fields.items():
        if value is not None and name in _INSTANTS:
            fields[name] = dt.datetime.fromisoformat(value)
        elif value is not None and name in _DATES:
            fields[name] = dt.date.fromisoformat(value)
    return fields


def changed_fields(before: dict[str, Any], after: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The journaled fields that differ, before and after."""
    names = [name for name in JOURNALED if before.get(name) != after.get(name)]
    return {n: before.get(n) for n in names}, {n: after.get(n) for n in names}


# --- recording ------------------------------------------------------------------------------------


def _reserve_statement(insert: Callable[[Any], Any]) -> Any:
    counter = TASK_COUNTERS.c
    return (
        insert(TASK_COUNTERS)
        .values(owner_id=bindparam("owner"), last_number=0, last_change=1)
        .on_conflict_do_update(index_elements=[counter.owner_id], set_={"last_change": counter.last_change + 1})
        .returning(counter.last_change)
    )


_RESERVE = {"postgresql": _reserve_statement(postgresql.insert), "sqlite": _reserve_statement(sqlite.insert)}
INSERT_CHANGE = insert(CHANGES)
INSERT_TOUCHES = insert(CHANGE_TASKS)


def reserve(conn: Connection, ws: Workspace) -> int:
    """The next change_id of the workspace; its counter row stays locked until the commit, so
    changes are numbered in the order they commit. Call it late in the transaction."""
    return int(conn.execute(_RESERVE[conn.dialect.name], {"owner": ws.key}).scalar_one())


def add_touches(conn: Connection, ws: Workspace, change_id: int, touches: Sequence[Touch]) -> None:
    """Write the touches of change `change_id` (`record` does, unless given a `change_id`)."""
    if touches:
        conn.execute(INSERT_TOUCHES, [t.values(ws.key, change_id) for t in touches])


def record(
    conn: Connection,
    ws: Workspace,
    who: Caller,
    tool: str,
    touches: Sequence[Touch],
    now: dt.datetime,
    *,
    titles: dict[int, str] | None = None,
    undoes: int | None = None,
    change_id: int | None = None,
    task_count: int | None = None,
) -> int:
    """Write one change (and its touches, unless they were written set-based under `change_id`)."""
    if change_id is None:
        change_id = reserve(conn, ws)
        add_touches(conn, ws, change_id, touches)
    summary = summarize(touches, titles or {}, task_count=task_count)
    if undoes is not None:
        summary = f"undo of change {undoes}: {summary}"
    conn.execute(
        INSERT_CHANGE,
        {
            "owner_id": ws.key,
            "change_id": change_id,
            "at": now,
            "tool": tool,
            "by_user": who.user_id,
            "by_name": who.name,
            "by_client": who.client,
            "summary": clip(summary, SUMMARY_LENGTH),
            "task_count": task_count if task_count is not None else len(touches),
            "undoes": undoes,
        },
    )
    if undoes is not None:
        conn.execute(MARK_UNDONE, {"owner": ws.key, "change": undoes, "by": change_id})
    return change_id


MARK_UNDONE = (
    update(CHANGES)
    .where(C.owner_id == bindparam("owner"), C.change_id == bindparam("change"))
    .values(undone_by=bindparam("by"))
)


def journal_subtree(conn: Connection, subtree: Any, ws: Workspace, change_id: int, now: dt.datetime, root: int) -> None:
    """Journal the deletion of the live tasks of `subtree` (a CTE of pk, number) in one statement,
    before they are deleted."""
    rows = select(
        T.owner_id,
        literal(change_id),
        T.number,
        literal("deleted"),
        T.version,
        T.version + 1,
        literal(now, CT.deleted_after.type),
        literal(root),
    ).where(T.pk.in_(select(subtree.c.pk)))
    columns = ["owner_id", "change_id", "number", "kind", "version_before", "version_after", "deleted_after"]
    conn.execute(
        insert(CHANGE_TASKS).from_select([*columns, "group_after"], rows),
        {"owner": ws.key, "root": root},
    )


def journal_group(conn: Connection, ws: Workspace, change_id: int, group: int) -> None:
    """Journal the restoring of the tasks deleted together as `group`, in one statement."""
    rows = select(
        T.owner_id,
        literal(change_id),
        T.number,
        literal("restored"),
        T.version,
        T.version + 1,
        T.deleted_at,
        T.deleted_with,
    ).where(T.owner_id == ws.key, T.deleted_with == group, T.deleted_at.is_not(None))
    columns = ["owner_id", "change_id", "number", "kind", "version_before", "version_after", "deleted_before"]
    conn.execute(insert(CHANGE_TASKS).from_select([*columns, "group_before"], rows))


# --- list_changes ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChangePage:
    changes: list[dict[str, Any]]
    next_cursor: str | None


def _cursor(change_id: int, fingerprint: str) -> str:
    return cursors.encode({"c": change_id, "f": fingerprint})


def _after(cursor: str | None, fingerprint: str) -> int | None:
    if cursor is None:
        return None
    bad = InvalidArgumentError(
        "cursor: not a next_cursor from this list of changes. Pass next_cursor unchanged, with the same "
        "task_id and by, or leave cursor out to start from the newest change."
    )
    change = cursors.decode(cursor, fingerprint, bad).get("c")
    if type(change) is not int or not 0 < change < 2**31:
        raise bad
    return change


def list_changes(
    conn: Connection,
    ws: Workspace,
    *,
    task_id: int | None,
    by: str | None,
    limit: int,
    cursor: str | None,
    since: dt.datetime,
) -> ChangePage:
    """One page of the workspace's changes, newest first (those within the history window)."""
    fingerprint = json.dumps([task_id, by])[:200]
    before = _after(cursor, fingerprint)
    stmt = select(CHANGES).where(C.owner_id == ws.key, C.at >= since)
    if task_id is not None:
        touched = select(CT.change_id).where(CT.owner_id == ws.key, CT.number == task_id)
        stmt = stmt.where(C.change_id.in_(touched))
    if by is not None:
        stmt = stmt.where(C.by_user == by)
    if before is not None:
        stmt = stmt.where(C.change_id < before)
    found = conn.execute(stmt.order_by(C.change_id.desc()).limit(limit + 1)).all()
    page = found[:limit]
    ids = [row.change_id for row in page]
    numbers: dict[int, list[int]] = {i: [] for i in ids}
    if ids:
        ranked = (
            select(
                CT.change_id,
                CT.number,
                func.row_number().over(partition_by=CT.change_id, order_by=CT.number).label("r"),
            )
            .where(CT.owner_id == ws.key, CT.change_id.in_(ids))
            .subquery()
        )
        shown = select(ranked.c.change_id, ranked.c.number).where(ranked.c.r <= MAX_TASK_IDS).order_by(ranked.c.number)
        for change_id, number in conn.execute(shown):
            numbers[change_id].append(number)
    changes = [_change_out(row, numbers[row.change_id]) for row in page]
    more = len(found) > limit
    return ChangePage(changes, _cursor(page[-1].change_id, fingerprint) if more else None)


def _change_out(row: Any, task_ids: list[int]) -> dict[str, Any]:
    by = {"user_id": row.by_user} | {k: v for k, v in (("name", row.by_name), ("client", row.by_client)) if v}
    out: dict[str, Any] = {
        "change_id": row.change_id,
        "at": format_instant(row.at),
        "tool": row.tool,
        "by": by,
        "task_ids": task_ids,
    }
    if row.task_count > len(task_ids):
        out["task_count"] = row.task_count
    out["summary"] = row.summary
    for name in ("undoes", "undone_by"):
        if getattr(row, name) is not None:
            out[name] = getattr(row, name)
    return out


CHANGE_BY_ID = select(CHANGES).where(C.owner_id == bindparam("owner"), C.change_id == bindparam("change"))
TOUCHES_OF = (
    select(CHANGE_TASKS)
    .where(CT.owner_id == bindparam("owner"), CT.change_id == bindparam("change"))
    .order_by(CT.number)
)
LATER_CHANGES = (
    select(C.change_id, C.undoes, C.undone_by)
    .where(
        C.owner_id == bindparam("owner"),
        C.change_id.in_(
            select(CT.change_id).where(
                CT.owner_id == bindparam("owner"),
                CT.number.in_(bindparam("numbers", expanding=True)),
                CT.change_id > bindparam("change"),
            )
        ),
    )
    .order_by(C.change_id.desc())
    .limit(1000)
)
