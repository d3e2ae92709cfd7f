"""The MCP face of task_mcp: tool definitions, who is calling, and errors as tool results.

The only module that imports `mcp.server`. Each tool call: find the caller's token, verify it
(`auth.py`), validate the arguments, run one `TaskService` method on a worker thread, and answer
with `structuredContent` plus a one-line-per-task text. Every failure becomes an `isError` result
whose text starts with its code.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Annotated, Any

import anyio
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server
from mcp.types import (
    CallToolRequestParams,
    CallToolResult,
    ListToolsResult,
    PaginatedRequestParams,
    TextContent,
    Tool,
    ToolAnnotations,
)
from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic import Field as PField

from task_mcp.auth import JwtVerifier, LaunchCredential, Principal, token_from_meta
from task_mcp.config import Settings
from task_mcp.db import Database, migrate
from task_mcp.errors import ForbiddenError, InvalidArgumentError, TaskMcpError, UnauthenticatedError
from task_mcp.models import IdempotencyKeyStr, TaskCreate, TaskId, TaskOut, TaskQuery, TaskUpdate
from task_mcp.service import TaskPage, TaskService

logger = logging.getLogger(__name__)

META_TOKEN_KEY = "task-mcp/authorization"
NO_TOKEN = (
    "No Better Auth token reached this server. Set TASK_MCP_TOKEN (a JWT from your Better Auth "
    "server's GET /api/auth/token) or TASK_MCP_TOKEN_FILE in the env block of this server's "
    "mcp.json entry and restart it, or send the token in the request's _meta['task-mcp/authorization']."
)


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
    tasks: list[TaskOut]
    next_cursor: str | None
    total: int


class DeletedResult(BaseModel):
    task_id: int
    deleted: bool


@dataclass(frozen=True)
class ToolSpec:
    name: str
    title: str
    description: str
    args: type[BaseModel]
    result: type[BaseModel]
    write: bool
    destructive: bool
    idempotent: bool
    run: Callable[[TaskService, str, Any], tuple[dict[str, Any], str]]


# --- What each tool does: call the service, shape the result --------------------------------------


def _line(task: TaskOut) -> str:
    parts = [f"#{task.id} [{task.status}] {task.title}"]
    if task.priority != "none":
        parts.append(task.priority)
    if task.due:
        parts.append(f"due {task.due}")
    if task.tags:
        parts.append(" ".join(f"+{tag}" for tag in task.tags))
    if task.parent_id:
        parts.append(f"sub of #{task.parent_id}")
    return " · ".join(parts) + f" (v{task.version})"


def _one(task: TaskOut, **extra: Any) -> tuple[dict[str, Any], str]:
    return {"task": task.model_dump(mode="json"), **extra}, _line(task)


def _list(service: TaskService, user: str, args: TaskQuery) -> tuple[dict[str, Any], str]:
    page: TaskPage = service.list_tasks(user, args)
    exclude = None if args.include_description else {"description"}
    tasks = [t.model_dump(mode="json", exclude=exclude) for t in page.tasks]
    lines = [f"{len(tasks)} of {page.total} tasks"] + [_line(t) for t in page.tasks]
    if page.next_cursor:
        lines.append(f"more: cursor={page.next_cursor}")
    return {"tasks": tasks, "next_cursor": page.next_cursor, "total": page.total}, "\n".join(lines)


def _get(service: TaskService, user: str, args: TaskIdArgs) -> tuple[dict[str, Any], str]:
    return _one(service.get_task(user, args.task_id))


def _create(service: TaskService, user: str, args: CreateTaskArgs) -> tuple[dict[str, Any], str]:
    data = TaskCreate.model_validate(args.model_dump(exclude={"idempotency_key"}))
    task, created = service.create_task(user, data, args.idempotency_key)
    structured, text = _one(task, created=created)
    return structured, text if created else f"already created: {text}"


def _create_many(service: TaskService, user: str, args: CreateTasksArgs) -> tuple[dict[str, Any], str]:
    tasks, created = service.create_tasks(user, args.tasks, args.idempotency_key)
    head = f"{'created' if created else 'already created'} {len(tasks)} tasks"
    return (
        {"tasks": [t.model_dump(mode="json") for t in tasks], "created": created},
        "\n".join([head] + [_line(t) for t in tasks]),
    )


def _update(service: TaskService, user: str, args: UpdateTaskArgs) -> tuple[dict[str, Any], str]:
    changes = TaskUpdate.model_validate(args.model_dump(exclude={"task_id"}, exclude_unset=True))
    return _one(service.update_task(user, args.task_id, changes))


def _complete(service: TaskService, user: str, args: TaskIdArgs) -> tuple[dict[str, Any], str]:
    return _one(service.complete_task(user, args.task_id))


def _delete(service: TaskService, user: str, args: TaskIdArgs) -> tuple[dict[str, Any], str]:
    count = service.delete_task(user, args.task_id)
    text = f"deleted task {args.task_id}" + (f" and {count - 1} subtasks" if count > 1 else "")
    return {"task_id": args.task_id, "deleted": True}, text + "; restore_task brings it back"


def _restore(service: TaskService, user: str, args: TaskIdArgs) -> tuple[dict[str, Any], str]:
    return _one(service.restore_task(user, args.task_id))


TOOLS: tuple[ToolSpec, ...] = (
    ToolSpec(
        "list_tasks",
        "List tasks",
        "List the user's tasks, newest first, 20 per page; filters combine. Defaults to open tasks. "
        "Returns tasks without description (set include_description), total matching, and "
        "next_cursor: pass it back as cursor, with the same filters, for the next page.",
        TaskQuery, ListResult, write=False, destructive=False, idempotent=True, run=_list,
    ),
    ToolSpec(
        "get_task",
        "Get a task",
        "Get one task by id, with its description.",
        TaskIdArgs, TaskResult, write=False, destructive=False, idempotent=True, run=_get,
    ),
    ToolSpec(
        "create_task",
        "Create a task",
        "Create one task in the user's list and return it with its id. Pass idempotency_key when "
        "a retry must not create a duplicate.",
        CreateTaskArgs, CreatedResult, write=True, destructive=False, idempotent=False, run=_create,
    ),
    ToolSpec(
        "create_tasks",
        "Create several tasks",
        "Create 1-100 tasks at once, all or nothing (e.g. the steps of a plan). Items cannot refer "
        "to each other; set parent_id to an existing task.",
        CreateTasksArgs, CreatedManyResult, write=True, destructive=False, idempotent=False, run=_create_many,
    ),
    ToolSpec(
        "update_task",
        "Update a task",
        "Change some fields of a task; fields left out stay as they are. To empty description, due "
        "or parent_id, list them in clear. status 'open' reopens. With expected_version the update "
        "fails with conflict if the task changed since you read it.",
        UpdateTaskArgs, TaskResult, write=True, destructive=True, idempotent=True, run=_update,
    ),
    ToolSpec(
        "complete_task",
        "Complete a task",
        "Mark a task completed. Completing it again changes nothing.",
        TaskIdArgs, TaskResult, write=True, destructive=False, idempotent=True, run=_complete,
    ),
    ToolSpec(
        "delete_task",
        "Delete a task",
        "Delete a task and its subtasks. They can be brought back with restore_task for 30 days.",
        TaskIdArgs, DeletedResult, write=True, destructive=True, idempotent=True, run=_delete,
    ),
    ToolSpec(
        "restore_task",
        "Restore a task",
        "Bring back a deleted task together with the subtasks deleted with it.",
        TaskIdArgs, TaskResult, write=True, destructive=False, idempotent=True, run=_restore,
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

    return walk(schema)


def _tool(spec: ToolSpec) -> Tool:
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


# --- Errors ---------------------------------------------------------------------------------------


def _error(text: str) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=text)], is_error=True)


def _invalid_arguments(exc: ValidationError) -> InvalidArgumentError:
    problems = []
    for err in exc.errors(include_url=False, include_input=False)[:5]:
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"]).lstrip(".")
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "is not an argument of this tool; see its input schema"
        problems.append(f"{where or 'arguments'}: {message}")
    return InvalidArgumentError("; ".join(problems) + ". Nothing was changed; fix the arguments and call again.")


# --- The server -----------------------------------------------------------------------------------


class TaskMcp:
    """Everything a running server holds: settings, storage, the service and the verifier."""

    def __init__(
        self, settings: Settings, *, database: Database | None = None, verifier: JwtVerifier | None = None
    ) -> None:
        self.settings = settings
        self.database = database or Database(settings.sqlalchemy_url)
        self.service = TaskService(self.database, retention_days=settings.retention_days)
        self.verifier = verifier or JwtVerifier.from_settings(settings)
        # An empty TASK_MCP_TOKEN (as in the sample mcp.json) counts as unset.
        self.launch = LaunchCredential(
            settings.token.get_secret_value() or None if settings.token else None, settings.token_file
        )
        self.specs = {s.name: s for s in TOOLS if not (settings.read_only and s.write)}
        self.tools = [_tool(s) for s in self.specs.values()]

    def migrate(self) -> None:
        migrate(self.database)

    async def principal(self, meta: dict[str, Any] | None) -> Principal:
        """Who is calling: the token of this request, verified now, whatever its source."""
        token = get_access_token()
        if token is not None:  # HTTP: the SDK's middleware checked the bearer token already
            return await self.verifier.verify(token.token)
        if meta and META_TOKEN_KEY in meta:
            # A request's own token never falls back to the launch token when it is bad.
            return await self.verifier.verify(token_from_meta(meta[META_TOKEN_KEY]))
        launch = self.launch.get()
        if launch is None:
            raise UnauthenticatedError(NO_TOKEN)
        return await self.verifier.verify(launch)

    async def call_tool(self, name: str, arguments: dict[str, Any], meta: dict[str, Any] | None) -> CallToolResult:
        spec = self.specs.get(name)
        if spec is None:
            if any(s.name == name for s in TOOLS):
                return _error(
                    f"forbidden: {name} is disabled because this server is read-only "
                    "(TASK_MCP_READ_ONLY=true). Only list_tasks and get_task are available."
                )
            return _error(f"invalid_argument: There is no tool named {name!r}. Call tools/list to see the tools.")
        committed = False
        try:
            principal = await self.principal(meta)
            scope = "tasks:write" if spec.write else "tasks:read"
            if not principal.has_scope(scope):
                raise ForbiddenError(
                    f"Your token lacks the '{scope}' scope that {name} needs. Ask for a token with "
                    f"scope '{scope}' from your Better Auth server, then call again."
                )
            try:
                args = spec.args.model_validate(arguments)
            except ValidationError as exc:
                raise _invalid_arguments(exc) from None
            structured, text = await anyio.to_thread.run_sync(
                partial(spec.run, self.service, principal.user_id, args)
            )
            committed = True
            return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=structured)
        except TaskMcpError as exc:
            return _error(str(exc))
        except Exception:
            logger.exception("tool %s failed unexpectedly", name)
            if committed or not spec.write:
                return _error("internal: An unexpected error occurred. Try again; if it persists, check the server log.")
            return _error(
                "internal: An unexpected error occurred; nothing was changed. Try again; if it persists, "
                "check the server log."
            )

    def build_server(self) -> Server[Any]:
        async def list_tools(ctx: ServerRequestContext[Any], params: PaginatedRequestParams | None) -> ListToolsResult:
            return ListToolsResult(tools=self.tools)

        async def call_tool(ctx: ServerRequestContext[Any], params: CallToolRequestParams) -> CallToolResult:
            return await self.call_tool(params.name, params.arguments or {}, dict(params.meta or {}))

        return Server(
            "task-mcp",
            version=_version(),
            instructions=(
                "A personal task list. Task ids are small numbers within the user's own list. "
                "Use list_tasks to find tasks, create_task/create_tasks to add, update_task, "
                "complete_task, delete_task (restorable with restore_task)."
            ),
            on_list_tools=list_tools,
            on_call_tool=call_tool,
        )

    async def serve_stdio(self) -> None:
        server = self.build_server()
        async with stdio_server() as (read_stream, write_stream):
            await server.run(read_stream, write_stream, server.create_initialization_options())

    async def aclose(self) -> None:
        await self.verifier.aclose()
        self.database.dispose()


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("task-mcp")
    except PackageNotFoundError:
        return "0"


def tools_list_bytes(app: TaskMcp) -> int:
    """Size of the `tools/list` answer as sent, for tests and benchmarks."""
    return len(ListToolsResult(tools=app.tools).model_dump_json(by_alias=True, exclude_none=True))

