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
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, StringConstraints, field_validator
from pydantic import Field as PField
from sqlalchemy import Column, Index, String, Table, UnicodeText, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from task_mcp.columns import KEY_LENGTH as KEY_LENGTH
from task_mcp.columns import UTCDateTime as UTCDateTime
from task_mcp.columns import utc_column as _utc_column
from task_mcp.dates import format_instant, parse_due
from task_mcp.records import CHANGE_TASKS as CHANGE_TASKS
from task_mcp.records import CHANGES as CHANGES

MAX_ID = 2**31 - 1
Status = Literal["open", "completed"]
Priority = Literal["none", "low", "medium", "high", "urgent"]
PRIORITIES: tuple[Priority, ...] = ("none", "low", "medium", "high", "urgent")
ClearableField = Literal["description", "due", "parent_id", "assignee", "blocked_by", "repeat"]
Sort = Literal["created", "due", "priority", "updated"]


# --- Tables -------------------------------------------------------------------------------------


def _live_index(name: str, *columns: Any, where: str = "deleted_at IS NULL") -> Index:
    return Index(name, *columns, sqlite_where=text(where), postgresql_where=text(where))


def _ready_index(stream: str, *due: str, where: str) -> Index:
    # Claim order (DESIGN §10): priority highest first, then the stream's due, then id.
    keys = ("owner_id", "status", text("priority DESC"), *due, "number")
    return _live_index(f"ix_tasks_ready_{stream}", *keys, where=f"deleted_at IS NULL AND {where}")


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
        _live_index("ix_tasks_owner_trash", "owner_id", "deleted_at", "number", where="deleted_at IS NOT NULL"),
        # ready lists and claim_task (migration 0010): each stream of the ready order, and live claims.
        _ready_index("due_at", "due_at", where="due_at IS NOT NULL"),
        _ready_index("due_date", "due_date", where="due_date IS NOT NULL"),
        _ready_index("undated", where="due_at IS NULL AND due_date IS NULL"),
        _live_index("ix_tasks_owner_claim", "owner_id", "claim_until", where="claim_until IS NOT NULL"),
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
    # The blockers' numbers, ","-joined, for output and the journal; `task_links` holds them for queries.
    blocked_by: str = Field(default="", sa_column=Column(String(600), nullable=False, server_default=""))
    # A claim (DESIGN §10): live while claim_until is in the future. claim_id is a secret of its holder.
    claim_id: str | None = Field(default=None, max_length=64)
    claim_user: str | None = Field(default=None, max_length=255)
    claim_client: str | None = Field(default=None, max_length=255)
    claim_until: dt.datetime | None = _utc_column(nullable=True)
    # Repeating (DESIGN §11): the normalized RRULE, the zone a datetime due keeps its local time in,
    # and the series start, stored like the due (COUNT counts from it, whatever the due becomes).
    repeat: str | None = Field(default=None, max_length=500)
    repeat_timezone: str | None = Field(default=None, max_length=64)
    repeat_start_at: dt.datetime | None = _utc_column(nullable=True)
    repeat_start_date: dt.date | None = None


class TaskTag(SQLModel, table=True):
    """One row per tag of a task. It carries a copy of its task's list keys, filled and kept equal
    to the task by triggers (migration 0008), so a tag page and its total are one index range."""

    __tablename__ = "task_tags"
    __table_args__ = (
        Index("ix_task_tags_owner_tag", "owner_id", "tag", "task_pk"),
        _live_index("ix_task_tags_page", "owner_id", "tag", "created_at", "number", "status", "priority", "deleted_at"),
    )

    task_pk: int = Field(foreign_key="tasks.pk", primary_key=True, ondelete="CASCADE")
    tag: str = Field(primary_key=True, max_length=40)
    owner_id: str = Field(max_length=KEY_LENGTH)
    # Copies of the task's columns (set by the database, never by the service).
    status: str | None = Field(default=None, max_length=16)
    priority: int | None = None
    number: int | None = None
    created_at: dt.datetime | None = _utc_column(nullable=True)
    deleted_at: dt.datetime | None = _utc_column(nullable=True)


