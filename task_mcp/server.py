"""The MCP face of task_mcp: who is calling, the tool table served, errors as tool results.

The only module that imports `mcp.server`. Each tool call: find the caller's token, verify it
(`auth.py`), validate the arguments, run the tool's `TaskService` call (`tools.py`) on a worker
thread. Every failure becomes an `isError` result whose text starts with its code.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import anyio
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken, TokenVerifier
from mcp.server.auth.routes import create_protected_resource_routes
from mcp.server.auth.settings import AuthSettings
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server
from mcp.server.transport_security import TransportSecuritySettings
from mcp.types import (
    CallToolRequestParams,
    CallToolResult,
    ListToolsResult,
    PaginatedRequestParams,
    TextContent,
)
from pydantic import ConfigDict, Field, InstanceOf, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from task_mcp.auth import JwtVerifier, Principal
from task_mcp.config import Settings
from task_mcp.credentials import LaunchCredential, SessionExchange, token_from_meta
from task_mcp.db import Database, migrate
from task_mcp.errors import ConfigError, ForbiddenError, TaskMcpError, UnauthenticatedError
from task_mcp.service import TaskService
from task_mcp.tools import TOOLS, invalid_arguments, mcp_tool

logger = logging.getLogger(__name__)

META_TOKEN_KEY = "task-mcp/authorization"
NO_TOKEN = (
    "No Better Auth token reached this server. In the env block of this server's mcp.json entry, set "
    "TASK_MCP_TOKEN (a JWT from your Better Auth server's GET /api/auth/token), TASK_MCP_TOKEN_FILE "
    "(a file holding one) or TASK_MCP_BETTER_AUTH_SESSION_TOKEN, then restart it; or send the token in "
    "the request's _meta['task-mcp/authorization']."
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
        self.database = database or Database(
            settings.sqlalchemy_url,
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
            lock_timeout=settings.db_lock_timeout_seconds,
        )
        self.service = TaskService(self.database, retention_days=settings.retention_days)
        self.verifier = verifier or JwtVerifier.from_settings(settings)
        # An empty TASK_MCP_TOKEN (as in the sample mcp.json) counts as unset.
        self.launch = LaunchCredential(
            settings.token.get_secret_value() or None if settings.token else None, settings.token_file
        )
        # Last resort on stdio: a Better Auth session token, exchanged for fresh JWTs as they expire.
        self.session_exchange = SessionExchange.from_settings(settings)
        self.specs = {s.name: s for s in TOOLS if not (settings.read_only and s.write)}
        self.tools = [mcp_tool(s) for s in self.specs.values()]

    def migrate(self) -> None:
        migrate(self.database)

    async def principal(self, meta: dict[str, Any] | None, *, over_http: bool = False) -> Principal:
        """Who is calling: the token of this request, verified now, whatever its source.

        Over HTTP only the `Authorization: Bearer` header counts: the SDK's bearer middleware has
        verified it for this very request (`BearerTokenVerifier`), and `_meta` tokens and the launch
        token are ignored.
        """
        token = get_access_token()
        if isinstance(token, PrincipalAccessToken):  # verified by BearerTokenVerifier for this request
            return token.principal
        if token is not None:  # an AccessToken from some other TokenVerifier: check it ourselves
            return await self.verifier.verify(token.token)
        if over_http:
            raise UnauthenticatedError(NO_BEARER)
        if meta and META_TOKEN_KEY in meta:
            # A request's own token never falls back to the launch token when it is bad.
            return await self.verifier.verify(token_from_meta(meta[META_TOKEN_KEY]))
        launch = self.launch.get()
        if launch is None and self.session_exchange is not None:
            launch = await self.session_exchange.token()
        if launch is None:
            raise UnauthenticatedError(NO_TOKEN)
        return await self.verifier.verify(launch)

    async def call_tool(
        self, name: str, arguments: dict[str, Any], meta: dict[str, Any] | None, *, over_http: bool = False
    ) -> CallToolResult:
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
            principal = await self.principal(meta, over_http=over_http)
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
            structured, text = await anyio.to_thread.run_sync(partial(spec.run, self.service, principal.user_id, args))
            committed = True
            return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=structured)
        except TaskMcpError as exc:
            return _error(str(exc))
        except Exception:
            logger.exception("tool %s failed unexpectedly", name)
            if committed or not spec.write:
                return _error(
                    "internal: An unexpected error occurred. Try again; if it persists, check the server log."
                )
            return _error(
                "internal: An unexpected error occurred; nothing was changed. Try again; if it persists, "
                "check the server log."
            )

    def build_server(self) -> Server[Any]:
        async def list_tools(ctx: ServerRequestContext[Any], params: PaginatedRequestParams | None) -> ListToolsResult:
            return ListToolsResult(tools=self.tools)

        async def call_tool(ctx: ServerRequestContext[Any], params: CallToolRequestParams) -> CallToolResult:
            # `ctx.request` is the HTTP request on Streamable HTTP, None on stdio and in memory.
            over_http = ctx.request is not None
            meta = dict(params.meta or {})
            return await self.call_tool(params.name, params.arguments or {}, meta, over_http=over_http)

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
            # Without this the SDK runs list_tools on every HTTP tools/call to find one schema.
            get_tool_input_schema={tool.name: tool.input_schema for tool in self.tools}.get,
        )

    async def serve_stdio(self) -> None:
        server = self.build_server()
        async with stdio_server() as (read_stream, write_stream):
            await server.run(read_stream, write_stream, server.create_initialization_options())

    async def aclose(self) -> None:
        await self.verifier.aclose()
        if self.session_exchange is not None:
            await self.session_exchange.aclose()
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


# --- Streamable HTTP ------------------------------------------------------------------------------

SCOPES = ("tasks:read", "tasks:write")
NO_BEARER = (
    "Over HTTP only the Authorization header counts: send 'Authorization: Bearer <jwt>' with a JWT from "
    "your Better Auth server on every request (_meta tokens and TASK_MCP_TOKEN are ignored over HTTP)."
)
# The SDK's own DNS-rebinding defaults for a server bound to localhost.
_LOCAL_HOSTS = ["127.0.0.1:*", "localhost:*", "[::1]:*"]
_LOCAL_ORIGINS = ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"]


class PrincipalAccessToken(AccessToken):
    """The SDK's `AccessToken` for a verified Better Auth JWT, carrying our `Principal`.

    Tools read it with `get_access_token()`: the identity comes from the verified bearer token of
    the HTTP request, checked once by the SDK's middleware, never from the request body.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    principal: InstanceOf[Principal] = Field(exclude=True, repr=False)


