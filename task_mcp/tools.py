"""The eight tools as the model sees them: arguments, results, descriptions, annotations.

Each `ToolSpec` names a function that calls one `TaskService` method and shapes its answer as
`structuredContent` plus a one-line-per-task text. `server.py` serves this table; nothing here
touches a transport or a token.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Generic, TypeVar

from mcp.types import Tool, ToolAnnotations
from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic import Field as PField

from task_mcp.errors import InvalidArgumentError
from task_mcp.models import IdempotencyKeyStr, TaskCreate, TaskId, TaskOut, TaskQuery, TaskUpdate
from task_mcp.service import TaskService
from task_mcp.service.listing import TaskPage

# --- Tool arguments and results ------------------------------------------------------------------


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TaskIdArgs(_Args):
    task_id: TaskId


class CreateTaskArgs(TaskCreate):
    idempotency_key: IdempotencyKeyStr | None = PField(
        default=None, description="Retry-safe: a repeat with the same key returns the first result."
    )


class CreateTasksArgs(_Args):
    tasks: Annotated[list[TaskCreate], PField(min_length=1, max_length=100, description="Tasks to create.")]
    idempotency_key: IdempotencyKeyStr | None = PField(default=None, description="As in create_task.")


class UpdateTaskArgs(TaskUpdate):
    task_id: TaskId


class TaskResult(BaseModel):
    task: TaskOut


class CreatedResult(BaseModel):
    task: TaskOut
    created: bool


class CreatedManyResult(BaseModel):
    tasks: list[TaskOut]
    created: bool


class ListResult(BaseModel):
    # Items are described in words, not field by field: clients check structuredContent against
    # the outputSchema, and for a page of 20 a per-field schema cost more than the whole call.
    tasks: list[dict[str, Any]] = PField(
        description="Tasks as get_task returns them; compact ones leave out description, timestamps and nulls."
    )
    next_cursor: str | None
    total: int


class DeletedResult(BaseModel):
    task_id: int
    deleted: bool


A = TypeVar("A", bound=BaseModel)
R = TypeVar("R")


@dataclass(frozen=True)
class ToolSpec(Generic[A, R]):
    """One tool: what the model sees, the service call it makes, and how its answer is shown.

    `call` runs the service (one transaction, committed when it returns); `render` turns its answer
    into `structuredContent` and text. They are two steps so that a failure while rendering is
    known to come after the commit. Generic in the argument model `A`, so that `args`, `call` and
    `render` cannot disagree about it.
    """

    name: str
    title: str
    description: str
    args: type[A]
    result: type[BaseModel]
    write: bool
    destructive: bool
    idempotent: bool
    call: Callable[[TaskService, str, A], R]
    render: Callable[[A, R], tuple[dict[str, Any], str]]


# --- What each tool does: call the service, then shape the result ---------------------------------

# DESIGN: compact list items leave these out, and every null field and every empty list.
COMPACT_EXCLUDE = {"description", "created_at", "updated_at", "completed_at", "created_by", "notes"}


def compact(task: TaskOut) -> dict[str, Any]:
    """A list item: what a model needs to pick a task; get_task has the rest."""
    data = task.model_dump(mode="json", exclude=COMPACT_EXCLUDE, exclude_none=True)
    return {k: v for k, v in data.items() if v != []}


def _line(task: TaskOut, *, tags: bool = True) -> str:
    """`#3 Buy milk (high, due 2026-12-01, tags: home)`; `[done]` marks a completed task.

    List pages leave the tags out of the text (they are in the structured items): a page of 20
    must fit the context budget.
    """
    details: list[str] = [task.priority] if task.priority != "none" else []
    if task.due:
        details.append(f"due {task.due}")
    if tags and task.tags:
        details.append("tags: " + " ".join(task.tags))
    if task.parent_id:
        details.append(f"subtask of #{task.parent_id}")
    done = " [done]" if task.status == "completed" else ""
    return f"#{task.id}{done} {task.title}" + (f" ({', '.join(details)})" if details else "")


def _one(task: TaskOut, **extra: Any) -> tuple[dict[str, Any], str]:
    return {"task": task.model_dump(mode="json"), **extra}, _line(task)


def _task(args: BaseModel, task: TaskOut) -> tuple[dict[str, Any], str]:
    return _one(task)


def _list(service: TaskService, user: str, args: TaskQuery) -> TaskPage:
    return service.list_tasks(user, args)


def _render_list(args: TaskQuery, page: TaskPage) -> tuple[dict[str, Any], str]:
    if args.include_description:
        tasks = [t.model_dump(mode="json") for t in page.tasks]
    else:
        tasks = [compact(t) for t in page.tasks]
    lines = [f"{len(tasks)} of {page.total} tasks"] + [_line(t, tags=False) for t in page.tasks]
    if page.next_cursor:
        lines.append(f"more: cursor={page.next_cursor}")
    return {"tasks": tasks, "next_cursor": page.next_cursor, "total": page.total}, "\n".join(lines)


def _get(service: TaskService, user: str, args: TaskIdArgs) -> TaskOut:
    return service.get_task(user, args.task_id)


def _create(service: TaskService, user: str, args: CreateTaskArgs) -> tuple[TaskOut, bool]:
    data = TaskCreate.model_validate(args.model_dump(exclude={"idempotency_key"}))
    return service.create_task(user, data, args.idempotency_key)


def _render_create(args: CreateTaskArgs, answer: tuple[TaskOut, bool]) -> tuple[dict[str, Any], str]:
    task, created = answer
    structured, text = _one(task, created=created)
    return structured, text if created else f"already created: {text}"


def _create_many(service: TaskService, user: str, args: CreateTasksArgs) -> tuple[list[TaskOut], bool]:
    return service.create_tasks(user, args.tasks, args.idempotency_key)


def _render_create_many(args: CreateTasksArgs, answer: tuple[list[TaskOut], bool]) -> tuple[dict[str, Any], str]:
    tasks, created = answer
    head = f"{'created' if created else 'already created'} {len(tasks)} tasks"
    return (
        {"tasks": [t.model_dump(mode="json") for t in tasks], "created": created},
        "\n".join([head] + [_line(t) for t in tasks]),
    )


def _update(service: TaskService, user: str, args: UpdateTaskArgs) -> TaskOut:
    changes = TaskUpdate.model_validate(args.model_dump(exclude={"task_id"}, exclude_unset=True))
    return service.update_task(user, args.task_id, changes)


def _complete(service: TaskService, user: str, args: TaskIdArgs) -> TaskOut:
    return service.complete_task(user, args.task_id)


def _delete(service: TaskService, user: str, args: TaskIdArgs) -> int:
    return service.delete_task(user, args.task_id)


def _render_delete(args: TaskIdArgs, count: int) -> tuple[dict[str, Any], str]:
    if count == 0:
        text = f"task {args.task_id} was already deleted"
    elif count == 1:
        text = f"deleted task {args.task_id}"
    else:
        text = f"deleted task {args.task_id} and {count - 1} subtask{'s' if count > 2 else ''}"
    return {"task_id": args.task_id, "deleted": True}, text + "; restore_task brings it back"


def _restore(service: TaskService, user: str, args: TaskIdArgs) -> TaskOut:
    return service.restore_task(user, args.task_id)


TOOLS: tuple[ToolSpec[Any, Any], ...] = (
    ToolSpec(
        "list_tasks",
        "List tasks",
        "List the user's tasks, newest first, 20 per page; filters combine. Defaults to open tasks. "
        "Returns compact tasks (no description or timestamps unless include_description), total "
        "matching, and next_cursor: pass it back as cursor, with the same filters, for the next page.",
        TaskQuery,
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
        "Get one task by id, with its description.",
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
        "Create one task in the user's list and return it with its id. Pass idempotency_key when "
        "a retry must not create a duplicate.",
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
        "Create 1-100 tasks at once, all or nothing (e.g. the steps of a plan). Items cannot refer "
        "to each other; set parent_id to an existing task.",
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
        "Change some fields of a task; fields left out stay as they are. To empty description, due "
        "or parent_id, list them in clear. status 'open' reopens. With expected_version the update "
        "fails with conflict if the task changed since you read it.",
        UpdateTaskArgs,
        TaskResult,
        write=True,
        destructive=True,
        idempotent=True,
        call=_update,
        render=_task,
    ),
    ToolSpec(
        "complete_task",
        "Complete a task",
        "Mark a task completed. Completing it again changes nothing.",
        TaskIdArgs,
        TaskResult,
        write=True,
        destructive=False,
        idempotent=True,
        call=_complete,
        render=_task,
    ),
    ToolSpec(
        "delete_task",
        "Delete a task",
        "Delete a task and its subtasks. restore_task brings them back until purged (30 days by default).",
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
        "Bring back a deleted task together with the subtasks deleted with it.",
        TaskIdArgs,
        TaskResult,
        write=True,
        destructive=False,
        idempotent=True,
        call=_restore,
        render=_task,
    ),
)


# --- Schemas: what the model sees, kept small ---------------------------------------------------


def compact_schema(schema: dict[str, Any], *, nullable: bool) -> dict[str, Any]:
    """Inline $defs and drop pydantic's titles. Inputs show optional fields as their plain type
    (every vendor's schema subset accepts that); outputs keep `["string", "null"]` and leave out
    what the inputs already say (enums) or the client need not check (required)."""
    defs = schema.get("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, list):
            return [walk(item) for item in node]
        if not isinstance(node, dict):
            return node
        if "$ref" in node:
            return walk(defs[node["$ref"].split("/")[-1]])
        out = {k: walk(v) for k, v in node.items() if k not in ("title", "$defs", "properties")}
        if "properties" in node:  # property names are data here, "title" among them
            out["properties"] = {name: walk(prop) for name, prop in node["properties"].items()}
        branches = out.get("anyOf")
        if branches and len(branches) == 2 and {"type": "null"} in branches:
            (real,) = [b for b in branches if b != {"type": "null"}]
            del out["anyOf"]
            if nullable and set(real) == {"type"}:
                out["type"] = [real["type"], "null"]
            elif nullable:
                out["anyOf"] = [real, {"type": "null"}]
            else:
                out = {**real, **out}
        if out.get("default", 0) is None:
            del out["default"]
        if nullable:  # outputs: the shape is what matters to the model; the enums are in the inputs
            out.pop("required", None)
            out.pop("enum", None)
        return out

    compacted: dict[str, Any] = walk(schema)
    return compacted


def mcp_tool(spec: ToolSpec[Any, Any]) -> Tool:
    return Tool(
        name=spec.name,
        title=spec.title,
        description=spec.description,
        input_schema=compact_schema(spec.args.model_json_schema(), nullable=False),
        output_schema=compact_schema(spec.result.model_json_schema(mode="serialization"), nullable=True),
        annotations=ToolAnnotations(
            read_only_hint=not spec.write,
            destructive_hint=spec.destructive,
            idempotent_hint=spec.idempotent,
            open_world_hint=False,
        ),
    )


def invalid_arguments(exc: ValidationError) -> InvalidArgumentError:
    problems = []
    for err in exc.errors(include_url=False, include_input=False)[:5]:
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"]).lstrip(".")
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "is not an argument of this tool; see its input schema"
        problems.append(f"{where or 'arguments'}: {message}")
    return InvalidArgumentError("; ".join(problems) + ". Nothing was changed; fix the arguments and call again.")