class TaskCounter(SQLModel, table=True):
    """Each workspace's last task number; its row lock keeps numbers gap-free under concurrency."""

    __tablename__ = "task_counters"

    owner_id: str = Field(primary_key=True, max_length=KEY_LENGTH)
    last_number: int = 0
    last_change: int = 0  # the workspace's last change_id (the journal)
    # Tasks by state, kept by triggers on `tasks` (migration 0009): list_tasks' total when its
    # filter is only a status. Deleted ones are counted whether or not still restorable.
    open_tasks: int = 0
    completed_tasks: int = 0
    deleted_tasks: int = 0


class IdempotencyKey(SQLModel, table=True):
    __tablename__ = "idempotency_keys"
    __table_args__ = (Index("ix_idempotency_keys_created_at", "created_at"),)

    owner_id: str = Field(primary_key=True, max_length=KEY_LENGTH)  # keys are per workspace and caller
    user_id: str = Field(primary_key=True, max_length=255)
    key: str = Field(primary_key=True, max_length=100)
    request_hash: str = Field(max_length=64)  # the tool's name and arguments, hashed
    numbers: str = Field(max_length=1200)  # the created task numbers, comma-separated
    change_id: int | None = None  # the change the key made: a replay answers it
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
    """Text both databases can store: no NUL, and valid Unicode (JSON may carry a lone surrogate)."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate ("\ud800" in JSON): no database can store it
            raise ValueError("must be valid Unicode text; it holds a lone surrogate") from None
    return value


no_nul = _no_nul  # the same check for other modules' strings (workspace names)


def _check_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    # A directory of the zone database ("America") raises IsADirectoryError, another file that is
    # not a zone raises ValueError or an OSError: all of them are just "not a zone name".
    except (ZoneInfoNotFoundError, ValueError, OSError, UnicodeError):
        raise ValueError("is not an IANA time zone name such as 'Europe/Paris' or 'UTC'") from None
    return value


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
TaskId = Annotated[int, PField(ge=1, le=MAX_ID)]  # the name says what it is: no description (DESIGN §4 budget)
Assignee = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255), AfterValidator(_no_nul)
]
Due = Annotated[str, StringConstraints(max_length=40), AfterValidator(_check_due)]
IdempotencyKeyStr = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100), AfterValidator(_no_nul)
]
Timezone = Annotated[str, StringConstraints(max_length=64), AfterValidator(_check_timezone)]
BlockedBy = Annotated[list[TaskId], PField(max_length=50), AfterValidator(lambda ids: list(dict.fromkeys(ids)))]
BLOCKED_BY = "Tasks to complete first; replaces the list."
RepeatRule = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500), AfterValidator(_no_nul)
]
REPEAT = "RRULE or phrase, e.g. 'every monday'."
REPEAT_ZONE = "IANA zone; a timed repeat needs it."
AS_IN_CREATE = "As in create_task."


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TaskCreate(_Input):
    title: Title
    description: Description | None = None
    priority: Priority = "none"
    due: Due | None = PField(default=None, description="Date (2026-12-01, all day) or datetime with offset.")
    tags: Tags = PField(default_factory=list, description="Lower-cased.")
    parent_id: TaskId | None = PField(default=None, description="Parent task id.")
    assignee: Assignee | None = PField(default=None, description="'me', a member's user id or email.")
    blocked_by: BlockedBy | None = PField(default=None, description=BLOCKED_BY)
    repeat: RepeatRule | None = PField(default=None, description=REPEAT)
    timezone: Timezone | None = PField(default=None, description=REPEAT_ZONE)


class TaskUpdate(_Input):
    title: Title | None = None
    description: Description | None = None
    priority: Priority | None = None
    due: Due | None = PField(default=None, description="Date or datetime with offset.")
    tags: Tags | None = PField(default=None, description="Replaces all tags.")
    status: Status | None = PField(default=None, description="'open' reopens it.")
    parent_id: TaskId | None = PField(default=None, description="Parent task id.")
    assignee: Assignee | None = PField(default=None, description="'me', a member's user id or email.")
    blocked_by: BlockedBy | None = PField(default=None, description=BLOCKED_BY)
    repeat: RepeatRule | None = PField(default=None, description=AS_IN_CREATE)
    timezone: Timezone | None = PField(default=None, description=AS_IN_CREATE)
    clear: list[ClearableField] = PField(default_factory=list, max_length=6, description="Fields to empty.")
    expected_version: int | None = PField(
        default=None, ge=1, le=MAX_ID, description="Conflict unless the task has this version."
    )

    @field_validator("clear", mode="after")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))


class TaskQuery(_Input):
    status: Literal["open", "completed", "all", "deleted"] = PField(default="open", description="deleted: the trash.")
    priority: list[Priority] | None = PField(default=None, max_length=5, description="Any of these.")
    tags: Tags | None = PField(default=None, description="All of these.")
    text: Text | None = PField(default=None, max_length=200, description="Search title and description.")
    due_before: Due | None = PField(default=None, description="Inclusive; date or datetime.")
    due_after: Due | None = PField(default=None, description="Inclusive; date or datetime.")
    overdue: bool = PField(default=False, description="Open tasks past due.")
    parent_id: TaskId | None = PField(default=None, description="Direct subtasks of it.")
    assignee: Assignee | None = PField(default=None, description="'me', a user id, an email, or 'none'.")
    ready: bool = PField(default=False, description="Open, unblocked, unclaimed only.")
    sort: Sort = PField(default="created", description="created/updated: newest first; due: soonest, undated last.")
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
    blocked_by: list[int] = []
    blocked: bool = False
    claim: dict[str, Any] | None = None
    repeat: str | None = None
    repeat_timezone: str | None = None  # only while it repeats with a time of day
    deleted_at: str | None = None  # only in the trash
    notes: list[dict[str, Any]] | None = None  # get_task only
    notes_total: int | None = None
    # A write that completed an occurrence of a repeating task: {due, next_due}. Results carry it
    # next to the task, not inside it, so it is left out of the task's own dump.
    completed_occurrence: dict[str, str | None] | None = PField(default=None, exclude=True)


def task_out(
    row: Mapping[str, Any], now: dt.datetime | None = None, blockers: Sequence[tuple[int, bool]] = ()
) -> TaskOut:
    """The public shape of a stored task (a row of `TASKS`, by column name): the one place a stored
    task becomes a `TaskOut`. `blockers`: (number, open) of the live tasks it stores in blocked_by;
    `now` shows a live claim."""
    due = row["due_date"].isoformat() if row["due_date"] is not None else format_instant(row["due_at"])
    claim = None
    claim_until = row["claim_until"]
    if now is not None and claim_until is not None and claim_until > now:
        holder = {"user_id": row["claim_user"]} | ({"client": row["claim_client"]} if row["claim_client"] else {})
        claim = {"holder": holder, "expires_at": format_instant(claim_until)}
    return TaskOut(
        id=row["number"],
        title=row["title"],
        description=row["description"],
        status=row["status"],
        priority=PRIORITIES[row["priority"]],
        due=due,
        tags=row["tags"].split("\n") if row["tags"] else [],
        parent_id=row["parent_number"],
        created_at=format_instant(row["created_at"]) or "",
        updated_at=format_instant(row["updated_at"]) or "",
        completed_at=format_instant(row["completed_at"]),
        version=row["version"],
        created_by=row["created_by"],
        assignee=row["assignee"],
        blocked_by=[number for number, _ in blockers],
        blocked=any(is_open for _, is_open in blockers),
        claim=claim,
        repeat=row["repeat"],
        repeat_timezone=row["repeat_timezone"],
        deleted_at=format_instant(row["deleted_at"]),
    )