class BearerTokenVerifier(TokenVerifier):
    """The SDK's `TokenVerifier` over our `JwtVerifier` (signature, exp/nbf, iss, aud, algorithms).

    A token without a `scope` claim (a plain Better Auth JWT) gets both task scopes, so the SDK's
    `required_scopes` lets it through; a token with a `scope` claim gets exactly what it names.
    """

    def __init__(self, verifier: JwtVerifier) -> None:
        self.verifier = verifier

    async def verify_token(self, token: str) -> PrincipalAccessToken | None:
        try:
            principal = await self.verifier.verify(token)
        except UnauthenticatedError as exc:  # the SDK answers 401 + WWW-Authenticate
            logger.info("bearer token rejected: %s", exc.message)
            return None
        claims = dict(principal.claims)
        client = claims.get("client_id") or claims.get("azp")
        return PrincipalAccessToken(
            token=token,
            client_id=client if isinstance(client, str) and client else "better-auth",
            scopes=sorted(principal.scopes) if principal.scopes is not None else list(SCOPES),
            expires_at=principal.expires_at,
            subject=principal.user_id,
            claims=claims,
            principal=principal,
        )


def _transport_security(settings: Settings) -> TransportSecuritySettings:
    if "*" in settings.allowed_hosts:
        return TransportSecuritySettings(enable_dns_rebinding_protection=False)
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=list(settings.allowed_hosts) or _LOCAL_HOSTS,
        allowed_origins=list(settings.allowed_origins) or _LOCAL_ORIGINS,
    )


def _resource_url(settings: Settings, host: str, port: int) -> str:
    if settings.resource_url:
        return settings.resource_url
    if host in ("0.0.0.0", "::", ""):
        logger.warning(
            "TASK_MCP_RESOURCE_URL is not set and the server listens on all interfaces (%s): clients are told "
            "the resource is http://localhost:%d/mcp. Set TASK_MCP_RESOURCE_URL to the public URL of /mcp.",
            host or "*",
            port,
        )
        host = "localhost"
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/mcp"


