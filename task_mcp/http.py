"""The Streamable HTTP app: bearer verifier, RFC 9728 metadata, health, transport security.

Builds on `server.py` (it serves a `TaskMcp`), never the other way round. Over HTTP only the
request's `Authorization: Bearer` header identifies the caller: the SDK's bearer middleware
verifies it through `BearerTokenVerifier`, and `BearerIdentity` hands that principal to dispatch.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import anyio
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.middleware.bearer_auth import RequireAuthMiddleware
from mcp.server.auth.provider import AccessToken, TokenVerifier
from mcp.server.auth.routes import create_protected_resource_routes
from mcp.server.auth.settings import AuthSettings
from mcp.server.transport_security import TransportSecuritySettings
from pydantic import ConfigDict, Field, InstanceOf
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from task_mcp.auth import READ_SCOPE, SCOPES, JwtVerifier
from task_mcp.config import Settings
from task_mcp.errors import ConfigError, UnauthenticatedError
from task_mcp.principal import Principal
from task_mcp.server import TaskMcp

logger = logging.getLogger(__name__)

NO_BEARER = (
    "Over HTTP only the Authorization header counts: send 'Authorization: Bearer <jwt>' with a JWT from "
    "your Better Auth server on every request (_meta tokens and TASK_MCP_TOKEN are ignored over HTTP)."
)
# The SDK's own DNS-rebinding defaults for a server bound to localhost.
_LOCAL_HOSTS = ["127.0.0.1:*", "localhost:*", "[::1]:*"]
_LOCAL_ORIGINS = ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"]
MCP_PATH = "/mcp"


class PrincipalAccessToken(AccessToken):
    """The SDK's `AccessToken` for a verified Better Auth JWT, carrying our `Principal`.

    Dispatch reads it with `get_access_token()`: the identity comes from the verified bearer token
    of the HTTP request, checked once by the SDK's middleware, never from the request body.
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


class BearerIdentity:
    """Who calls over HTTP: the principal of the bearer token verified for this very request.

    `_meta` tokens and the launch token are never looked at; a request that reached the tools
    without a verified bearer (it cannot, behind the SDK's middleware) is `unauthenticated`.
    """

    def __init__(self, verifier: JwtVerifier) -> None:
        self.verifier = verifier

    async def principal(self, meta: Mapping[str, Any] | None) -> Principal:
        token = get_access_token()
        if isinstance(token, PrincipalAccessToken):  # verified by BearerTokenVerifier for this request
            return token.principal
        if token is not None:  # an AccessToken from some other TokenVerifier: check it ourselves
            return await self.verifier.verify(token.token)
        raise UnauthenticatedError(NO_BEARER)


def _transport_security(settings: Settings) -> TransportSecuritySettings:
    """Host and Origin are two lists, each checked on its own: `*` in one leaves the other in force."""
    hosts = list(settings.allowed_hosts) or _LOCAL_HOSTS
    origins = list(settings.allowed_origins) or _LOCAL_ORIGINS
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=not ("*" in hosts and "*" in origins),
        allowed_hosts=hosts,
        allowed_origins=origins,
    )


