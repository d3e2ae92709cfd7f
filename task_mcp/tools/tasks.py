"""The `tasks` toolset: list, get, create, update, complete, delete and restore tasks."""

from __future__ import annotations

from typing import Annotated, Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, WithJsonSchema
from pydantic import Field as PField

from task_mcp.models import MAX_ID, IdempotencyKeyStr, TaskCreate, TaskId, TaskOut, TaskQuery, TaskUpdate
from task_mcp.service import TaskService
from task_mcp.service.journal import Receipt
from task_mcp.service.listing import TaskPage
from task_mcp.service.workspaces import Caller
from task_mcp.tools.base import Args, ToolSpec, WorkspaceResult, WriteResult, compact, full, line, one

# --- Tool arguments and results ------------------------------------------------------------------


class TaskIdArgs(Args):
    task_id: TaskId


class CompleteArgs(TaskIdArgs):
    expected_version: int | None = PField(
        default=None, ge=1, le=MAX_ID, description="Conflict unless the task is at this version."
    )


class ListArgs(TaskQuery, Args):
    pass


class CreateTaskArgs(TaskCreate, Args):
    idempotency_key: IdempotencyKeyStr | None = PField(
        default=None, description="Same key again returns the first result."
    )


# Items are described in words, not as a second copy of create_task's schema (DESIGN §4's budget);
# pydantic still checks every item and names it in its errors (tasks[3].title: ...).
OBJECT = WithJsonSchema({"type": "object"})


class CreateTasksArgs(Args):
    tasks: Annotated[
        list[Annotated[TaskCreate, OBJECT]],
        PField(min_length=1, max_length=100, description="Each item takes create_task's fields (title required)."),
    ]
    idempotency_key: IdempotencyKeyStr | None = PField(default=None, description="As in create_task.")


class UpdateTaskArgs(TaskUpdate, Args):
    task_id: TaskId


# Tasks are described in words, not field by field: clients check structuredContent against the
# outputSchema, and a per-field task schema in every result cost more of the tool list than the
# tools themselves (DESIGN §4's budget).
TASK_WORDS = (
    "id, title, description, status, priority, due, tags, parent_id, created_at, updated_at, completed_at, "
    "version, created_by, assignee, blocked_by, blocked, claim {holder, expires_at}, repeat (+ its timezone), "
    "notes (newest 20 {note_id, at, by (left out: as the note before), text}), notes_total; deleted_at in the trash"
)
Task = Annotated[dict[str, Any], PField(description=TASK_WORDS)]
# Results of writes refer to get_task's description rather than repeating it in every schema.
ChangedTask = Annotated[dict[str, Any], PField(description="as get_task returns it")]


class TaskResult(WorkspaceResult):
    task: Task


class ChangedResult(WriteResult):
    task: ChangedTask


class CompletedResult(ChangedResult):
    completed_occurrence: dict[str, Any] | None = PField(default=None, description="{due, next_due}")


class CreatedResult(WriteResult):
    task: ChangedTask
    created: bool


class CreatedManyResult(WriteResult):
    tasks: list[dict[str, Any]] = PField(description="as get_task returns them")
    created: bool


class ListResult(WorkspaceResult):
    tasks: list[dict[str, Any]] = PField(
        description="compact (no description, timestamps, nulls) unless include_description"
    )
    next_cursor: str | None
    total: int
    now: str = PField(description="current time in timezone")


class DeletedResult(WriteResult):
    task_id: int
    deleted: bool


# --- What each tool does: call the service, then shape the result ---------------------------------


def _task(args: BaseModel, task: TaskOut) -> tuple[dict[str, Any], str]:
    return one(task)


def _list(service: TaskService, caller: Caller, args: ListArgs, receipt: Receipt) -> TaskPage:
    query = TaskQuery.model_validate(args.model_dump(exclude={"workspace"}, exclude_unset=True))
    return service.list_tasks(caller, query, workspace=args.workspace)


def _render_list(args: ListArgs, page: TaskPage) -> tuple[dict[str, Any], str]:
    shape = full if args.include_description else compact
    tasks = [shape(t) for t in page.tasks]
    lines = [f"{len(tasks)} of {page.total} tasks"] + [line(t, tags=False) for t in page.tasks]
    if page.next_cursor:
        lines.append(f"more: cursor={page.next_cursor}")
    now = page.now.astimezone(ZoneInfo(args.timezone)).replace(microsecond=0).isoformat()
    lines[0] += f" (now {now})"
    return {"tasks": tasks, "next_cursor": page.next_cursor, "total": page.total, "now": now}, "\n".join(lines)


def _get(service: TaskService, caller: Caller, args: TaskIdArgs, receipt: Receipt) -> TaskOut:
    return service.get_task(caller, args.task_id, workspace=args.workspace)


def _create(service: TaskService, caller: Caller, args: CreateTaskArgs, receipt: Receipt) -> tuple[TaskOut, bool]:
    data = TaskCreate.model_validate(args.model_dump(exclude={"idempotency_key", "workspace"}))
    return service.create_task(caller, data, args.idempotency_key, workspace=args.workspace, receipt=receipt)