def create_http_app(
    settings: Settings,
    *,
    app: TaskMcp | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    migrate: bool = True,
) -> Starlette:
    """The Streamable HTTP server as an ASGI app: run it with uvicorn, or mount it in your own app.

    Routes:
    - `/mcp`: MCP over Streamable HTTP, stateless (any replica answers any request, for clients of
      the sessionless 2026-07-28 protocol and of the older handshake protocols alike). Every request
      needs `Authorization: Bearer <Better Auth JWT>`: a missing or bad token gets 401 with
      `WWW-Authenticate: Bearer ..., resource_metadata="..."`, a token without `tasks:read` 403
      `insufficient_scope`; a write tool called without `tasks:write` answers `forbidden`. The Host and
      Origin headers are checked against TASK_MCP_ALLOWED_HOSTS / TASK_MCP_ALLOWED_ORIGINS (default:
      localhost only; others get 421 / 403).
    - `/.well-known/oauth-protected-resource/mcp` (RFC 9728; the path follows TASK_MCP_RESOURCE_URL):
      names the authorization server (TASK_MCP_ISSUER, else TASK_MCP_BETTER_AUTH_URL).
    - `/healthz`, without auth: 200 `{"status": "ok"}` when the database answers, else 503
      `{"status": "unavailable"}`.

    Arguments: `app` is the `TaskMcp` to serve (default: a new one from `settings`, closed when the app
    shuts down; one you pass stays yours to close). `host`/`port` only make the default resource URL
    `http://host:port/mcp` when TASK_MCP_RESOURCE_URL is unset. `migrate=False` skips the schema
    upgrade at start-up (when `task-mcp migrate` runs as a deploy step instead).

    The app's lifespan upgrades the schema and runs the MCP session manager; it can start once. A
    host application must enter that lifespan in its own, because Starlette and FastAPI do not run
    the lifespans of mounted apps. Mount it at the root, after your own routes, so that the metadata
    path stays where RFC 9728 puts it:

        from contextlib import asynccontextmanager
        from fastapi import FastAPI
        from task_mcp.config import load_settings
        from task_mcp.server import create_http_app

        tasks = create_http_app(load_settings(resource_url="https://api.example.com/mcp"))

        @asynccontextmanager
        async def lifespan(api: FastAPI):
            async with tasks.router.lifespan_context(tasks):  # migrations + session_manager.run()
                yield

        api = FastAPI(lifespan=lifespan)

        @api.get("/hello")
        def hello() -> dict[str, str]:
            return {"hello": "world"}

        api.mount("/", tasks)  # /mcp, /healthz and /.well-known/oauth-protected-resource/mcp

    `tasks.state.task_mcp` is the `TaskMcp` (its `.service` serves your own routes too) and
    `tasks.state.session_manager` the SDK's session manager.

    Raises `ConfigError` when no authorization server is configured.
    """
    issuer = settings.effective_issuer or settings.auth_base_url
    if not issuer:
        raise ConfigError(
            "TASK_MCP_BETTER_AUTH_URL: required for Streamable HTTP (the protected-resource metadata names "
            "the Better Auth server that issues tokens); or set TASK_MCP_ISSUER"
        )
    owned = app is None
    task_app = TaskMcp(settings) if app is None else app
    resource_url = _resource_url(settings, host, port)
    # Strings, not AnyHttpUrl(...): AuthSettings keeps a path-less URL as written, where AnyHttpUrl
    # would add a trailing slash and the metadata would name an issuer that differs from `iss`.
    auth = AuthSettings(
        issuer_url=issuer,  # type: ignore[arg-type]
        resource_server_url=resource_url,  # type: ignore[arg-type]
        required_scopes=["tasks:read"],
        validate_token_resource=False,  # JwtVerifier checks `aud` itself
    )
    server = task_app.build_server()
    sdk_app = server.streamable_http_app(
        streamable_http_path="/mcp",
        stateless_http=True,
        transport_security=_transport_security(settings),
        auth=auth,
        token_verifier=BearerTokenVerifier(task_app.verifier),
    )
    session_manager = server.session_manager
    assert auth.resource_server_url is not None

    # The SDK advertises only `required_scopes` as `scopes_supported`; a client that asks its
    # authorization server for those alone would get a read-only token. Advertise both.
    metadata_routes = create_protected_resource_routes(
        resource_url=auth.resource_server_url,
        authorization_servers=[auth.issuer_url],
        scopes_supported=list(SCOPES),
        resource_name="task-mcp",
    )
    replaced = {route.path for route in metadata_routes}
    routes = [r for r in sdk_app.routes if getattr(r, "path", None) not in replaced]

    ping_limiter: anyio.CapacityLimiter | None = None

    async def healthz(request: Request) -> JSONResponse:
        nonlocal ping_limiter
        if ping_limiter is None:  # its own threads: a hanging database cannot starve the tool calls
            ping_limiter = anyio.CapacityLimiter(2)
        headers = {"Cache-Control": "no-store"}
        try:
            with anyio.fail_after(settings.http_timeout_seconds):
                await anyio.to_thread.run_sync(task_app.database.ping, abandon_on_cancel=True, limiter=ping_limiter)
        except Exception as exc:
            logger.warning("health check: the database is unreachable (%s)", type(exc).__name__)
            return JSONResponse({"status": "unavailable"}, status_code=503, headers=headers)
        return JSONResponse({"status": "ok"}, headers=headers)

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        try:
            if migrate:
                await anyio.to_thread.run_sync(task_app.migrate)
            async with session_manager.run():
                logger.info("serving MCP over Streamable HTTP at %s", resource_url)
                yield
        finally:
            if owned:
                await task_app.aclose()

    http_app = Starlette(
        routes=[*routes, *metadata_routes, Route("/healthz", healthz, methods=["GET"])],
        middleware=sdk_app.user_middleware,
        lifespan=lifespan,
    )
    http_app.state.task_mcp = task_app
    http_app.state.session_manager = session_manager
    return http_app
