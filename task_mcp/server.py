"""The MCP face of task_mcp: the tool table served, each call dispatched, errors as tool results.

Each tool call: ask the transport's `Identity` who is calling (verified now), check the tool's
scope, validate the arguments, call the tool's `TaskService` method (on a worker thread, except
reads on SQLite), render its answer (`tools.py`). Every failure becomes an `isError` result whose
text starts with its code, in one place: `error_result`.

Prompts (`prompts.py`) and resources (`resources.py`: the board, `task://{workspace}/{id}`) are
served here too; a task read goes through `get_task`, and a failed prompt or read is a JSON-RPC
error whose message is the same `<code>: ...` text.

Transports supply the `Identity`: stdio and in-memory clients use `StdioIdentity` (the credential
order of `credentials.StdioCredentials`); the Streamable HTTP app (`http.py`, which builds on this
module) supplies the principal its bearer verifier checked.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import replace
from functools import partial
from typing import Any, Protocol

import anyio
from mcp import MCPError
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server
from mcp.types import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    CallToolRequestParams,
    CallToolResult,
    GetPromptRequestParams,
    GetPromptResult,
    ListPromptsResult,
    ListResourcesResult,
    ListResourceTemplatesResult,
    ListToolsResult,
    PaginatedRequestParams,
    ReadResourceRequestParams,
    ReadResourceResult,
    TextContent,
    TextResourceContents,
    Tool,
)
from pydantic import ValidationError

from task_mcp import __version__
from task_mcp.auth import JwtVerifier
from task_mcp.config import Settings
from task_mcp.credentials import StdioCredentials
from task_mcp.db import Database, migrate
from task_mcp.errors import (
    ForbiddenError,
    InternalError,
    InvalidArgumentError,
    TaskMcpError,
    UnauthenticatedError,
)
from task_mcp.principal import Principal
from task_mcp.prompts import get_prompt, mcp_prompt, offered_prompts
from task_mcp.resources import BOARD, BOARD_MIME, BOARD_URI, TASK, TASK_MIME, board_html, parse_task_uri, tools_meta
from task_mcp.service import TaskService
from task_mcp.service.journal import Receipt
from task_mcp.service.workspaces import Caller, resolve
from task_mcp.tools import TOOLS, ToolSpec, invalid_arguments, mcp_tool, offered

logger = logging.getLogger(__name__)

INSTRUCTIONS = (
    "A task list: the user's personal one, and one per organization of theirs (list_workspaces; every "
    "tool takes workspace, 'personal' by default). Task ids are small numbers within a workspace. "
    "Use list_tasks to find tasks, create_task/create_tasks to add, update_task, "
    "complete_task, delete_task (restorable with restore_task); list_changes shows who changed what, "
    "undo_change takes a change back. "
    "repeat (create/update): an RFC 5545 RRULE without DTSTART (FREQ=WEEKLY;BYDAY=MO,TH; COUNT or UNTIL) or "
    "a phrase: daily, weekdays, weekly, monthly, yearly, 'every N days|weeks|months|years', 'every mon and "
    "thu'. It needs a due (the first occurrence); a due with a time needs timezone (IANA). Completing a "
    "repeating task moves due to its next occurrence and keeps it open. list_tasks answers now, to turn "
    "'tomorrow' into a date."
)
_NOT_STDIO = (
    "This server was built for stdio, so it takes no identity from an HTTP request. Serve HTTP with "
    "task_mcp.http.create_http_app, which checks the request's 'Authorization: Bearer <jwt>' header."
)

_NO_BOARD = (
    f"{BOARD_URI} is not offered by this server: the board shows list_tasks results, and list_tasks is not "
    "offered here (TASK_MCP_TOOLSETS). Call resources/list to see the resources offered."
)

# --- Who is calling -------------------------------------------------------------------------------


class Identity(Protocol):
    """Who is calling, per call: each transport supplies one."""

    async def principal(self, meta: Mapping[str, Any] | None) -> Principal:
        """The verified caller of the request whose `_meta` this is; raises `UnauthenticatedError`."""
        ...


class StdioIdentity:
    """stdio and in-memory clients: the token `StdioCredentials` finds, verified on every call."""

    def __init__(self, credentials: StdioCredentials, verifier: JwtVerifier) -> None:
        self.credentials = credentials
        self.verifier = verifier

    async def principal(self, meta: Mapping[str, Any] | None) -> Principal:
        return await self.verifier.verify(await self.credentials.token(meta))


def caller_of(principal: Principal) -> Caller:
    """What the service needs of a verified principal: the `name`/`email` claims (when they are
    strings), the organizations, the scopes, and the client (`azp` or `client_id`)."""

    def claim(*names: str) -> str | None:
        for name in names:
            value = principal.claims.get(name)
            if isinstance(value, str) and value.strip():
                return value[:255]
        return None

    return Caller(
        principal.user_id,
        name=claim("name"),
        email=claim("email"),
        organizations=principal.organizations,
        scopes=principal.scopes,
        client=claim("azp", "client_id"),
    )


def _client(ctx: ServerRequestContext[Any]) -> str | None:
    """The MCP client's `clientInfo.name`: from the handshake, or (2026-07-28) the request's envelope."""
    params = ctx.session.client_params
    name = params.client_info.name if params is not None else None
    return name if isinstance(name, str) and name.strip() else None


# --- Errors ---------------------------------------------------------------------------------------


def error_result(error: TaskMcpError) -> CallToolResult:
    """The one place an error becomes what the model reads: `isError` and `<code>: <message>`."""
    return CallToolResult(content=[TextContent(type="text", text=str(error))], is_error=True)


def rpc_error(text: str) -> MCPError:
    """A failed prompt or resource request: a JSON-RPC error whose message is our `<code>: ...` text.
    Bad input and unknown names are invalid params (as MCP says of an unknown resource), the rest internal."""
    code = INVALID_PARAMS if text.startswith(("not_found:", "invalid_argument:")) else INTERNAL_ERROR
    return MCPError(code, text)


def _unexpected(name: str, *, changed: bool | None) -> InternalError:
    """An exception no rule expected, already logged; say "nothing was changed" only when that is true."""
    if changed is False:
        return InternalError(
            "An unexpected error occurred; nothing was changed. Try again; if it persists, check the server log."
        )
    if changed is True:
        return InternalError(
            f"The change was saved, but its answer could not be shown. Do not repeat {name}: call list_tasks or "
            "get_task to see the result; if it persists, check the server log."
        )
    return InternalError("An unexpected error occurred. Try again; if it persists, check the server log.")


# --- The server -----------------------------------------------------------------------------------


class TaskMcp:
    """Everything a running server holds: settings, storage, the service, the verifier, the tool table."""

    def __init__(
        self, settings: Settings, *, database: Database | None = None, verifier: JwtVerifier | None = None
    ) -> None:
        self.settings = settings
        self.database = database or Database.from_settings(settings)
        self.service = TaskService.from_settings(self.database, settings)
        self.verifier = verifier or JwtVerifier.from_settings(settings)
        self.credentials = StdioCredentials.from_settings(settings)
        self.stdio_identity = StdioIdentity(self.credentials, self.verifier)
        self.specs: dict[str, ToolSpec[Any, Any]] = {
            s.name: s for s in offered(settings.offered_toolsets, read_only=settings.read_only)
        }
        self.tools: list[Tool] = [mcp_tool(s) for s in self.specs.values()]
        self.prompts = offered_prompts(self.specs)
        # What list_tasks results carry for the board: the actions it may show (None: all of them).
        self.list_meta = tools_meta(frozenset(self.specs))
        # Where a tool's service call runs. A read on SQLite does not wait for locks (WAL), and the
        # hop to a worker thread cost as much as reading a page: it runs on the event loop's thread.
        # Writes, which may wait for SQLite's write lock (so may a read that first notes the caller's
        # organizations: new, changed, or an hour old), and every call on PostgreSQL (network round
        # trips) run on a worker thread.
        self.inline_reads = self.database.dialect == "sqlite"

    def migrate(self) -> None:
        migrate(self.database)

    async def call_tool(
        self,
        name: str,
        arguments: dict[str, Any],
        meta: Mapping[str, Any] | None,
        identity: Identity,
        client_name: str | None = None,
    ) -> CallToolResult:
        """Run one tool call for the caller `identity` names; every outcome is a tool result.
        `client_name`: the MCP client's `clientInfo.name`, journaled when the token names no client."""
        spec = self.specs.get(name)
        if spec is None:
            return error_result(self._not_offered(name))
        changed: bool | None = False if spec.write else None
        try:
            # Scopes and workspace roles are checked by the service, after the workspace is found
            # (DESIGN §8's order).
            caller = caller_of(await identity.principal(meta))
            if caller.client is None and client_name:
                caller = replace(caller, client=client_name[:255])
            try:
                args = spec.args.model_validate(arguments)
            except ValidationError as exc:
                raise invalid_arguments(exc) from None
            receipt = Receipt()
            call = partial(spec.call, self.service, caller, args, receipt)
            inline = self.inline_reads and not spec.write and self.service.members.recorded(caller)
            answer = call() if inline else await anyio.to_thread.run_sync(call)
            # The service call returned, so its transaction has committed: from here on a failure
            # must not claim that nothing was changed.
            if spec.write:
                changed = True
            structured, text = spec.render(args, answer)
            if spec.write:  # every write names its journal entry (null: it changed nothing)
                structured = {"change_id": receipt.change_id, **structured}
            if spec.names_workspace:
                structured = {"workspace": resolve(caller, args.workspace).label, **structured}
            meta = self.list_meta if name == "list_tasks" else None
            return CallToolResult(
                content=[TextContent(type="text", text=text)], structured_content=structured, meta=meta
            )
        except TaskMcpError as exc:
            return error_result(exc)
        except Exception:
            logger.exception("tool %s failed unexpectedly", name)
            return error_result(_unexpected(name, changed=changed))

    async def read_resource(
        self, uri: str, meta: Mapping[str, Any] | None, identity: Identity, client_name: str | None = None
    ) -> ReadResourceResult:
        """The board, or one task through `get_task` (so a read is authorized exactly like that call).
        A failed read raises `MCPError` whose message is the text `get_task` would answer."""
        if uri == BOARD_URI:
            if "list_tasks" not in self.specs:
                raise rpc_error(str(InvalidArgumentError(_NO_BOARD)))
            return ReadResourceResult(contents=[TextResourceContents(uri=uri, mime_type=BOARD_MIME, text=board_html())])
        try:
            workspace, task_id = parse_task_uri(uri)
        except TaskMcpError as exc:
            raise rpc_error(str(exc)) from None
        result = await self.call_tool(
            "get_task", {"task_id": task_id, "workspace": workspace}, meta, identity, client_name
        )
        if result.is_error:
            raise rpc_error("\n".join(c.text for c in result.content if isinstance(c, TextContent)))
        data = json.dumps(result.structured_content, ensure_ascii=False, separators=(",", ":"))
        return ReadResourceResult(contents=[TextResourceContents(uri=uri, mime_type=TASK_MIME, text=data)])

    def _not_offered(self, name: str) -> TaskMcpError:
        spec = next((s for s in TOOLS if s.name == name), None)
        if spec is None:
            return InvalidArgumentError(f"There is no tool named {name!r}. Call tools/list to see the tools.")
        available = ", ".join(self.specs) or "none"
        if spec.toolset not in self.settings.offered_toolsets:
            return ForbiddenError(
                f"{name} is not offered by this server: its toolset '{spec.toolset}' is not in TASK_MCP_TOOLSETS. "
                f"Available tools: {available}."
            )
        return ForbiddenError(
            f"{name} is disabled because this server is read-only (TASK_MCP_READ_ONLY=true). "
            f"Available tools: {available}."
        )

    def build_server(self, identity: Identity | None = None) -> Server[Any]:
        """The low-level MCP server over this app; `identity` says who calls (default: stdio's order)."""
        who = identity or self.stdio_identity
        tools = list(self.tools)
        prompts = [mcp_prompt(p) for p in self.prompts]

        async def list_tools(ctx: ServerRequestContext[Any], params: PaginatedRequestParams | None) -> ListToolsResult:
            return ListToolsResult(tools=tools)

        def stdio_over_http(ctx: ServerRequestContext[Any]) -> bool:
            # `ctx.request` is the HTTP request on Streamable HTTP, None on stdio and in memory: the
            # stdio order (`_meta`, launch token) never stands in for a bearer header.
            return ctx.request is not None and who is self.stdio_identity

        async def call_tool(ctx: ServerRequestContext[Any], params: CallToolRequestParams) -> CallToolResult:
            if stdio_over_http(ctx):
                return error_result(UnauthenticatedError(_NOT_STDIO))
            return await self.call_tool(params.name, params.arguments or {}, dict(params.meta or {}), who, _client(ctx))

        async def list_prompts(
            ctx: ServerRequestContext[Any], params: PaginatedRequestParams | None
        ) -> ListPromptsResult:
            return ListPromptsResult(prompts=prompts)

        async def get(ctx: ServerRequestContext[Any], params: GetPromptRequestParams) -> GetPromptResult:
            try:
                return get_prompt(params.name, params.arguments, self.specs)
            except TaskMcpError as exc:
                raise rpc_error(str(exc)) from None

        async def list_resources(
            ctx: ServerRequestContext[Any], params: PaginatedRequestParams | None
        ) -> ListResourcesResult:
            return ListResourcesResult(resources=[BOARD] if "list_tasks" in self.specs else [])

        async def list_templates(
            ctx: ServerRequestContext[Any], params: PaginatedRequestParams | None
        ) -> ListResourceTemplatesResult:
            return ListResourceTemplatesResult(resource_templates=[TASK] if "get_task" in self.specs else [])

        async def read(ctx: ServerRequestContext[Any], params: ReadResourceRequestParams) -> ReadResourceResult:
            if stdio_over_http(ctx) and params.uri != BOARD_URI:
                raise rpc_error(str(UnauthenticatedError(_NOT_STDIO)))
            return await self.read_resource(params.uri, dict(params.meta or {}), who, _client(ctx))

        return Server(
            "task-mcp",
            version=__version__,
            instructions=INSTRUCTIONS,
            on_list_tools=list_tools,
            on_call_tool=call_tool,
            on_list_prompts=list_prompts,
            on_get_prompt=get,
            on_list_resources=list_resources,
            on_list_resource_templates=list_templates,
            on_read_resource=read,
            # Without this the SDK runs list_tools on every HTTP tools/call to find one schema.
            get_tool_input_schema={tool.name: tool.input_schema for tool in tools}.get,
        )

    async def serve_stdio(self) -> None:
        server = self.build_server()
        async with stdio_server() as (read_stream, write_stream):
            await server.run(read_stream, write_stream, server.create_initialization_options())

    async def aclose(self) -> None:
        await self.verifier.aclose()
        await self.credentials.aclose()
        self.database.dispose()
