"""What every tool shares: `ToolSpec`, the `workspace` argument, task rendering, compact schemas.

Each `ToolSpec` names a function that calls one `TaskService` method and shapes its answer as
`structuredContent` plus a one-line-per-task text. `server.py` serves the table of `tools/`;
nothing here touches a transport or a token.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Generic, TypeVar

from mcp.types import Tool, ToolAnnotations
from pydantic import AfterValidator, BaseModel, ConfigDict, StringConstraints, ValidationError
from pydantic import Field as PField

from task_mcp.config import Toolset
from task_mcp.errors import InvalidArgumentError
from task_mcp.models import TaskOut, no_nul
from task_mcp.service import TaskService
from task_mcp.service.journal import Receipt
from task_mcp.service.repeats import describe
from task_mcp.service.workspaces import Caller

WorkspaceName = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255), AfterValidator(no_nul)
]


# Arguments of every tool: unknown ones are refused, and `workspace` is always accepted. (No
# docstrings on argument models: pydantic would send them to the model as schema descriptions.)
class Args(BaseModel):
    model_config = ConfigDict(extra="forbid")

    workspace: WorkspaceName | None = PField(default=None, description="'personal' (default) or org slug/id.")


class WorkspaceResult(BaseModel):
    workspace: str


class WriteResult(WorkspaceResult):
    # The journal entry (list_changes, undo_change).
    change_id: int | None = PField(description="null if nothing changed")


A = TypeVar("A", bound=BaseModel)
R = TypeVar("R")


@dataclass(frozen=True)
class ToolSpec(Generic[A, R]):
    """One tool: what the model sees, the service call it makes, and how its answer is shown.

    `call` runs the service (one transaction, committed when it returns; a write fills the
    `Receipt` with the change it journaled, which `server.py` adds as `change_id`); `render` turns its answer
    into `structuredContent` and text. They are two steps so that a failure while rendering is
    known to come after the commit. Generic in the argument model `A`, so that `args`, `call` and
    `render` cannot disagree about it. `server.py` adds the served workspace (`names_workspace`).
    """

    name: str
    title: str
    description: str
    args: type[A]
    result: type[BaseModel]
    write: bool
    destructive: bool
    idempotent: bool
    call: Callable[[TaskService, Caller, A, Receipt], R]
    render: Callable[[A, R], tuple[dict[str, Any], str]]
    toolset: Toolset = "tasks"
    names_workspace: bool = True  # the result names the workspace it was served from
    meta: dict[str, Any] | None = None  # the tool definition's `_meta` (list_tasks: the board it links)


# --- What each tool does: call the service, then shape the result ---------------------------------

# DESIGN: compact list items leave these out, and every null field and every empty list.
COMPACT_EXCLUDE = {"description", "created_at", "updated_at", "completed_at", "created_by", "notes"}
# A task's fields in order. Every value of a `TaskOut` is already JSON (strings, numbers, lists,
# dicts), so a result reads them straight off it instead of running pydantic's serializer.
_FIELDS = tuple(name for name, field in TaskOut.model_fields.items() if not field.exclude)
_COMPACT_FIELDS = tuple(name for name in _FIELDS if name not in COMPACT_EXCLUDE)


def compact(task: TaskOut) -> dict[str, Any]:
    """A list item: what a model needs to pick a task; get_task has the rest."""
    values = task.__dict__
    data = {name: values[name] for name in _COMPACT_FIELDS if values[name] is not None and values[name] != []}
    if not task.blocked:  # blocked_by only while blocked
        data.pop("blocked_by", None)
        data.pop("blocked")
    return data


def line(task: TaskOut, *, tags: bool = True) -> str:
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
    if task.repeat:
        details.append(f"repeats {task.repeat}")
    done = " [done]" if task.status == "completed" else ""
    if task.deleted_at:
        done += f" [deleted {task.deleted_at}]"
    return f"#{task.id}{done} {task.title}" + (f" ({', '.join(details)})" if details else "")


def full(task: TaskOut) -> dict[str, Any]:
    """A whole task; `deleted_at` only in the trash, notes only from get_task.

    A note leaves out `by` when it is the same as the note before it (newer): twenty notes of one
    author repeated it twenty times, which alone put get_task over DESIGN §4's 6,000 bytes."""
    values = task.__dict__
    data = {name: values[name] for name in _FIELDS}
    for name in ("repeat_timezone", "deleted_at", "notes", "notes_total"):
        if data[name] is None:
            del data[name]
    if "notes" in data:
        data["notes"] = notes = [dict(note) for note in data["notes"]]  # the task's own stay whole
        previous = None
        for note in notes:
            if note["by"] == previous:
                del note["by"]
            else:
                previous = note["by"]
    return data


def one(task: TaskOut, **extra: Any) -> tuple[dict[str, Any], str]:
    """A result about one task; a completed occurrence of a repeating task goes next to it (DESIGN §11)."""
    if task.completed_occurrence is not None:
        extra["completed_occurrence"] = task.completed_occurrence
        return {"task": full(task), **extra}, f"{describe(task.completed_occurrence)}: {line(task)}"
    return {"task": full(task), **extra}, line(task)


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
            if out.get("additionalProperties") is True:  # the default of JSON Schema
                del out["additionalProperties"]
        return out

    compacted: dict[str, Any] = walk(schema)
    return compacted


def output_words(result: type[BaseModel]) -> dict[str, Any]:
    """A result's schema in words: its fields, each with its description. A field-by-field schema
    in every tool cost more of DESIGN §4's context budget than it told the model; clients still
    get an object schema to check structuredContent against."""
    fields = [
        f"{name}: {field.description}" if field.description else name for name, field in result.model_fields.items()
    ]
    return {"type": "object", "description": "{" + "; ".join(fields) + "}"}


def mcp_tool(spec: ToolSpec[Any, Any]) -> Tool:
    return Tool(
        name=spec.name,
        title=spec.title,
        description=spec.description,
        input_schema=compact_schema(spec.args.model_json_schema(), nullable=False),
        output_schema=output_words(spec.result),
        annotations=ToolAnnotations(
            read_only_hint=not spec.write,
            destructive_hint=spec.destructive,
            idempotent_hint=spec.idempotent,
            open_world_hint=False,
        ),
        meta=spec.meta,
    )


def invalid_arguments(exc: ValidationError) -> InvalidArgumentError:
    problems = []
    for err in exc.errors(include_url=False, include_input=False)[:5]:
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"]).lstrip(".")
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            # Items of create_tasks and update_tasks are described in words, not in the schema.
            if len(err["loc"]) > 1:
                message = "is not a field these items take; see the tool's description"
            else:
                message = "is not an argument of this tool; see its input schema"
        problems.append(f"{where or 'arguments'}: {message}")
    return InvalidArgumentError("; ".join(problems) + ". Nothing was changed; fix the arguments and call again.")
