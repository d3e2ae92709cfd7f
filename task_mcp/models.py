"""Tables and the public shapes of a task.

Tables: `Task` (one row per task, numbered per workspace), `TaskTag` (one row per tag, for the tag
filter), `TaskCounter` (each workspace's last task number), `IdempotencyKey` and
`WorkspaceMember` (the known members of each organization); the service reaches them as the Core
tables `TASKS`, `TASK_TAGS`, `TASK_COUNTERS`, `IDEMPOTENCY_KEYS` and `WORKSPACE_MEMBERS`.

`owner_id` in the task tables is the key of the workspace that owns the row (`workspace_key`): the
user id itself for a personal workspace, as it was before workspaces (so existing rows kept their
keys), and `org:<organization id>` for an organization.
Shapes: the inputs of the tools (`TaskCreate`, `TaskUpdate`, `TaskQuery`) and the output `TaskOut`.
Every limit lives here, so the input schemas the model sees carry them.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, StringConstraints, field_validator
from pydantic import Field as PField
from sqlalchemy import Column, DateTime, Index, Row, String, Table, TypeDecorator, UnicodeText, UniqueConstraint, text
from sqlmodel import Field, SQLModel

MAX_ID = 2**31 - 1
Status = Literal["open", "completed"]
Priority = Literal["none", "low", "medium", "high", "urgent"]
PRIORITIES: tuple[Priority, ...] = ("none", "low", "medium", "high", "urgent")
ClearableField = Literal["description", "due", "parent_id", "assignee"]
Sort = Literal["created", "due", "priority", "updated"]


KEY_LENGTH = 300  # a workspace key: a user id (up to 255 characters) or "org:" + an organization id


# --- Tables -------------------------------------------------------------------------------------


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Timezone-aware UTC datetimes on every database (SQLite keeps them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _utc_column(nullable: bool) -> Any:
    return Field(default=None, sa_column=Column(UTCDateTime(), nullable=nullable))


def _live_index(name: str, *columns: str) -> Index:
    live = text("deleted_at IS NULL")
    return Index(name, *columns, sqlite_where=live, postgresql_where=live)


class Task(SQLModel, table=True):
    __tablename__ = "tasks"
    __table_args__ = (
        UniqueConstraint("owner_id", "number", name="uq_tasks_owner_number"),
        # Every list_tasks filter and sort is served by an index led by the workspace, so a list
        # costs what the caller's own rows cost, whatever the size of the table. The indexes hold
        # live tasks only, so `total` is counted from the index alone, without visiting the
        # table's pages (SQLite sees an index as covering only when deleted_at is one of its
        # columns, hence the always-NULL trailing column).
        _live_index("ix_tasks_owner_status_created", "owner_id", "status", "created_at", "number", "deleted_at"),
        _live_index("ix_tasks_owner_created", "owner_id", "created_at", "number", "deleted_at"),
        _live_index("ix_tasks_owner_status_updated", "owner_id", "status", "updated_at", "number"),
        _live_index("ix_tasks_owner_status_priority", "owner_id", "status", "priority", "number"),
        _live_index("ix_tasks_owner_due_at", "owner_id", "due_at", "number"),
        _live_index("ix_tasks_owner_due_date", "owner_id", "due_date", "number"),
        _live_index("ix_tasks_owner_assignee", "owner_id", "assignee", "number"),
        Index("ix_tasks_owner_parent", "owner_id", "parent_number"),
        Index("ix_tasks_deleted_at", "deleted_at"),
    )

    pk: int | None = Field(default=None, primary_key=True)
    owner_id: str = Field(max_length=KEY_LENGTH)  # the workspace key
    number: int
    title: str = Field(max_length=200)
    description: str | None = Field(default=None, max_length=8000)
    status: str = Field(default="open", max_length=16)
    priority: int = 0  # index into PRIORITIES, so "highest first" is a plain descending sort
    due_at: dt.datetime | None = _utc_column(nullable=True)  # an instant due, in UTC
    due_date: dt.date | None = None  # an all-day due
    tags: str = Field(default="", max_length=1000)  # normalised tags joined by "\n", for output
    parent_number: int | None = None
    version: int = 1
    created_at: dt.datetime = _utc_column(nullable=False)
    updated_at: dt.datetime = _utc_column(nullable=False)
    completed_at: dt.datetime | None = _utc_column(nullable=True)
    deleted_at: dt.datetime | None = _utc_column(nullable=True)
    deleted_with: int | None = None  # number of the task whose delete_task removed this one
    # str.casefold() of title and description, for the text search: folding in Python gives the
    # same answers on SQLite and PostgreSQL (whose lower()/ILIKE disagree on letters like "İ").
    title_folded: str = Field(default="", sa_column=Column(UnicodeText(), nullable=False, server_default=""))
    description_folded: str = Field(default="", sa_column=Column(UnicodeText(), nullable=False, server_default=""))
    created_by: str = Field(default="", sa_column=Column(String(255), nullable=False, server_default=""))
    assignee: str | None = Field(default=None, max_length=255)  # a member's user id: a label, it grants nothing


class TaskTag(SQLModel, table=True):
    __tablename__ = "task_tags"
    __table_args__ = (Index("ix_task_tags_owner_tag", "owner_id", "tag", "task_pk"),)

    task_pk: int = Field(foreign_key="tasks.pk", primary_key=True, ondelete="CASCADE")
    tag: str = Field(primary_key=True, max_length=40)
    owner_id: str = Field(max_length=KEY_LENGTH)


class TaskCounter(SQLModel, table=True):
    """Each workspace's last task number; its row lock keeps numbers gap-free under concurrency."""

    __tablename__ = "task_counters"

    owner_id: str = Field(primary_key=True, max_length=KEY_LENGTH)
    last_number: int = 0


