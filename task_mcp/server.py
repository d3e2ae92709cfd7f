"""The MCP face of task_mcp: who is calling, the tool table served, errors as tool results.

The only module that imports `mcp.server`. Each tool call: find the caller's token, verify it
(`auth.py`), validate the arguments, run the tool's `TaskService` call (`tools.py`) on a worker
thread. Every failure becomes an `isError` result whose text starts with its code.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

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
)
from pydantic import ValidationError

from task_mcp.auth import JwtVerifier, LaunchCredential, Principal, token_from_meta
from task_mcp.config import Settings
from task_mcp.db import Database, migrate
from task_mcp.errors import ForbiddenError, TaskMcpError, UnauthenticatedError
from task_mcp.service import TaskService
from task_mcp.tools import TOOLS, invalid_arguments, mcp_tool

logger = logging.getLogger(__name__)

META_TOKEN_KEY = "task-mcp/authorization"
NO_TOKEN = (
    "No Better Auth token reached this server. Set TASK_MCP_TOKEN (a JWT from your Better Auth "
    "server's GET /api/auth/token) or TASK_MCP_TOKEN_FILE in the env block of this server's "
    "mcp.json entry and restart it, or send the token in the request's _meta['task-mcp/authorization']."
)


# --- Errors ---------------------------------------------------------------------------------------


def _error(text: str) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=text)], is_error=True)


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
        self.tools = [mcp_tool(s) for s in self.specs.values()]

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
                raise invalid_arguments(exc) from None
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

