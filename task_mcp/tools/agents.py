"""Agent coordination (DESIGN §10): `update_tasks` and `add_note` (in the `tasks` toolset) and the
`agents` toolset: `claim_task`, `release_task`."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, StringConstraints
from pydantic import Field as PField

from task_mcp.models import Assignee, Priority, Tags, TaskId, TaskOut, TaskQuery, TaskUpdate, Text
from task_mcp.service import TaskService
from task_mcp.service.agents import Claimed, Noted
from task_mcp.service.journal import Receipt
from task_mcp.service.repeats import describe
from task_mcp.service.workspaces import Caller
from task_mcp.tools.base import Args, ToolSpec, WriteResult, compact, line, one
from task_mcp.tools.tasks import OBJECT, CompletedResult

NoteText = Annotated[Text, StringConstraints(min_length=1, max_length=4000)]
ClaimId = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class UpdateItem(TaskUpdate):
    task_id: TaskId


class UpdateTasksArgs(Args):
    updates: list[Annotated[UpdateItem, OBJECT]] = PField(
        min_length=1,
        max_length=100,
        description="Each item takes task_id, expected_version and any update_task field.",
    )
    dry_run: bool = PField(default=False, description="Answer what would happen; change nothing.")


class UpdatedResult(WriteResult):
    tasks: list[dict[str, Any]] = PField(description="compact, in order (+ completed_occurrence)")
    dry_run: bool


class NoteArgs(Args):
    task_id: TaskId
    text: NoteText = PField(description="1-4000 chars.")


class NoteResult(WriteResult):
    task_id: int
    note: dict[str, Any] = PField(description="{note_id, at, by, text}")


class ClaimArgs(Args):
    task_id: TaskId | None = PField(default=None, description="Omit to take the first ready task matching the filters.")
    claim_id: ClaimId | None = PField(default=None, description="Your claim's id, to renew it.")
    lease_seconds: int = PField(default=1800, ge=60, le=86400, description="Claim length.")
    priority: list[Priority] | None = PField(default=None, max_length=5, description="Filter: any of these.")
    tags: Tags | None = PField(default=None, description="Filter: all of these.")
    assignee: Assignee | None = PField(default=None, description="Filter: 'me', user id, email or 'none'.")
    text: Text | None = PField(default=None, max_length=200, description="Filter: search title and description.")
    parent_id: TaskId | None = PField(default=None, description="Filter: subtasks of this task.")


class ClaimResult(WriteResult):
    task: dict[str, Any] | None = PField(description="as get_task returns it; null if none was ready")
    claim: dict[str, Any] | None = PField(description="{claim_id (keep it), holder, expires_at}")


class ReleaseArgs(Args):
    task_id: TaskId
    claim_id: ClaimId | None = PField(default=None, description="From claim_task.")
    outcome: Literal["released", "completed"] = PField(default="released", description="completed: complete it too.")
    note: NoteText | None = PField(default=None, description="Add this note too.")


def _update_many(service: TaskService, caller: Caller, args: UpdateTasksArgs, receipt: Receipt) -> list[TaskOut]:
    updates = [
        (item.task_id, TaskUpdate.model_validate(item.model_dump(exclude={"task_id"}, exclude_unset=True)))
        for item in args.updates
    ]
    return service.update_tasks(caller, updates, dry_run=args.dry_run, workspace=args.workspace, receipt=receipt)


def _render_many(args: UpdateTasksArgs, tasks: list[TaskOut]) -> tuple[dict[str, Any], str]:
    head = f"{'would update' if args.dry_run else 'updated'} {len(tasks)} tasks"
    items = [compact(t) | _occurrence(t) for t in tasks]
    lines = [head] + [
        f"{describe(t.completed_occurrence)}: {line(t)}" if t.completed_occurrence else line(t) for t in tasks
    ]
    return {"tasks": items, "dry_run": args.dry_run}, "\n".join(lines)


def _occurrence(task: TaskOut) -> dict[str, Any]:
    return {"completed_occurrence": task.completed_occurrence} if task.completed_occurrence is not None else {}


def _note(service: TaskService, caller: Caller, args: NoteArgs, receipt: Receipt) -> Noted:
    return service.add_note(caller, args.task_id, args.text, workspace=args.workspace, receipt=receipt)


def _render_note(args: NoteArgs, noted: Noted) -> tuple[dict[str, Any], str]:
    return {"task_id": noted.task_id, "note": noted.note}, f"note {noted.note['note_id']} added to #{noted.task_id}"


def _claim(service: TaskService, caller: Caller, args: ClaimArgs, receipt: Receipt) -> Claimed:
    filters = args.model_dump(include={"priority", "tags", "assignee", "text", "parent_id"}, exclude_unset=True)
    return service.claim_task(
        caller,
        args.task_id,
        claim_id=args.claim_id,
        lease_seconds=args.lease_seconds,
        query=TaskQuery.model_validate(filters),
        workspace=args.workspace,
        receipt=receipt,
    )


def _render_claim(args: ClaimArgs, claimed: Claimed) -> tuple[dict[str, Any], str]:
    if claimed.task is None or claimed.claim is None:
        return {"task": None, "claim": None}, "no ready task to claim"
    structured, text = one(claimed.task, claim=claimed.claim)
    return structured, f"claimed until {claimed.claim['expires_at']}: {text}"


def _release(service: TaskService, caller: Caller, args: ReleaseArgs, receipt: Receipt) -> TaskOut:
    return service.release_task(
        caller,
        args.task_id,
        claim_id=args.claim_id,
        outcome=args.outcome,
        note=args.note,
        workspace=args.workspace,
        receipt=receipt,
    )


def _render_release(args: BaseModel, task: TaskOut) -> tuple[dict[str, Any], str]:
    structured, text = one(task)
    return structured, f"released: {text}"


TASK_TOOLS: tuple[ToolSpec[Any, Any], ...] = (
    ToolSpec(
        "update_tasks",
        "Update several tasks",
        "Apply 1-100 update_task changes (each: task_id, own expected_version) as one change, all or nothing; "
        "errors name the item. Use it to link tasks created together (blocked_by); dry_run previews.",
        UpdateTasksArgs,
        UpdatedResult,
        write=True,
        destructive=True,
        idempotent=True,
        call=_update_many,
        render=_render_many,
    ),
    ToolSpec(
        "add_note",
        "Add a note",
        "Append a note to a task (a work log: what was done, found, decided). get_task shows the newest 20.",
        NoteArgs,
        NoteResult,
        write=True,
        destructive=False,
        idempotent=False,
        call=_note,
        render=_render_note,
    ),
)

AGENT_TOOLS: tuple[ToolSpec[Any, Any], ...] = (
    ToolSpec(
        "claim_task",
        "Claim a task",
        "Take a task for a while so other agents leave it: task_id, or none to take the first ready task "
        "(open, unblocked, unclaimed; priority, then due, then id) matching the filters. Returns the claim "
        "with its claim_id: keep it to renew (same call with claim_id) or release. task null: none ready.",
        ClaimArgs,
        ClaimResult,
        write=True,
        destructive=False,
        idempotent=False,
        call=_claim,
        render=_render_claim,
        toolset="agents",
    ),
    ToolSpec(
        "release_task",
        "Release a claimed task",
        "End your claim on a task, optionally completing it (outcome completed) and adding a note, in one change.",
        ReleaseArgs,
        CompletedResult,
        write=True,
        destructive=False,
        idempotent=False,
        call=_release,
        render=_render_release,
        toolset="agents",
    ),
)
