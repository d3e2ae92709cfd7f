"""One `list_tasks` call: filters, a keyset page in the requested order, the total, cursors.

Every filter and sort is served by an index led by the workspace (see `models.Task`), so a page
costs what the workspace's own rows cost. Cursors are opaque keyset positions (base64 JSON of the last
row's sort key and id, plus a fingerprint of the filters), valid on any replica.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, Connection, Row, Select, and_, bindparam, false, func, or_, select, tuple_
from sqlalchemy.sql import union_all

import task_mcp.service.cursors as cursors
import task_mcp.service.links as links
import task_mcp.service.pages as pages
import task_mcp.service.search as search
import task_mcp.service.tag_counts as tag_counts
from task_mcp.dates import parse_due
from task_mcp.errors import InvalidArgumentError, NotFoundError
from task_mcp.models import (
    PRIORITIES,
    TASK_COUNTERS,
    TASK_TAGS,
    TASKS,
    TaskOut,
    TaskQuery,
)
from task_mcp.service.workspaces import Workspace

_TASKS = TASKS
_T = TASKS.c
_TT = TASK_TAGS.c
# The workspace's counts, kept by triggers on tasks (migration 0009).
_COUNTS = select(TASK_COUNTERS.c.open_tasks, TASK_COUNTERS.c.completed_tasks).where(
    TASK_COUNTERS.c.owner_id == bindparam("owner")
)


@dataclass(frozen=True)
class TaskPage:
    tasks: list[TaskOut]
    next_cursor: str | None
    total: int
    now: dt.datetime  # when the page was read, in UTC (DESIGN §11: the model grounds "tomorrow" on it)


_EARLIEST = dt.datetime.min.replace(tzinfo=dt.UTC)
_LATEST = dt.datetime.max.replace(tzinfo=dt.UTC)


def _start_of_day(day: dt.date, zone: ZoneInfo) -> dt.datetime:
    try:
        return dt.datetime.combine(day, dt.time(), tzinfo=zone).astimezone(dt.UTC)
    except OverflowError:
        # Only a stored 0001-01-01 (or 9999-12-31) can get here: today's inputs cannot be that
        # close to the calendar's ends. Clamping keeps it first (or last) in a sort by due.
        return _EARLIEST if day.year == 1 else _LATEST


_UTC = ZoneInfo("UTC")


def ready_key(task: Any) -> tuple[int, int, str | None, int]:
    """Claim order: priority highest, then due soonest (undated last), then id."""
    if task.due_at is not None:
        due: dt.datetime | None = task.due_at
    elif task.due_date is not None:
        due = _start_of_day(task.due_date, _UTC)
    else:
        due = None
    return (-task.priority, due is None, due.isoformat() if due is not None else None, task.number)


def _local_date(instant: dt.datetime, zone: ZoneInfo) -> dt.date:
    return instant.astimezone(zone).date()


class TaskList:
    """One `list_tasks` call: filters, a keyset page in the requested order, and the total."""

    def __init__(
        self,
        conn: Connection,
        ws: Workspace,
        query: TaskQuery,
        now: dt.datetime,
        *,
        assignee: str | None = None,
        trash_since: dt.datetime | None = None,
    ) -> None:
        """`assignee`: the filter resolved to a user id, or "none" (unassigned). `trash_since`: the
        oldest deletion still restorable (`status: "deleted"`)."""
        self.conn, self.ws, self.query, self.now, self.assignee = conn, ws, query, now, assignee
        self.trash_since = trash_since
        # The trash lists the newest deletion first unless a sort is given.
        trash_order = query.status == "deleted" and "sort" not in query.model_fields_set
        if query.ready and query.status != "open":
            raise InvalidArgumentError("ready: needs status 'open' (the default); leave status out or set it to open.")
        ready_order = query.ready and "sort" not in query.model_fields_set  # as claim_task picks
        self.sort: str = "deleted" if trash_order else "ready" if ready_order else query.sort
        self.owner = ws.key
        self.zone = ZoneInfo(query.timezone)
        self.first_tag: ColumnElement[bool] | None = None
        # A status (and at most one tag) is all the filter says: prepared statements serve the page.
        self.given = pages.given(query, assignee)
        self.shape = pages.shape(query, self.sort, self.given)
        self.filters = [] if self.shape else self._filters()
        self.fingerprint = cursors.list_fingerprint(query, self.sort)  # checks the cursor given, marks the one returned
        self.cursor = cursors.decode_list_cursor(query.cursor, self.fingerprint, self.sort, self.zone)

    def page(self) -> TaskPage:
        if self.shape:
            rows = self._prepared_rows()
        elif self.sort == "ready":
            rows = self._ready_rows()
        else:
            rows = self._due_rows() if self.sort == "due" else self._simple_rows()
        more = len(rows) > self.query.limit
        rows = rows[: self.query.limit]
        if self.cursor is None and not more:
            total = len(rows)  # the first page holds them all: no need to count
        elif self._status_only():
            total = self._counted()
        elif self._tag_only():
            q = self.query
            priorities = [PRIORITIES.index(p) for p in q.priority or []]
            total = tag_counts.tag_total(self.conn, self.owner, (q.tags or [""])[0], q.status, priorities)
        elif self._status_only(ready=True):
            held_back = self.conn.execute(links.HELD_BACK, {"owner": self.owner, "now": self.now}).scalar_one()
            total = self._counted() - held_back
        else:
            total = self.conn.execute(self._count()).scalar_one()
        next_cursor = self._cursor_after(rows[-1]) if more else None
        tasks = links.outs(self.conn, self.owner, rows, self.now)
        return TaskPage(tasks=tasks, next_cursor=next_cursor, total=total, now=self.now)

    def _status_only(self, *, ready: bool = False) -> bool:
        """The filter is a status and nothing else (or, with `ready`, ready and nothing else): the
        workspace's counts hold the total (less the tasks held back from ready)."""
        alone = {"ready"} if ready else set()
        return self.query.status in ("open", "completed", "all") and self.given == alone

    def _tag_only(self) -> bool:
        """The filter is one tag with a status (not the trash) and perhaps priorities beside it:
        the tag's counts (`tag_counts`) hold the total."""
        q = self.query
        one_tag = len(q.tags or []) == 1 and self.given <= {"tags", "priority"}
        return q.status in ("open", "completed", "all") and one_tag

    def _counted(self) -> int:
        counts = self.conn.execute(_COUNTS, {"owner": self.owner}).first()
        if counts is None:
            return 0
        open_tasks, completed_tasks = int(counts[0]), int(counts[1])
        return {"open": open_tasks, "completed": completed_tasks}.get(self.query.status, open_tasks + completed_tasks)

    def _prepared_rows(self) -> list[Any]:
        """The page's rows, through a prepared statement (`pages.py`)."""
        q, cursor = self.query, self.cursor
        if self.shape == "ready":
            rows = self.conn.execute(pages.ready_page(q.limit), {"owner": self.owner, "now": self.now}).all()
            return sorted(rows, key=ready_key)[: q.limit + 1]
        stmt = pages.prepared(self.shape or "plain", self.sort, q.status == "all", cursor is not None, q.limit)
        return list(self.conn.execute(stmt, pages.params(self.owner, q, self.sort, cursor)).all())

    def _filters(self) -> list[ColumnElement[bool]]:
        q = self.query
        where: list[ColumnElement[bool]] = [_T.owner_id == self.owner]
        if q.status == "deleted":
            where.append(_T.deleted_at.is_not(None))
            if self.trash_since is not None:
                where.append(_T.deleted_at >= self.trash_since)
        else:
            where.append(_T.deleted_at.is_(None))
        if q.status not in ("all", "deleted"):
            where.append(_T.status == q.status)
        if q.priority:
            where.append(_T.priority.in_([PRIORITIES.index(p) for p in q.priority]))
        for i, tag in enumerate(q.tags or []):
            tagged = select(TASK_TAGS.c.task_pk).where(TASK_TAGS.c.owner_id == self.owner, TASK_TAGS.c.tag == tag)
            where.append(_T.pk.in_(tagged))
            if i == 0:
                self.first_tag = where[-1]  # a page led by the tag's own rows leaves it out
        if q.text:
            where.extend(search.text_filters(self.conn, self.owner, q.text))
        if q.due_after is not None or q.due_before is not None:
            where.append(self._due_range(q.due_after, q.due_before))
        if q.overdue:
            today = _local_date(self.now, self.zone)
            where.append(_T.status == "open")
            where.append(or_(_T.due_at < self.now, _T.due_date < today))
        if q.parent_id is not None:
            parent = self.conn.execute(
                select(_T.deleted_at).where(_T.owner_id == self.owner, _T.number == q.parent_id)
            ).first()
            if parent is None or parent[0] is not None:
                raise NotFoundError.task(q.parent_id, self.ws.place, self.ws.hint)
            where.append(_T.parent_number == q.parent_id)
        if self.assignee is not None:
            where.append(_T.assignee.is_(None) if self.assignee == "none" else _T.assignee == self.assignee)
        if q.ready:
            where.append(links.ready_condition(self.now))
        return where

    def _tag_keys(self) -> list[ColumnElement[bool]] | None:
        """The first tag's conditions on its `task_tags` rows, which copy the task's list keys (status,
        priority, deletion): None without a tag filter or for the trash."""
        q = self.query
        if not q.tags or q.status == "deleted":
            return None
        keys = [_TT.owner_id == self.owner, _TT.tag == q.tags[0], _TT.deleted_at.is_(None)]
        if q.status != "all":
            keys.append(_TT.status == q.status)
        if q.priority:
            keys.append(_TT.priority.in_([PRIORITIES.index(p) for p in q.priority]))
        return keys

    def _count(self) -> Select[Any]:
        """The exact total, counted over the matching rows (a lone tag's total is read from its
        counts instead, see `_tag_only`)."""
        return select(func.count()).select_from(_TASKS).where(*self.filters)

    def _due_range(self, after: str | None, before: str | None) -> ColumnElement[bool]:
        # A dated task's day [start, next start) in the zone overlaps [A, B] exactly when
        # local_date(A) <= day <= local_date(B), so date-only dues compare as plain dates.
        instant: list[ColumnElement[bool]] = [_T.due_at.is_not(None)]
        day: list[ColumnElement[bool]] = [_T.due_date.is_not(None)]
        if after is not None:
            bound = parse_due(after)
            if isinstance(bound, dt.datetime):
                instant.append(_T.due_at >= bound)
                day.append(_T.due_date >= _local_date(bound, self.zone))
            else:
                instant.append(_T.due_at >= _start_of_day(bound, self.zone))
                day.append(_T.due_date >= bound)
        if before is not None:
            bound = parse_due(before)
            if isinstance(bound, dt.datetime):
                instant.append(_T.due_at <= bound)
                day.append(_T.due_date <= _local_date(bound, self.zone))
            else:
                instant.append(_T.due_at < _start_of_day(bound + dt.timedelta(days=1), self.zone))
                day.append(_T.due_date <= bound)
        return or_(and_(*instant), and_(*day))

    # created / updated / priority: newest or highest first, ties by id in the same direction.
    def _simple_rows(self) -> list[Any]:
        columns = {
            "created": _T.created_at,
            "updated": _T.updated_at,
            "priority": _T.priority,
            "deleted": _T.deleted_at,
        }
        column: ColumnElement[Any] = columns[self.sort]
        stmt = select(_TASKS).where(*self.filters)
        if self.sort == "created" and self._tag_keys() is not None:
            # The first tag's rows, in their index's order: a page reads its own rows only.
            column = _TT.created_at
            filters = [f for f in self.filters if f is not self.first_tag]
            stmt = select(_TASKS).join(TASK_TAGS, _TT.task_pk == _T.pk).where(*filters, *self._tag_keys() or [])
            if self.cursor is not None:
                key = dt.datetime.fromisoformat(self.cursor["k"])
                stmt = stmt.where(tuple_(column, _TT.number) < tuple_(key, self.cursor["n"]))
            stmt = stmt.order_by(column.desc(), _TT.number.desc()).limit(self.query.limit + 1)
            return self._rows(stmt)
        if self.cursor is not None:
            key, number = self.cursor["k"], self.cursor["n"]
            if self.sort != "priority":
                key = dt.datetime.fromisoformat(key)
            stmt = stmt.where(tuple_(column, _T.number) < tuple_(key, number))
        stmt = stmt.order_by(column.desc(), _T.number.desc()).limit(self.query.limit + 1)
        return self._rows(stmt)

    def _rows(self, stmt: Select[Any]) -> list[Row[Any]]:
        # Plain rows with Task's columns, not ORM objects: nothing here is changed, and building
        # objects cost more than the query.
        return list(self.conn.execute(stmt).all())

    # due: soonest first, undated last, ties by id ascending. Instants and all-day dates are two
    # index-ordered streams; a date counts as the start of its day in the zone, so the page is
    # their merge, followed by the undated tasks.
    def _due_key(self, task: Row[Any]) -> dt.datetime:
        due_at: dt.datetime | None = task.due_at
        if due_at is not None:
            return due_at
        assert task.due_date is not None
        return _start_of_day(task.due_date, self.zone)

    def _due_rows(self) -> list[Any]:
        want = self.query.limit + 1
        cursor = self.cursor
        rows: list[Any] = []
        if cursor is None or cursor["k"] is not None:
            instants = select(_TASKS).where(*self.filters, _T.due_at.is_not(None))
            days = select(_TASKS).where(*self.filters, _T.due_date.is_not(None))
            if cursor is not None:
                key, number = dt.datetime.fromisoformat(cursor["k"]), cursor["n"]
                instants = instants.where(tuple_(_T.due_at, _T.number) > tuple_(key, number))
                day = _local_date(key, self.zone)
                same_day = and_(_T.due_date == day, _T.number > number)
                days = days.where(or_(_T.due_date > day, same_day if _start_of_day(day, self.zone) == key else false()))
            instants = instants.order_by(_T.due_at, _T.number).limit(want)
            days = days.order_by(_T.due_date, _T.number).limit(want)
            dated = self._rows(instants) + self._rows(days)
            rows = sorted(dated, key=lambda t: (self._due_key(t), t.number))[:want]
        if len(rows) < want:
            undated = select(_TASKS).where(*self.filters, _T.due_at.is_(None), _T.due_date.is_(None))
            if cursor is not None and cursor["k"] is None:
                undated = undated.where(_T.number > cursor["n"])
            undated = undated.order_by(_T.number).limit(want - len(rows))
            rows += self._rows(undated)
        return rows

    # ready: priority highest, due soonest (a date at the start of its day in UTC), undated last, id.
    # Three index-ordered streams (instants, dates, undated), merged; claim_task takes the first.
    def _ready_rows(self) -> list[Any]:
        want, cursor = self.query.limit + 1, self.cursor
        streams = pages.ready_streams(self.filters)
        if cursor is not None:
            p, n = cursor["p"], cursor["n"]
            k = None if cursor["k"] is None else dt.datetime.fromisoformat(cursor["k"])
            lower = _T.priority < p
            if k is None:
                streams[0] = streams[0].where(lower)
                streams[1] = streams[1].where(lower)
                streams[2] = streams[2].where(or_(lower, and_(_T.priority == p, _T.number > n)))
            else:
                day = k.astimezone(dt.UTC).date()
                same_day = and_(_T.due_date == day, _T.number > n) if _start_of_day(day, _UTC) == k else false()
                streams[0] = streams[0].where(or_(lower, and_(_T.priority == p, tuple_(_T.due_at, _T.number) > (k, n))))
                streams[1] = streams[1].where(or_(lower, and_(_T.priority == p, or_(_T.due_date > day, same_day))))
                streams[2] = streams[2].where(_T.priority <= p)
        # One statement: each stream's first rows (an index range apiece), merged here.
        rows = self.conn.execute(union_all(*(stream.limit(want).subquery().select() for stream in streams))).all()
        return sorted(rows, key=ready_key)[:want]

    def _cursor_after(self, task: Any) -> str:
        key: Any
        if self.sort == "ready":
            due = ready_key(task)[2]
            return cursors.encode({"p": task.priority, "k": due, "n": task.number, "f": self.fingerprint})
        if self.sort == "due":
            dated = task.due_at is not None or task.due_date is not None
            key = self._due_key(task).isoformat() if dated else None
        elif self.sort == "priority":
            key = task.priority
        else:
            column = {"created": "created_at", "updated": "updated_at", "deleted": "deleted_at"}[self.sort]
            key = getattr(task, column).isoformat()
        return cursors.encode({"k": key, "n": task.number, "f": self.fingerprint})