class IdempotencyKey(SQLModel, table=True):
    __tablename__ = "idempotency_keys"
    __table_args__ = (Index("ix_idempotency_keys_created_at", "created_at"),)

    owner_id: str = Field(primary_key=True, max_length=KEY_LENGTH)  # keys are per workspace and caller
    user_id: str = Field(primary_key=True, max_length=255)
    key: str = Field(primary_key=True, max_length=100)
    request_hash: str = Field(max_length=64)  # the tool's name and arguments, hashed
    numbers: str = Field(max_length=1200)  # the created task numbers, comma-separated
    created_at: dt.datetime = _utc_column(nullable=False)


class WorkspaceMember(SQLModel, table=True):
    """A member of an organization's workspace, as last seen in their token (at most hourly)."""

    __tablename__ = "workspace_members"
    __table_args__ = (
        Index("ix_workspace_members_seen", "workspace_id", "last_seen_at"),
        Index("ix_workspace_members_user", "user_id"),
        Index("ix_workspace_members_last_seen", "last_seen_at"),
    )

    workspace_id: str = Field(primary_key=True, max_length=KEY_LENGTH)
    user_id: str = Field(primary_key=True, max_length=255)
    name: str | None = Field(default=None, max_length=255)
    email: str | None = Field(default=None, max_length=255)
    role: str = Field(max_length=255)
    last_seen_at: dt.datetime = _utc_column(nullable=False)


# One typed Core table per table: the service builds its statements against these.
TASKS: Table = SQLModel.metadata.tables["tasks"]
TASK_TAGS: Table = SQLModel.metadata.tables["task_tags"]
TASK_COUNTERS: Table = SQLModel.metadata.tables["task_counters"]
IDEMPOTENCY_KEYS: Table = SQLModel.metadata.tables["idempotency_keys"]
WORKSPACE_MEMBERS: Table = SQLModel.metadata.tables["workspace_members"]


def fold(value: str | None) -> str:
    """The case-folded form the text search compares: `str.casefold` in NFC, the same on every
    database, with the dot that "İ" leaves on its "i" dropped, so "İstanbul" matches "istanbul"."""
    return "" if value is None else unicodedata.normalize("NFC", value.casefold()).replace("i\u0307", "i")