def _render_create(args: CreateTaskArgs, answer: tuple[TaskOut, bool]) -> tuple[dict[str, Any], str]:
    task, created = answer
    structured, text = one(task, created=created)
    return structured, text if created else f"already created: {text}"


def _create_many(
    service: TaskService, caller: Caller, args: CreateTasksArgs, receipt: Receipt
) -> tuple[list[TaskOut], bool]:
    return service.create_tasks(caller, args.tasks, args.idempotency_key, workspace=args.workspace, receipt=receipt)


def _render_create_many(args: CreateTasksArgs, answer: tuple[list[TaskOut], bool]) -> tuple[dict[str, Any], str]:
    tasks, created = answer
    head = f"{'created' if created else 'already created'} {len(tasks)} tasks"
    return (
        {"tasks": [full(t) for t in tasks], "created": created},
        "\n".join([head] + [line(t) for t in tasks]),
    )


def _update(service: TaskService, caller: Caller, args: UpdateTaskArgs, receipt: Receipt) -> TaskOut:
    changes = TaskUpdate.model_validate(args.model_dump(exclude={"task_id", "workspace"}, exclude_unset=True))
    return service.update_task(caller, args.task_id, changes, workspace=args.workspace, receipt=receipt)


def _complete(service: TaskService, caller: Caller, args: CompleteArgs, receipt: Receipt) -> TaskOut:
    return service.complete_task(caller, args.task_id, args.expected_version, workspace=args.workspace, receipt=receipt)


def _delete(service: TaskService, caller: Caller, args: TaskIdArgs, receipt: Receipt) -> int:
    return service.delete_task(caller, args.task_id, workspace=args.workspace, receipt=receipt)


def _render_delete(args: TaskIdArgs, count: int) -> tuple[dict[str, Any], str]:
    if count == 0:
        text = f"task {args.task_id} was already deleted"
    elif count == 1:
        text = f"deleted task {args.task_id}"
    else:
        text = f"deleted task {args.task_id} and {count - 1} subtask{'s' if count > 2 else ''}"
    return {"task_id": args.task_id, "deleted": True}, text + "; restore_task brings it back"


def _restore(service: TaskService, caller: Caller, args: TaskIdArgs, receipt: Receipt) -> TaskOut:
    return service.restore_task(caller, args.task_id, workspace=args.workspace, receipt=receipt)


TOOLS: tuple[ToolSpec[Any, Any], ...] = (
    ToolSpec(
        "list_tasks",
        "List tasks",
        "List tasks, open ones newest first by default, 20 per page; filters combine. "
        "total counts all matches; pass next_cursor back as cursor, with the same filters, for the next page.",
        ListArgs,
        ListResult,
        write=False,
        destructive=False,
        idempotent=True,
        call=_list,
        render=_render_list,
    ),
    ToolSpec(
        "get_task",
        "Get a task",
        "Get one task by id, with its description and newest notes.",
        TaskIdArgs,
        TaskResult,
        write=False,
        destructive=False,
        idempotent=True,
        call=_get,
        render=_task,
    ),
    ToolSpec(
        "create_task",
        "Create a task",
        "Create a task; returns it with its id. idempotency_key makes retries safe.",
        CreateTaskArgs,
        CreatedResult,
        write=True,
        destructive=False,
        idempotent=False,
        call=_create,
        render=_render_create,
    ),
    ToolSpec(
        "create_tasks",
        "Create several tasks",
        "Create 1-100 tasks, all or nothing (e.g. a plan's steps). Items cannot refer to each other: link "
        "them afterwards with update_tasks.",
        CreateTasksArgs,
        CreatedManyResult,
        write=True,
        destructive=False,
        idempotent=False,
        call=_create_many,
        render=_render_create_many,
    ),
    ToolSpec(
        "update_task",
        "Update a task",
        "Change some fields of a task; fields left out stay as they are, fields listed in clear are emptied.",
        UpdateTaskArgs,
        CompletedResult,
        write=True,
        destructive=True,
        idempotent=True,
        call=_update,
        render=_task,
    ),
    ToolSpec(
        "complete_task",
        "Complete a task",
        "Mark a task completed (again: no change). A repeating task moves to its next due, staying open; "
        "retry with expected_version.",
        CompleteArgs,
        CompletedResult,
        write=True,
        destructive=False,
        idempotent=False,
        call=_complete,
        render=_task,
    ),
    ToolSpec(
        "delete_task",
        "Delete a task",
        "Delete a task and its subtasks; restore_task brings them back until purged.",
        TaskIdArgs,
        DeletedResult,
        write=True,
        destructive=True,
        idempotent=True,
        call=_delete,
        render=_render_delete,
    ),
    ToolSpec(
        "restore_task",
        "Restore a task",
        "Bring back a deleted task and the subtasks deleted with it.",
        TaskIdArgs,
        ChangedResult,
        write=True,
        destructive=False,
        idempotent=True,
        call=_restore,
        render=_task,
    ),
)
