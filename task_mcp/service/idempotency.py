"""Idempotency keys: one namespace per workspace and caller, across `create_task` and
`create_tasks`, kept at least `IDEMPOTENCY_TTL`. A replay answers the tasks first created, in
their current state; the same key with other arguments is a conflict.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Sequence

from sqlalchemy import Connection

import task_mcp.service.links as links
import task_mcp.service.store as store
from task_mcp.errors import ConflictError
from task_mcp.models import TaskCreate, TaskOut
from task_mcp.service.housekeeping import IDEMPOTENCY_TTL
from task_mcp.service.workspaces import Workspace


def request_hash(tool: str, items: Sequence[TaskCreate]) -> str:
    """The tool's name and arguments, hashed: what a replay must repeat exactly."""
    payload = json.dumps([tool, [item.model_dump(mode="json") for item in items]], sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def replay(
    conn: Connection, ws: Workspace, user_id: str, key: str, hashed: str, now: dt.datetime
) -> tuple[list[TaskOut], int | None] | None:
    """The tasks `key` created and the change_id of that call, or None when it is new (or expired, and then forgotten).

    Raises:
        ConflictError: the key was used with other arguments, or one of its tasks was deleted since.
    """
    this_key = {"owner": ws.key, "user": user_id, "key": key}
    found = conn.execute(store.KEY_BY_ID, this_key).first()
    if found is None or found.created_at < now - IDEMPOTENCY_TTL:
        if found is not None:
            conn.execute(store.DELETE_KEY, this_key)
        return None
    if found.request_hash != hashed:
        raise ConflictError(
            f"idempotency_key '{key}' was already used with other arguments. "
            "Use a new key for a different request, or resend the original arguments."
        )
    numbers = [int(n) for n in found.numbers.split(",")]
    tasks = {row.number: row for row in conn.execute(store.TASKS_BY_NUMBERS, {"owner": ws.key, "numbers": numbers})}
    for number in numbers:
        task = tasks.get(number)
        if task is None or task.deleted_at is not None:
            raise ConflictError(
                f"idempotency_key '{key}' created task {number}, which has since been deleted. "
                f"Call restore_task{ws.hint} with task_id {number} to bring it back, or use a new key."
            )
    return links.outs(conn, ws.key, [tasks[n] for n in numbers], now), found.change_id


def remember(
    conn: Connection,
    ws: Workspace,
    user_id: str,
    key: str,
    hashed: str,
    numbers: list[int],
    now: dt.datetime,
    change_id: int,
) -> None:
    """Keep `key` for the tasks just created (a concurrent twin fails on the key and replays)."""
    values = {"owner_id": ws.key, "user_id": user_id, "key": key, "request_hash": hashed, "created_at": now}
    values["change_id"] = change_id
    conn.execute(store.INSERT_KEY, {**values, "numbers": ",".join(str(n) for n in numbers)})