# --- Input shapes ---------------------------------------------------------------------------------


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


def _check_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    # A directory of the zone database ("America") raises IsADirectoryError, another file that is
    # not a zone raises ValueError or an OSError: all of them are just "not a zone name".
    except (ZoneInfoNotFoundError, ValueError, OSError, UnicodeError):
        raise ValueError("is not an IANA time zone name such as 'Europe/Paris' or 'UTC'") from None
    return value


_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# Every date and instant the server keeps must convert to a local date in any time zone (UTC
# offsets stay within a day), so the first and last day of the calendar are out.
FIRST_DAY, LAST_DAY = dt.date(1, 1, 2), dt.date(9999, 12, 30)
_OUT_OF_RANGE = f"is outside the dates the server can handle ({FIRST_DAY} to {LAST_DAY}, in UTC)"


def parse_due(value: str) -> dt.date | dt.datetime:
    """A date (all-day) or a datetime with an offset, which comes back in UTC.

    Raises:
        ValueError: not ISO 8601, no offset, or outside `FIRST_DAY` … `LAST_DAY` once in UTC.
    """
    value = value.strip()
    if _DATE_RE.match(value):
        try:
            day = dt.date.fromisoformat(value)
        except ValueError:
            raise ValueError("is not a calendar date: give a real day, e.g. 2026-02-28") from None
        if not FIRST_DAY <= day <= LAST_DAY:
            raise ValueError(_OUT_OF_RANGE)
        return day
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            "must be an ISO 8601 date (2026-12-01) or datetime with an offset (2026-12-01T16:00:00Z)"
        ) from None
    if parsed.tzinfo is None:
        raise ValueError("has no UTC offset: add one, e.g. 2026-12-01T16:00:00Z or +02:00")
    instant = to_utc(parsed)
    if instant is None:
        raise ValueError(_OUT_OF_RANGE)
    return instant


def to_utc(value: dt.datetime) -> dt.datetime | None:
    """`value` (aware) in UTC, or None when it falls outside `FIRST_DAY` … `LAST_DAY`."""
    try:
        instant = value.astimezone(dt.UTC)
    except OverflowError:  # year 0 or 10000 once converted
        return None
    return instant if FIRST_DAY <= instant.date() <= LAST_DAY else None


def _check_due(value: str) -> str:
    parse_due(value)
    return value


def _lower_tag(value: str) -> str:
    # The limit counts after lower-casing: "İ".lower() is two characters.
    value = _no_nul(value).lower()
    if len(value) > 40:
        raise ValueError("must be at most 40 characters once lower-cased")
    return value


def _normalise_tags(tags: list[str]) -> list[str]:
    return list(dict.fromkeys(tags))


Text = Annotated[str, AfterValidator(_no_nul)]
# Constraints sit on `str` itself so the lengths count after trimming (pydantic checks them before
# stripping when they follow a validator).
Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), AfterValidator(_no_nul)]
Description = Annotated[Text, StringConstraints(max_length=8000)]
Tag = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=40), AfterValidator(_lower_tag)]
Tags = Annotated[list[Tag], PField(max_length=20), AfterValidator(_normalise_tags)]
TaskId = Annotated[int, PField(ge=1, le=MAX_ID, description="Task id in the workspace.")]
Assignee = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255), AfterValidator(_no_nul)
]
Due = Annotated[str, StringConstraints(max_length=40), AfterValidator(_check_due)]
IdempotencyKeyStr = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100), AfterValidator(_no_nul)
]
Timezone = Annotated[str, StringConstraints(max_length=64), AfterValidator(_check_timezone)]


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TaskCreate(_Input):
    title: Title = PField(description="Short summary, 1-200 chars.")
    description: Description | None = PField(default=None, description="Details, up to 8000 chars.")
    priority: Priority = PField(default="none", description="Urgency.")
    due: Due | None = PField(default=None, description="Date (2026-12-01, all day) or datetime with offset.")
    tags: Tags = PField(default_factory=list, description="Up to 20 labels; lower-cased.")
    parent_id: TaskId | None = PField(default=None, description="Id of the parent task, for a subtask.")
    assignee: Assignee | None = PField(default=None, description="'me', a member's user id or email.")


