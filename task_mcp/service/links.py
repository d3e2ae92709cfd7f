"""Blocker links (DESIGN §10): which tasks must be completed before a task, the cycle check, and
the shape of a task with its live blockers and live claim.

Task X blocked by Y is a row (X, Y) of `TASK_LINKS`; `tasks.blocked_by` mirrors X's list for output
and the journal. The cycle check walks every stored link with one recursive CTE.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Row,
    and_,
    bindparam,
    delete,
    exists,
    func,
    insert,
    not_,
    or_,
    select,
    union,
)

from task_mcp.errors import InvalidArgumentError, NotFoundError
from task_mcp.models import TASKS, TaskOut, task_out
from task_mcp.records import TASK_LINKS
from task_mcp.service.workspaces import Workspace

T, L = TASKS.c, TASK_LINKS.c
BLOCKER = TASKS.alias("blocker")
B = BLOCKER.c

LIVE_BLOCKERS = (
    select(L.number, L.blocker, B.status)
    .join(BLOCKER, and_(B.owner_id == L.owner_id, B.number == L.blocker))
    .where(
        L.owner_id == bindparam("owner"),
        L.number.in_(bindparam("numbers", expanding=True)),
        B.deleted_at.is_(None),
    )
    .order_by(L.number, L.blocker)
)
DELETE_LINKS = delete(TASK_LINKS).where(L.owner_id == bindparam("owner"), L.number == bindparam("number"))
INSERT_LINKS = insert(TASK_LINKS)
TASKS_NAMED = select(T.number, T.deleted_at, T.repeat).where(
    T.owner_id == bindparam("owner"), T.number.in_(bindparam("numbers", expanding=True))
)


def _reach_cte() -> Any:
    # Every task the given ones wait for, directly or not, over every stored link; UNION ends on a cycle.
    start = select(L.blocker.label("n")).where(
        L.owner_id == bindparam("owner"), L.number.in_(bindparam("starts", expanding=True))
    )
    reach = start.cte("reach", recursive=True, nesting=True)
    step = TASK_LINKS.alias("step")
    return reach.union(select(step.c.blocker).where(step.c.owner_id == bindparam("owner"), step.c.number == reach.c.n))


REACH = _reach_cte()
REACHED = select(REACH.c.n)
LINKS_AMONG = select(L.number, L.blocker).where(
    L.owner_id == bindparam("owner"), L.number.in_(bindparam("numbers", expanding=True))
)


def _open_blocker() -> ColumnElement[bool]:
    """The blocker a row of `TASK_LINKS` names is open and live: one lookup by its number."""
    return exists(
        select(B.number).where(
            B.owner_id == L.owner_id, B.number == L.blocker, B.status == "open", B.deleted_at.is_(None)
        )
    )


def blocked_condition() -> ColumnElement[bool]:
    """A task of `TASKS` has an open live blocker."""
    # Nested, so the task's own links (a range of the primary key) drive: written as a join,
    # SQLite may read every open task of the workspace for each candidate.
    return exists(select(L.blocker).where(L.owner_id == T.owner_id, L.number == T.number, _open_blocker()))


_NOT_BLOCKED = not_(blocked_condition())  # built once: it is the same in every ready list


def ready_condition(now: dt.datetime | ColumnElement[Any]) -> ColumnElement[bool]:
    """Open, no open blocker, no live claim (`now`, a value or a bound parameter, compared in the
    query: claims expire without a write)."""
    unclaimed = or_(T.claim_until.is_(None), T.claim_until <= now)
    return and_(T.status == "open", _NOT_BLOCKED, unclaimed)


def _held_back() -> Any:
    # Open live tasks held back from ready: the blocked ones, read from the workspace's links, and
    # the claimed ones, from the index of claims; UNION counts a task in both once.
    open_live = (T.status == "open", T.deleted_at.is_(None))
    waiting = exists(select(T.pk).where(T.owner_id == L.owner_id, T.number == L.number, *open_live))
    blocked = select(L.number).where(L.owner_id == bindparam("owner"), waiting, _open_blocker())
    claimed = select(T.number).where(T.owner_id == bindparam("owner"), T.claim_until > bindparam("now"), *open_live)
    return select(func.count()).select_from(union(blocked, claimed).subquery())


# How many open tasks of workspace `owner` are not ready at `now`: the open count minus this is the
# ready total, without visiting every open task.
HELD_BACK = _held_back()


def blockers_of(conn: Connection, owner: str, numbers: Sequence[int]) -> dict[int, list[tuple[int, bool]]]:
    """(blocker, open) of the live blockers of each task of `numbers`."""
    found: dict[int, list[tuple[int, bool]]] = {}
    if numbers:
        for number, blocker, status in conn.execute(LIVE_BLOCKERS, {"owner": owner, "numbers": list(numbers)}):
            found.setdefault(number, []).append((blocker, status == "open"))
    return found


def outs(conn: Connection, owner: str, rows: Sequence[Row[Any]], now: dt.datetime) -> list[TaskOut]:
    """Stored tasks as `TaskOut`, with their live blockers and live claims."""
    # Each row's values by name, read once: looking a Row's columns up by attribute cost more
    # than the rest of building a task (and `_fields` is worth reading once per result).
    fields = rows[0]._fields if rows else ()
    tasks = [dict(zip(fields, row, strict=True)) for row in rows]
    found = blockers_of(conn, owner, [task["number"] for task in tasks if task["blocked_by"]])
    return [task_out(task, now, found.get(task["number"], ())) for task in tasks]


def out(conn: Connection, owner: str, row: Row[Any], now: dt.datetime) -> TaskOut:
    return outs(conn, owner, [row], now)[0]


def stored(value: str) -> list[int]:
    return [int(n) for n in value.split(",") if n]


def joined(numbers: Sequence[int]) -> str:
    return ",".join(str(n) for n in numbers)


def check_blockers(
    conn: Connection, ws: Workspace, number: int | None, blockers: Sequence[int], *, repeats: bool = True
) -> None:
    """`blockers` may block task `number` (None: a task being created, which nothing waits for yet):
    live tasks of the workspace, not the task itself, none repeating (`repeats=False` leaves that to
    a later check on a bulk call's final state), no cycle over every stored link.

    Raises:
        NotFoundError: a blocker is deleted or not in the workspace.
        InvalidArgumentError: the task itself, or a cycle (named).
    """
    if number is not None and number in blockers:
        raise InvalidArgumentError(f"blocked_by: task {number} cannot block itself (#{number} → #{number}).")
    if not blockers:
        return
    named = {row.number: row for row in conn.execute(TASKS_NAMED, {"owner": ws.key, "numbers": blockers})}
    for blocker in blockers:
        if blocker not in named:
            raise NotFoundError(f"blocked_by: {NotFoundError.task(blocker, ws.place, ws.hint).message}")
        if named[blocker].deleted_at is not None:
            raise NotFoundError(
                f"blocked_by: task {blocker} is deleted. Call restore_task{ws.hint} with task_id {blocker} first, "
                "or leave it out."
            )
    # A repeating task cannot block (DESIGN §10): completing it never leaves it completed.
    for blocker in blockers:
        if repeats and named[blocker].repeat is not None:
            raise InvalidArgumentError(
                f"blocked_by: task {blocker} repeats ({named[blocker].repeat}), and a repeating task cannot block: "
                "completing it only moves its due. Leave it out, or clear its repeat first."
            )
    if number is None:
        return
    reached = {n for (n,) in conn.execute(REACHED, {"owner": ws.key, "starts": list(blockers)})}
    if number in reached:
        raise InvalidArgumentError(
            f"blocked_by: that would make a cycle: {_cycle(conn, ws.key, number, blockers, reached)}. "
            "Nothing was changed; leave out a task that already waits for this one."
        )


# A live waiting task first: its advice (update_task) works; a deleted one needs restoring first.
WAITING_ON = (
    select(L.number, T.deleted_at)
    .join(TASKS, and_(T.owner_id == L.owner_id, T.number == L.number))
    .where(L.owner_id == bindparam("owner"), L.blocker == bindparam("number"))
    .order_by(T.deleted_at.is_not(None), L.number)
    .limit(1)
)


def check_not_blocking(conn: Connection, ws: Workspace, number: int) -> None:
    """Task `number` may repeat: no task names it in blocked_by (DESIGN §10).

    Raises:
        InvalidArgumentError: naming a task it blocks.
    """
    row = conn.execute(WAITING_ON, {"owner": ws.key, "number": number}).first()
    if row is None:
        return
    waiting, deleted_at = row
    if deleted_at is not None:  # update_task cannot reach a task in the trash
        raise InvalidArgumentError(
            f"repeat: task {number} blocks task {waiting}, which is deleted but still restorable, and a repeating "
            f"task cannot block. Call restore_task{ws.hint} with task_id {waiting}, remove {number} from its "
            "blocked_by (update_task), and delete it again if you like; or leave repeat out."
        )
    raise InvalidArgumentError(
        f"repeat: task {number} blocks task {waiting}, and a repeating task cannot block. Remove {number} from "
        f"the blocked_by of task {waiting} (update_task{ws.hint}) first, or leave repeat out."
    )


def _cycle(conn: Connection, owner: str, number: int, blockers: Sequence[int], reached: set[int]) -> str:
    # The stored links among the tasks reached, then a breadth-first path back to `number`.
    edges: dict[int, list[int]] = {}
    for task, blocker in conn.execute(LINKS_AMONG, {"owner": owner, "numbers": sorted(reached | set(blockers))}):
        edges.setdefault(task, []).append(blocker)
    previous: dict[int, int] = {b: number for b in blockers}
    queue = list(blockers)
    while queue and number not in queue:
        nxt = []
        for task in queue:
            for blocker in edges.get(task, []):
                if blocker not in previous:
                    previous[blocker] = task
                    nxt.append(blocker)
        queue = nxt
    path, at = [number], previous.get(number)
    first = next(b for b in blockers if b in previous)
    while at is not None and at != number and len(path) < 12:
        path.append(at)
        at = previous.get(at)
    path.append(number)
    if len(path) < 3:
        path = [number, first, number]
    steps = list(reversed(path))
    return " → ".join(f"#{n}" for n in steps)


def write_links(conn: Connection, owner: str, number: int, blockers: Sequence[int], *, replace: bool = True) -> None:
    if replace:
        conn.execute(DELETE_LINKS, {"owner": owner, "number": number})
    if blockers:
        conn.execute(INSERT_LINKS, [{"owner_id": owner, "number": number, "blocker": b} for b in blockers])
