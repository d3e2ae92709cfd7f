"""Prepared statements for the commonest `list_tasks` pages (a status alone, or one tag beside it,
or the first page of the ready list) and for `claim_task`'s pick of the next ready task.

Building a SQLAlchemy statement and computing its cache key cost more than running the query on
a page of 20, so these shapes are built once, with a bound parameter for every value (`owner`,
`status`, `tag`, `now`, and the cursor's `key` and `number`), and reused. Each is the statement
`listing.TaskList` builds for the same query, with the same conditions in the same order.
"""

from __future__ import annotations

import datetime as dt
from functools import cache
from typing import Any, Literal

from sqlalchemy import ColumnElement, CompoundSelect, Select, bindparam, select, tuple_
from sqlalchemy.sql import union_all

import task_mcp.service.links as links
from task_mcp.models import TASK_TAGS, TASKS, TaskQuery

_T = TASKS.c
_TT = TASK_TAGS.c


@cache  # a handful of shapes times the page sizes (1-100): a few hundred statements at most
def prepared(
    shape: Literal["plain", "tag"],
    sort: str,
    any_status: bool,
    after_cursor: bool,
    limit: int,
) -> Select[Any]:
    """The page's rows (`limit` + 1 of them, to tell whether more follow).

    `plain`: the workspace's live tasks of one status (any, with `any_status`), newest first by
    `sort` (created, updated or priority). `tag`: the same, sorted by created, read from the tag's
    own rows (they copy the task's list keys)."""
    owner = bindparam("owner", type_=_T.owner_id.type)
    status = bindparam("status", type_=_T.status.type)
    where: list[ColumnElement[bool]] = [_T.owner_id == owner, _T.deleted_at.is_(None)]
    if not any_status:
        where.append(_T.status == status)
    columns: dict[str, ColumnElement[Any]] = {
        "created": _T.created_at,
        "updated": _T.updated_at,
        "priority": _T.priority,
    }
    column, number = columns[sort], _T.number
    if shape == "tag":
        keys = [_TT.owner_id == owner, _TT.tag == bindparam("tag", type_=_TT.tag.type), _TT.deleted_at.is_(None)]
        if not any_status:
            keys.append(_TT.status == status)
        column, number = _TT.created_at, _TT.number
        stmt = select(TASKS).join(TASK_TAGS, _TT.task_pk == _T.pk).where(*where, *keys)
    else:
        stmt = select(TASKS).where(*where)
    if after_cursor:
        after = tuple_(bindparam("key", type_=column.type), bindparam("number", type_=number.type))
        stmt = stmt.where(tuple_(column, number) < after)
    return stmt.order_by(column.desc(), number.desc()).limit(limit + 1)


def ready_streams(filters: list[ColumnElement[bool]]) -> list[Select[Any]]:
    """Tasks matching `filters` in claim order, as three streams: instant dues, dates, undated."""
    return [
        select(TASKS).where(*filters, _T.due_at.is_not(None)).order_by(_T.priority.desc(), _T.due_at, _T.number),
        select(TASKS).where(*filters, _T.due_date.is_not(None)).order_by(_T.priority.desc(), _T.due_date, _T.number),
        select(TASKS)
        .where(*filters, _T.due_at.is_(None), _T.due_date.is_(None))
        .order_by(_T.priority.desc(), _T.number),
    ]


def _ready_alone() -> list[ColumnElement[bool]]:
    # What `listing.TaskList` filters a ready list on when nothing else is given.
    now = bindparam("now", type_=_T.claim_until.type)
    return [_T.owner_id == bindparam("owner", type_=_T.owner_id.type), _T.deleted_at.is_(None), _T.status == "open",
            links.ready_condition(now)]  # fmt: skip


@cache
def ready_firsts(skip_locked: bool) -> tuple[Select[Any], ...]:
    """claim_task's candidates when only readiness is asked for: the first task of each stream
    (`skip_locked`: PostgreSQL's, passing over candidates other claimers hold locked)."""
    streams = [stream.limit(1) for stream in ready_streams(_ready_alone())]
    if skip_locked:
        streams = [stream.with_for_update(skip_locked=True, of=TASKS) for stream in streams]
    return tuple(streams)


@cache
def ready_page(limit: int) -> CompoundSelect[Any]:
    """The first page of the ready list with no other filter: each stream's first `limit` + 1
    tasks, in one statement; the caller merges them in claim order."""
    return union_all(*(s.limit(limit + 1).subquery().select() for s in ready_streams(_ready_alone())))


def given(query: TaskQuery, assignee: str | None) -> frozenset[str]:
    """The filters `query` gives beside its status (its `assignee` filter resolved): what decides
    whether a prepared statement or a kept count can answer it."""
    q = query
    present = {
        "priority": bool(q.priority),
        "tags": bool(q.tags),
        "text": bool(q.text),
        "due": q.due_after is not None or q.due_before is not None,
        "overdue": q.overdue,
        "parent_id": q.parent_id is not None,
        "assignee": assignee is not None,
        "ready": q.ready,
    }
    return frozenset(name for name, on in present.items() if on)


def shape(query: TaskQuery, sort: str, filters: frozenset[str]) -> Literal["plain", "tag", "ready"] | None:
    """The prepared shape that serves `query` (its `sort` resolved, `filters` from `given`), or
    None: `plain` when a status (not the trash) is the whole filter and the sort is created,
    updated or priority; `tag` when one tag stands beside it and the sort is created; `ready`
    for the ready list's first page in claim order with nothing else given."""
    if sort == "ready":
        return "ready" if filters == {"ready"} and query.cursor is None else None
    if query.status == "deleted" or sort not in ("created", "updated", "priority"):
        return None
    if not filters:
        return "plain"
    one_tag = filters == {"tags"} and len(query.tags or []) == 1
    return "tag" if one_tag and sort == "created" else None


def params(owner: str, query: TaskQuery, sort: str, cursor: dict[str, Any] | None) -> dict[str, Any]:
    """The values a prepared statement binds: the workspace, the status, the tag, the cursor's position."""
    values: dict[str, Any] = {"owner": owner}
    if query.status != "all":
        values["status"] = query.status
    if query.tags:
        values["tag"] = query.tags[0]
    if cursor is not None:
        values["key"] = cursor["k"] if sort == "priority" else dt.datetime.fromisoformat(cursor["k"])
        values["number"] = cursor["n"]
    return values