class TaskUpdate(_Input):
    title: Title | None = PField(default=None, description="New title.")
    description: Description | None = PField(default=None, description="New description.")
    priority: Priority | None = PField(default=None, description="New priority.")
    due: Due | None = PField(default=None, description="New due date or datetime with offset.")
    tags: Tags | None = PField(default=None, description="Replaces all tags.")
    status: Status | None = PField(default=None, description="'open' reopens a completed task.")
    parent_id: TaskId | None = PField(default=None, description="New parent task.")
    assignee: Assignee | None = PField(default=None, description="'me', a member's user id or email.")
    clear: list[ClearableField] = PField(default_factory=list, max_length=4, description="Fields to empty.")
    expected_version: int | None = PField(
        default=None, ge=1, le=MAX_ID, description="Fail with conflict unless the task is at this version."
    )

    @field_validator("clear", mode="after")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))


class TaskQuery(_Input):
    status: Literal["open", "completed", "all"] = PField(default="open", description="Which tasks.")
    priority: list[Priority] | None = PField(default=None, max_length=5, description="Any of these.")
    tags: Tags | None = PField(default=None, description="Tasks having all of these tags.")
    text: Text | None = PField(
        default=None, max_length=200, description="Case-insensitive search in title and description."
    )
    due_before: Due | None = PField(default=None, description="Inclusive; date or datetime.")
    due_after: Due | None = PField(default=None, description="Inclusive; date or datetime.")
    overdue: bool = PField(default=False, description="Only open tasks whose due has passed.")
    parent_id: TaskId | None = PField(default=None, description="Only direct subtasks of this task.")
    assignee: Assignee | None = PField(default=None, description="'me', a user id, an email, or 'none'.")
    sort: Sort = PField(
        default="created", description="created/updated: newest first; due: soonest, undated last; priority."
    )
    limit: int = PField(default=20, ge=1, le=100, description="Page size.")
    cursor: str | None = PField(default=None, max_length=500, description="next_cursor of the previous page.")

    @field_validator("cursor", mode="before")
    @classmethod
    def _empty_cursor_is_first_page(cls, value: object) -> object:
        return None if value == "" else value

    include_description: bool = PField(default=False, description="Full tasks: description, timestamps.")
    timezone: Timezone = PField(default="UTC", description="IANA zone for dates and overdue.")


# --- Output shapes --------------------------------------------------------------------------------


class TaskOut(BaseModel):
    id: int
    title: str
    description: str | None = None
    status: Status
    priority: Priority
    due: str | None
    tags: list[str]
    parent_id: int | None
    created_at: str
    updated_at: str
    completed_at: str | None
    version: int
    created_by: str
    assignee: str | None = None


def format_instant(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(dt.UTC).replace(microsecond=0, tzinfo=None).isoformat() + "Z"


def task_out(row: Row[Any]) -> TaskOut:
    """The public shape of a row of `TASKS`: the one place a stored task becomes a `TaskOut`."""
    due = row.due_date.isoformat() if row.due_date is not None else format_instant(row.due_at)
    return TaskOut(
        id=row.number,
        title=row.title,
        description=row.description,
        status=row.status,
        priority=PRIORITIES[row.priority],
        due=due,
        tags=row.tags.split("\n") if row.tags else [],
        parent_id=row.parent_number,
        created_at=format_instant(row.created_at) or "",
        updated_at=format_instant(row.updated_at) or "",
        completed_at=format_instant(row.completed_at),
        version=row.version,
        created_by=row.created_by,
        assignee=row.assignee,
    )
