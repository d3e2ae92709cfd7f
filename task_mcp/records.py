"""Tables of what happens to tasks: the change journal (DESIGN §9), blocker links and notes (§10).

`owner_id` is the workspace key and `number` the task's number in it, as in `models.Task`.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Boolean, Column, Index, Table, UnicodeText, false
from sqlmodel import Field, SQLModel

from task_mcp.columns import KEY_LENGTH, utc_column


class Change(SQLModel, table=True):
    """One journal entry: a call that changed something (DESIGN §9)."""

    __tablename__ = "changes"
    __table_args__ = (Index("ix_changes_owner_by", "owner_id", "by_user", "change_id"), Index("ix_changes_at", "at"))

    owner_id: str = Field(primary_key=True, max_length=KEY_LENGTH)
    change_id: int = Field(primary_key=True)
    at: dt.datetime = utc_column(nullable=False)
    tool: str = Field(max_length=40)
    by_user: str = Field(max_length=255)
    by_name: str | None = Field(default=None, max_length=255)
    by_client: str | None = Field(default=None, max_length=255)
    summary: str = Field(max_length=160)
    task_count: int
    undoes: int | None = None
    undone_by: int | None = None


class ChangeTask(SQLModel, table=True):
    """A task a change touched: `kind` (created, fields, deleted, restored), its versions, and only
    the fields it changed (JSON `before`/`after`; the deletion state in columns of its own, so a
    subtree delete is journaled by one INSERT ... SELECT)."""

    __tablename__ = "change_tasks"
    __table_args__ = (Index("ix_change_tasks_owner_number", "owner_id", "number", "change_id"),)

    owner_id: str = Field(primary_key=True, max_length=KEY_LENGTH)
    change_id: int = Field(primary_key=True)
    number: int = Field(primary_key=True)
    kind: str = Field(max_length=10)
    version_before: int | None = None
    version_after: int
    before: str | None = Field(default=None, sa_column=Column(UnicodeText(), nullable=True))
    after: str | None = Field(default=None, sa_column=Column(UnicodeText(), nullable=True))
    deleted_before: dt.datetime | None = utc_column(nullable=True)
    deleted_after: dt.datetime | None = utc_column(nullable=True)
    group_before: int | None = None
    group_after: int | None = None


class TaskLink(SQLModel, table=True):
    """Task `number` is blocked by task `blocker` (same workspace); `tasks.blocked_by` mirrors it."""

    __tablename__ = "task_links"
    __table_args__ = (Index("ix_task_links_blocker", "owner_id", "blocker", "number"),)

    owner_id: str = Field(primary_key=True, max_length=KEY_LENGTH)
    number: int = Field(primary_key=True)
    blocker: int = Field(primary_key=True)


class TaskNote(SQLModel, table=True):
    """An append-only note on a task; `removed` by an undo (a redo brings it back)."""

    __tablename__ = "task_notes"
    __table_args__ = (Index("ix_task_notes_task", "owner_id", "number", "note_id"),)

    owner_id: str = Field(primary_key=True, max_length=KEY_LENGTH)
    note_id: int = Field(primary_key=True)
    number: int
    at: dt.datetime = utc_column(nullable=False)
    by_user: str = Field(max_length=255)
    by_name: str | None = Field(default=None, max_length=255)
    by_client: str | None = Field(default=None, max_length=255)
    text: str = Field(sa_column=Column(UnicodeText(), nullable=False))
    removed: bool = Field(default=False, sa_column=Column(Boolean(), nullable=False, server_default=false()))


CHANGES: Table = SQLModel.metadata.tables["changes"]
CHANGE_TASKS: Table = SQLModel.metadata.tables["change_tasks"]
TASK_LINKS: Table = SQLModel.metadata.tables["task_links"]
TASK_NOTES: Table = SQLModel.metadata.tables["task_notes"]
