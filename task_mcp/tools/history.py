"""The `history` toolset: `list_changes` (the journal, newest first) and `undo_change`."""

from __future__ import annotations

from typing import Any

from pydantic import Field as PField
from pydantic import field_validator

from task_mcp.models import MAX_ID, TaskId
from task_mcp.service import TaskService
from task_mcp.service.journal import ChangePage, Receipt
from task_mcp.service.workspaces import Caller
from task_mcp.tools.base import Args, ToolSpec, WorkspaceResult, WriteResult


class ListChangesArgs(Args):
    task_id: TaskId | None = PField(default=None, description="Only changes that touched this task.")
    by: str | None = PField(default=None, min_length=1, max_length=255, description="'me' or a user id.")
    limit: int = PField(default=20, ge=1, le=50, description="Page size.")
    cursor: str | None = PField(default=None, max_length=500, description="next_cursor of the previous page.")

    @field_validator("cursor", mode="before")
    @classmethod
    def _empty_cursor_is_first_page(cls, value: object) -> object:
        return None if value == "" else value


class UndoArgs(Args):
    change_id: int = PField(ge=1, le=MAX_ID, description="The change to undo (from list_changes or a write result).")


class ChangesResult(WorkspaceResult):
    changes: list[dict[str, Any]] = PField(
        description="newest first, each {change_id, at, tool, by {user_id, name, client}, task_ids (at most 20; "
        "task_count when more), summary, undoes, undone_by}"
    )
    next_cursor: str | None


class UndoResult(WriteResult):
    undoes: int


def _lines(changes: list[dict[str, Any]]) -> list[str]:
    """A line per change, under a heading per run of the same author, client and day."""
    lines: list[str] = []
    heading = None
    for change in changes:
        by = change["by"]
        who = by.get("name") or by["user_id"]
        via = f" via {by['client']}" if by.get("client") else ""
        this = f"{who}{via}, {change['at'][:10]}:"
        if this != heading:
            lines.append(this)
            heading = this
        undone = f" [undone by {change['undone_by']}]" if "undone_by" in change else ""
        lines.append(f"{change['change_id']} {change['at'][11:16]} {change['summary']}{undone}")
    return lines


def _list(service: TaskService, caller: Caller, args: ListChangesArgs, receipt: Receipt) -> ChangePage:
    return service.list_changes(
        caller, workspace=args.workspace, task_id=args.task_id, by=args.by, limit=args.limit, cursor=args.cursor
    )


def _render_list(args: ListChangesArgs, page: ChangePage) -> tuple[dict[str, Any], str]:
    lines = _lines(page.changes) or ["no changes"]
    if page.next_cursor:
        lines.append(f"more: cursor={page.next_cursor}")
    return {"changes": page.changes, "next_cursor": page.next_cursor}, "\n".join(lines)


def _undo(service: TaskService, caller: Caller, args: UndoArgs, receipt: Receipt) -> int:
    return service.undo_change(caller, args.change_id, workspace=args.workspace, receipt=receipt)


def _render_undo(args: UndoArgs, change_id: int) -> tuple[dict[str, Any], str]:
    return {"undoes": args.change_id}, (
        f"undid change {args.change_id} as change {change_id}; undo_change with change_id {change_id} redoes it"
    )


TOOLS: tuple[ToolSpec[Any, Any], ...] = (
    ToolSpec(
        "list_changes",
        "List changes",
        "The history of a workspace, newest first: who changed what, when, with which client, as one-line "
        "summaries. Filter by task_id or by ('me' or a user id). Use it to review an agent's work or to find "
        "the change_id to undo.",
        ListChangesArgs,
        ChangesResult,
        write=False,
        destructive=False,
        idempotent=True,
        call=_list,
        render=_render_list,
        toolset="history",
    ),
    ToolSpec(
        "undo_change",
        "Undo a change",
        "Put every task a change touched back as it was before, as a new change (undoing an undo redoes). "
        "Fails with conflict, changing nothing, if a task changed since: undo the later changes it names first.",
        UndoArgs,
        UndoResult,
        write=True,
        destructive=True,
        idempotent=True,
        call=_undo,
        render=_render_undo,
        toolset="history",
    ),
)