class _SecurityCheck:
    """Host (421) and Origin (403) checks in front of /mcp, with `*` per list.

    The SDK's own check knows no `*`; its only way to accept any Host switches the Origin check off
    too, which would let any web page in a browser call the server.
    """

    def __init__(self, app: ASGIApp, settings: TransportSecuritySettings) -> None:
        self.app = app
        self.hosts = settings.allowed_hosts
        self.origins = settings.allowed_origins

    @staticmethod
    def _allowed(value: str, allowed: list[str]) -> bool:
        return "*" in allowed or any(
            value == entry or (entry.endswith(":*") and value.startswith(entry[:-1])) for entry in allowed
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            host, origin = headers.get("host", ""), headers.get("origin")
            if not host or not self._allowed(host, self.hosts):
                logger.warning("refused a request to /mcp: Host header not allowed")
                await Response("Invalid Host header", status_code=421)(scope, receive, send)
                return
            if origin and not self._allowed(origin, self.origins):
                logger.warning("refused a request to /mcp: Origin header not allowed")
                await Response("Invalid Origin header", status_code=403)(scope, receive, send)
                return
        await self.app(scope, receive, send)


class _PostOnly:
    """Stateless Streamable HTTP has no server-initiated stream: GET (and DELETE) answer 405.

    Without this the SDK opens an SSE stream on GET that never sends anything and outlives the token.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] != "POST":
            response = Response(
                "Method Not Allowed: this stateless server takes POST only",
                status_code=405,
                headers={"Allow": "POST"},
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


class _DeadlineProtocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol with a deadline for each request to arrive whole.

    uvicorn times out idle keep-alive connections, but not a connection that never finishes its
    headers or body (slow-loris): each would hold a descriptor forever. The deadline starts when
    the connection opens and again after each response, and is met once the request's body is
    complete; a request still incomplete then gets 408 (headers) or is cut (body).
    """

    request_timeout: float = 30.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]  # uvicorn narrows it too
        super().connection_made(transport)
        self._arm()

    def on_response_complete(self) -> None:
        self._arm()  # first: the call below may start a pipelined request, which the deadline then covers
        super().on_response_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._armed_for = self.cycle  # the request in progress when armed (None, or the one just answered)
        self._deadline: asyncio.TimerHandle | None = self.loop.call_later(self.request_timeout, self._expire)

    def _disarm(self) -> None:
        deadline = getattr(self, "_deadline", None)
        if deadline is not None:
            deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        headers_pending = self.cycle is self._armed_for  # no new request has arrived whole
        if not headers_pending and not self.cycle.more_body:
            return  # received whole: the app may take its time
        logger.info("closed an HTTP connection whose request was incomplete after %s s", self.request_timeout)
        if headers_pending:
            self.transport.write(b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        self.transport.close()


class WorkerDeadlineProtocol(_DeadlineProtocol):
    """The protocol of `--workers` processes, named by import string; each worker sets its timeout."""


def request_deadline_protocol(seconds: float) -> type[H11Protocol]:
    """The uvicorn `http=` protocol class that closes requests not received whole within `seconds`."""
    return type("RequestDeadlineProtocol", (_DeadlineProtocol,), {"request_timeout": seconds})


def resource_url(settings: Settings, host: str, port: int) -> str:
    """The public URL of /mcp: TASK_MCP_RESOURCE_URL, else `http://host:port/mcp`."""
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
    return f"http://{f'[{host}]' if ':' in host else host}:{port}{MCP_PATH}"


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
      the sessionless 2026-07-28 protocol and of the older handshake protocols alike); POST only
      (GET and DELETE answer 405). Every request needs `Authorization: Bearer <Better Auth JWT>`: a
      missing or bad token gets 401 with `WWW-Authenticate: Bearer ..., resource_metadata="..."`, a
      token without `tasks:read` 403 `insufficient_scope`; a write tool called without `tasks:write`
      answers `forbidden`. The Host and Origin headers are checked against TASK_MCP_ALLOWED_HOSTS /
      TASK_MCP_ALLOWED_ORIGINS, each on its own (default: localhost only; others get 421 / 403).
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
        from task_mcp.http import create_http_app

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
    public_url = resource_url(settings, host, port)
    # Strings, not AnyHttpUrl(...): AuthSettings keeps a path-less URL as written, where AnyHttpUrl
    # would add a trailing slash and the metadata would name an issuer that differs from `iss`.
    auth = AuthSettings(
        issuer_url=issuer,  # type: ignore[arg-type]  # pydantic validates the str into AnyHttpUrl
        resource_server_url=public_url,  # type: ignore[arg-type]  # as above
        required_scopes=[READ_SCOPE],
        validate_token_resource=False,  # JwtVerifier checks `aud` itself
    )
    server = task_app.build_server(BearerIdentity(task_app.verifier))
    security = _transport_security(settings)
    sdk_app = server.streamable_http_app(
        streamable_http_path=MCP_PATH,
        stateless_http=True,
        # Host and Origin are checked by _SecurityCheck (each list on its own); the SDK keeps its
        # Content-Type check.
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
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
    routes: list[Any] = []
    for route in sdk_app.routes:
        path = getattr(route, "path", None)
        if path in replaced:
            continue
        if path == MCP_PATH and isinstance(route, Route) and isinstance(route.endpoint, RequireAuthMiddleware):
            # Behind the bearer check, as the SDK's own checks were: no answer but 401 without a token.
            guarded: ASGIApp = _PostOnly(route.endpoint.app)
            if security.enable_dns_rebinding_protection:
                guarded = _SecurityCheck(guarded, security)
            route.endpoint.app = guarded
        routes.append(route)

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
                logger.info("serving MCP over Streamable HTTP at %s", public_url)
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
