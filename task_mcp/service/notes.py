"""Notes (DESIGN §10): append-only entries on a task, numbered per workspace, journaled as a
change that leaves the task's version alone. An undo marks a note removed; a redo brings it back."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Connection, Row, bindparam, func, insert, select, update

from task_mcp.dates import format_instant
from task_mcp.errors import InvalidArgumentError
from task_mcp.records import TASK_NOTES
from task_mcp.service.workspaces import Caller, Workspace

MAX_NOTES = 1000  # per task
SHOWN = 20  # newest notes get_task shows
CLIPPED = 500  # characters of each note shown

N = TASK_NOTES.c
_THIS_TASK = (N.owner_id == bindparam("owner"), N.number == bindparam("number"), N.removed.is_(False))
COUNT = select(func.count()).select_from(TASK_NOTES).where(*_THIS_TASK)
NEWEST = select(TASK_NOTES).where(*_THIS_TASK).order_by(N.note_id.desc()).limit(SHOWN)
LAST_ID = select(func.max(N.note_id)).where(N.owner_id == bindparam("owner"))
SET_REMOVED = (
    update(TASK_NOTES)
    .where(N.owner_id == bindparam("owner"), N.note_id == bindparam("note"))
    .values(removed=bindparam("removed"))
)


def add(conn: Connection, ws: Workspace, who: Caller, number: int, text: str, now: dt.datetime) -> int:
    """Append a note to task `number`; its note_id. Call after `journal.reserve`, whose counter lock
    serialises the numbering.

    Raises:
        InvalidArgumentError: the task already holds `MAX_NOTES` notes.
    """
    if conn.execute(COUNT, {"owner": ws.key, "number": number}).scalar_one() >= MAX_NOTES:
        raise InvalidArgumentError(
            f"Task {number} already holds {MAX_NOTES} notes, the most a task may hold; nothing was changed. "
            "Put the rest in the task's description, or in a new task."
        )
    note_id = (conn.execute(LAST_ID, {"owner": ws.key}).scalar() or 0) + 1
    values = {"owner_id": ws.key, "note_id": note_id, "number": number, "at": now, "text": text}
    values |= {"by_user": who.user_id, "by_name": who.name, "by_client": who.client, "removed": False}
    conn.execute(insert(TASK_NOTES), values)
    return int(note_id)


def set_removed(conn: Connection, ws: Workspace, note_id: int, removed: bool) -> None:
    conn.execute(SET_REMOVED, {"owner": ws.key, "note": note_id, "removed": removed})


def note_out(row: Row[Any]) -> dict[str, Any]:
    by = {"user_id": row.by_user} | {k: v for k, v in (("name", row.by_name), ("client", row.by_client)) if v}
    out: dict[str, Any] = {"note_id": row.note_id, "at": format_instant(row.at), "by": by}
    out["text"] = row.text[:CLIPPED]
    if len(row.text) > CLIPPED:
        out["truncated"] = True
    return out


def newest(conn: Connection, ws: Workspace, number: int) -> tuple[list[dict[str, Any]], int]:
    """The newest `SHOWN` notes of task `number`, newest first, and how many it holds."""
    params = {"owner": ws.key, "number": number}
    shown = [note_out(row) for row in conn.execute(NEWEST, params)]
    total = len(shown) if len(shown) < SHOWN else conn.execute(COUNT, params).scalar_one()
    return shown, int(total)
