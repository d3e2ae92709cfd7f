"""The storage side of the task rules: Core statements built once against the tables of `models`
(building a statement and computing its cache key cost more than running it), and the small steps
on a `Connection` that several rules share. Subtree and ancestor walks are recursive CTEs: a
constant number of statements whatever the size of the tree.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, Row, bindparam, delete, func, insert, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite

from task_mcp.dates import parse_due
from task_mcp.errors import InvalidArgumentError, NotFoundError
from task_mcp.models import (
    CHANGE_TASKS,
    CHANGES,
    IDEMPOTENCY_KEYS,
    PRIORITIES,
    TASK_COUNTERS,
    TASK_TAGS,
    TASKS,
    TaskCreate,
    fold,
)
from task_mcp.records import TASK_LINKS, TASK_NOTES
from task_mcp.service.workspaces import PURGE_MEMBERS, Workspace

PURGE_BATCH = 500  # rows per purge transaction: short write locks, whatever the backlog


T = TASKS.c
INSERT_TASKS = insert(TASKS).returning(*T, sort_by_parameter_order=True)
INSERT_TAGS = insert(TASK_TAGS)
DELETE_TAGS = delete(TASK_TAGS).where(TASK_TAGS.c.task_pk == bindparam("task_pk"))
INSERT_KEY = insert(IDEMPOTENCY_KEYS)
K = IDEMPOTENCY_KEYS.c
_THIS_KEY = (K.owner_id == bindparam("owner"), K.user_id == bindparam("user"), K.key == bindparam("key"))
KEY_BY_ID = select(IDEMPOTENCY_KEYS).where(*_THIS_KEY)
DELETE_KEY = delete(IDEMPOTENCY_KEYS).where(*_THIS_KEY)
MINE = T.owner_id == bindparam("owner")
TASK_BY_NUMBER = select(TASKS).where(MINE, T.number == bindparam("number"))
TASK_BY_NUMBER_LOCKED = TASK_BY_NUMBER.with_for_update()
TASKS_BY_NUMBERS = select(TASKS).where(MINE, T.number.in_(bindparam("numbers", expanding=True)))
COUNT_TASKS = select(func.count()).select_from(TASKS).where(MINE)
LAST_NUMBER = select(TASK_COUNTERS.c.last_number).where(TASK_COUNTERS.c.owner_id == bindparam("owner"))

# Columns a task is born with and never changes, the deletion bookkeeping, and the columns that
# only the service sets: the rest is what update_task may change.
CLAIM = ("claim_id", "claim_user", "claim_client", "claim_until")
FIXED = frozenset({"pk", "owner_id", "number", "created_at", "created_by", "deleted_at", "deleted_with", *CLAIM})
UPDATABLE = tuple(c.name for c in TASKS.c if c.name not in FIXED | {"version", "updated_at"})
UPDATE_TASK = (
    update(TASKS)
    .where(T.pk == bindparam("task_pk"))
    .values({name: bindparam(name) for name in (*UPDATABLE, "version", "updated_at")})
    .returning(*T)
)


def subtree_cte() -> Any:
    # The live subtree under `root`, following parent links down; UNION (not ALL) ends on a cycle.
    tree = (
        select(T.pk, T.number).where(MINE, T.number == bindparam("root")).cte("subtree", recursive=True, nesting=True)
    )
    child = TASKS.alias("child")
    return tree.union(
        select(child.c.pk, child.c.number).where(
            child.c.owner_id == bindparam("owner"),
            child.c.parent_number == tree.c.number,
            child.c.deleted_at.is_(None),
        )
    )


SUBTREE = subtree_cte()
DELETE_SUBTREE = (
    update(TASKS)
    .where(T.pk.in_(select(SUBTREE.c.pk)))
    .values(
        deleted_at=bindparam("now"),
        deleted_with=bindparam("root"),
        version=T.version + 1,
        updated_at=bindparam("now"),
        **dict.fromkeys(CLAIM),  # deleting a task ends its claim
    )
)
END_CLAIM = update(TASKS).where(T.pk == bindparam("task_pk")).values(dict.fromkeys(CLAIM))
RESTORE_GROUP = (
    update(TASKS)
    .where(MINE, T.deleted_with == bindparam("group"), T.deleted_at.is_not(None))
    .values(deleted_at=None, deleted_with=None, version=T.version + 1, updated_at=bindparam("now"))
)


def ancestors_cte() -> Any:
    # `parent` and every task above it (deleted ones too); UNION ends on a stored cycle.
    line = (
        select(T.number, T.parent_number)
        .where(MINE, T.number == bindparam("parent"))
        .cte("line", recursive=True, nesting=True)
    )
    up = TASKS.alias("up")
    return line.union(
        select(up.c.number, up.c.parent_number).where(
            up.c.owner_id == bindparam("owner"), up.c.number == line.c.parent_number
        )
    )


# The first task of a subtree, or of a group deleted together, that `user` did not create.
NOT_MINE_IN_SUBTREE = (
    select(T.number)
    .where(T.pk.in_(select(SUBTREE.c.pk)), T.created_by != bindparam("user"))
    .order_by(T.number)
    .limit(1)
)
NOT_MINE_IN_GROUP = (
    select(T.number)
    .where(MINE, T.deleted_with == bindparam("group"), T.deleted_at.is_not(None), T.created_by != bindparam("user"))
    .order_by(T.number)
    .limit(1)
)

LINE = ancestors_cte()
IS_ABOVE = select(LINE.c.number).where(LINE.c.number == bindparam("task")).limit(1)

PURGE_KEYS = delete(IDEMPOTENCY_KEYS).where(
    tuple_(K.owner_id, K.user_id, K.key).in_(
        select(K.owner_id, K.user_id, K.key)
        .where(K.created_at < bindparam("cutoff", type_=K.created_at.type))
        .limit(PURGE_BATCH)
    )
)
PURGEABLE = (
    select(T.pk, T.owner_id, T.number)
    .where(T.deleted_at < bindparam("cutoff", type_=T.deleted_at.type))
    .limit(PURGE_BATCH)
)
PURGE_TAGS = delete(TASK_TAGS).where(TASK_TAGS.c.task_pk.in_(bindparam("pks", expanding=True)))
PURGE_TASKS = delete(TASKS).where(T.pk.in_(bindparam("pks", expanding=True)))


def reserve_statement(insert: Callable[[Any], Any]) -> Any:
    # INSERT ... ON CONFLICT DO UPDATE, as PostgreSQL and SQLite both spell it; `count` is used twice.
    # The same counter row numbers the call's change (as `journal.reserve` does): one statement, not two.
    counter = TASK_COUNTERS.c
    return (
        insert(TASK_COUNTERS)
        .values(owner_id=bindparam("owner"), last_number=bindparam("count"), last_change=1)
        .on_conflict_do_update(
            index_elements=[counter.owner_id],
            set_={"last_number": counter.last_number + bindparam("count"), "last_change": counter.last_change + 1},
        )
        .returning(counter.last_number, counter.last_change)
    )


_RESERVE_POSTGRES, _RESERVE_SQLITE = reserve_statement(postgresql.insert), reserve_statement(sqlite.insert)


# --- helpers ------------------------------------------------------------------------------------


def any_row(conn: Connection, ws: Workspace, task_id: int, *, lock: bool = False) -> Row[Any]:
    """Task `task_id` of workspace `ws`, live or deleted, as a row of `TASKS`."""
    stmt = TASK_BY_NUMBER_LOCKED if lock else TASK_BY_NUMBER
    task = conn.execute(stmt, {"owner": ws.key, "number": task_id}).first()
    if task is None:
        raise NotFoundError.task(task_id, ws.place, ws.hint)
    return task


def live_row(conn: Connection, ws: Workspace, task_id: int, *, lock: bool = False) -> Row[Any]:
    """The live task `task_id` of workspace `ws`, as a row of `TASKS`."""
    task = any_row(conn, ws, task_id, lock=lock)
    if task.deleted_at is not None:
        raise NotFoundError(
            f"Task {task_id} was deleted. Call restore_task{ws.hint} with task_id {task_id} to bring it back."
        )
    return task


def check_parent(conn: Connection, ws: Workspace, number: int, parent_id: int) -> None:
    """`parent_id` may become the parent of task `number`: live, and not inside its subtree."""
    if parent_id == number:
        raise InvalidArgumentError(f"parent_id: task {parent_id} cannot be its own parent.")
    live_row(conn, ws, parent_id)
    if conn.execute(IS_ABOVE, {"owner": ws.key, "parent": parent_id, "task": number}).first() is not None:
        raise InvalidArgumentError(
            f"parent_id: task {parent_id} is a subtask of task {number}; making it the "
            "parent would create a cycle. Choose a task outside its subtree."
        )


def reserve_numbers(conn: Connection, user_id: str, count: int) -> tuple[int, int]:
    """Take `count` consecutive task numbers and the change_id of the call that creates them: (the
    first number, the change_id). The counter row stays locked until the commit, which serialises
    creators and numbers changes in the order they commit."""
    upsert = _RESERVE_POSTGRES if conn.dialect.name == "postgresql" else _RESERVE_SQLITE
    last, change_id = conn.execute(upsert, {"owner": user_id, "count": count}).one()
    return int(last) - count + 1, int(change_id)


def new_task(
    owner: str, number: int, item: TaskCreate, now: dt.datetime, *, created_by: str = "", assignee: str | None = None
) -> dict[str, Any]:
    due_at, due_date = due_columns(item.due)
    values = {
        "owner_id": owner,
        "created_by": created_by,
        "assignee": assignee,
        "number": number,
        "title": item.title,
        "title_folded": fold(item.title),
        "description": item.description,
        "description_folded": fold(item.description),
        "status": "open",
        "priority": PRIORITIES.index(item.priority),
        "due_at": due_at,
        "due_date": due_date,
        "tags": "\n".join(item.tags),
        "blocked_by": ",".join(str(n) for n in item.blocked_by or []),
        "parent_number": item.parent_id,
        "version": 1,
        "created_at": now,
        "updated_at": now,
    }
    # Every other column starts empty: derived from the table, so a new column cannot be forgotten.
    return {c.name: None for c in TASKS.c if c.name != "pk"} | values


def due_columns(due: str | None) -> tuple[dt.datetime | None, dt.date | None]:
    """(due_at, due_date) for a `due` argument: an instant in UTC, or an all-day date."""
    value = parse_due(due) if due is not None else None
    if isinstance(value, dt.datetime):
        # Whole seconds, as the task is written: a due that reads 16:00:00Z must match a 16:00:00Z
        # bound, and a change below a second would be stored without showing (or bumping the version).
        return value.replace(microsecond=0), None
    return None, value


def purge_keys(conn: Connection, cutoff: dt.datetime) -> int:
    return conn.execute(PURGE_KEYS, {"cutoff": cutoff}).rowcount


def purge_members(conn: Connection, cutoff: dt.datetime) -> int:
    return conn.execute(PURGE_MEMBERS, {"cutoff": cutoff}).rowcount


def purge_tasks(conn: Connection, cutoff: dt.datetime) -> int:
    """Purge a batch of expired trash, with the journal entries of the purged tasks."""
    found = conn.execute(PURGEABLE, {"cutoff": cutoff}).all()
    if found:
        pks = [row.pk for row in found]
        conn.execute(PURGE_TAGS, {"pks": pks})
        purged = [(row.owner_id, row.number) for row in found]
        conn.execute(PURGE_LINKS, {"tasks": purged})
        conn.execute(PURGE_BLOCKED_BY, {"tasks": purged})
        conn.execute(PURGE_NOTES, {"tasks": purged})
        conn.execute(PURGE_TASKS, {"pks": pks})
        purge_journal_of(conn, [(row.owner_id, row.number) for row in found])
    return len(found)


CT, CH, LK, NT = CHANGE_TASKS.c, CHANGES.c, TASK_LINKS.c, TASK_NOTES.c
PURGE_LINKS = delete(TASK_LINKS).where(tuple_(LK.owner_id, LK.number).in_(bindparam("tasks", expanding=True)))
# A purged blocker is dropped from the links (tasks.blocked_by keeps its number, shown only while live).
PURGE_BLOCKED_BY = delete(TASK_LINKS).where(tuple_(LK.owner_id, LK.blocker).in_(bindparam("tasks", expanding=True)))
PURGE_NOTES = delete(TASK_NOTES).where(tuple_(NT.owner_id, NT.number).in_(bindparam("tasks", expanding=True)))
PURGE_TOUCHES_OF = delete(CHANGE_TASKS).where(tuple_(CT.owner_id, CT.number).in_(bindparam("tasks", expanding=True)))
CHANGES_OF = select(CT.owner_id, CT.change_id).where(
    tuple_(CT.owner_id, CT.number).in_(bindparam("tasks", expanding=True))
)
PURGE_CHANGES = delete(CHANGES).where(tuple_(CH.owner_id, CH.change_id).in_(bindparam("changes", expanding=True)))
OLD_CHANGES = select(CH.owner_id, CH.change_id).where(CH.at < bindparam("cutoff", type_=CH.at.type)).limit(PURGE_BATCH)
PURGE_OLD_TOUCHES = delete(CHANGE_TASKS).where(
    tuple_(CT.owner_id, CT.change_id).in_(bindparam("changes", expanding=True))
)


def purge_journal_of(conn: Connection, tasks: list[tuple[str, int]]) -> None:
    """Purged tasks take their journal entries with them: every change that touched one."""
    changes = [tuple(row) for row in conn.execute(CHANGES_OF, {"tasks": tasks}).all()]
    conn.execute(PURGE_TOUCHES_OF, {"tasks": tasks})
    if changes:
        conn.execute(PURGE_OLD_TOUCHES, {"changes": changes})
        conn.execute(PURGE_CHANGES, {"changes": changes})


def purge_changes(conn: Connection, cutoff: dt.datetime) -> int:
    """Purge a batch of changes made before `cutoff`."""
    changes = [tuple(row) for row in conn.execute(OLD_CHANGES, {"cutoff": cutoff}).all()]
    if changes:
        conn.execute(PURGE_OLD_TOUCHES, {"changes": changes})
        conn.execute(PURGE_CHANGES, {"changes": changes})
    return len(changes)
