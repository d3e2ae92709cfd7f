"""End to end against a real Better Auth (tests/better_auth/server.mjs): real users, sessions, JWTs.

Users sign up with email and password, exchange their session token for a JWT at
`/api/auth/token` (bearer plugin), and call task_mcp in memory and over a stdio subprocess.
"""

from __future__ import annotations

import shutil
import socket
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import httpx2
import jwt
import pytest
import uvicorn
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult

from task_mcp.auth import JwtVerifier
from task_mcp.config import Settings
from task_mcp.credentials import META_KEY, SessionExchange
from task_mcp.db import Database
from task_mcp.errors import ConfigError, UnauthenticatedError
from task_mcp.http import create_http_app
from task_mcp.server import TaskMcp
from tests.helpers import connect, ok, text
from tests.loopback import Loopback, Request

if TYPE_CHECKING:  # imported by pytest_plugins below, so that pytest rewrites its asserts
    from tests.better_auth_fixture import BetterAuth

pytest_plugins = ["tests.better_auth_fixture"]  # better_auth, other_better_auth, short_lived_better_auth


def unauthenticated(result: CallToolResult) -> str:
    assert result.is_error and text(result).startswith("unauthenticated: "), text(result)
    return text(result)


def as_user(token: str) -> dict[str, str]:
    return {META_KEY: f"Bearer {token}"}


def titles(result: CallToolResult) -> list[str]:
    return sorted(t["title"] for t in ok(result)["tasks"])


@pytest.fixture
def database_file(tmp_path: Path, _sqlite_template: Path) -> str:
    path = tmp_path / "tasks.db"
    shutil.copy(_sqlite_template, path)
    return f"sqlite:///{path}"


@asynccontextmanager
async def task_mcp(ba: BetterAuth, database_url: str, **overrides: Any) -> AsyncIterator[tuple[TaskMcp, Client]]:
    """A TaskMcp trusting `ba` (JWKS, iss and aud from its URL), with an in-memory MCP client."""
    settings = Settings(_env_file=None, database_url=database_url, better_auth_url=ba.url, **overrides)
    app = TaskMcp(settings, database=Database(database_url), verifier=JwtVerifier.from_settings(settings))
    try:
        async with connect(app) as client:
            yield app, client
    finally:
        await app.aclose()


@asynccontextmanager
async def stdio(env: dict[str, str]) -> AsyncIterator[Client]:
    params = StdioServerParameters(command=sys.executable, args=["-m", "task_mcp", "serve"], env=env)
    async with Client(params, read_timeout_seconds=20) as client:  # type: ignore[arg-type]
        yield client


def stdio_env(ba: BetterAuth, database_url: str, **extra: str) -> dict[str, str]:
    return {
        "TASK_MCP_DATABASE_URL": database_url,
        "TASK_MCP_BETTER_AUTH_URL": ba.url,
        "TASK_MCP_LOG_LEVEL": "WARNING",
        **extra,
    }


# ---- the tokens themselves ---------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_real_better_auth_jwt_verifies_with_only_the_base_url_configured(better_auth: BetterAuth) -> None:
    user = better_auth.sign_up("Alice")
    token = better_auth.jwt(user.session_token)

    assert jwt.get_unverified_header(token).keys() == {"alg", "kid"}
    assert jwt.get_unverified_header(token)["alg"] == "EdDSA"
    verifier = JwtVerifier.from_settings(Settings(_env_file=None, better_auth_url=better_auth.url, leeway_seconds=0))
    try:
        principal = await verifier.verify(token)
    finally:
        await verifier.aclose()
    assert principal.user_id == user.id
    assert principal.scopes is None  # a plain JWT: no `scope` claim, every tool allowed
    assert principal.claims["iss"] == principal.claims["aud"] == better_auth.url
    assert principal.claims["email"] == user.email
    assert principal.claims["exp"] - principal.claims["iat"] == 900


# ---- one server, two users ---------------------------------------------------------------------


@pytest.mark.anyio
async def test_in_memory_meta_tokens_keep_two_users_apart(better_auth: BetterAuth, database_file: str) -> None:
    alice, bob = better_auth.sign_up("Alice"), better_auth.sign_up("Bob")
    alice_jwt, bob_jwt = better_auth.jwt(alice.session_token), better_auth.jwt(bob.session_token)

    async with task_mcp(better_auth, database_file) as (_, client):
        for title in ("Alice's first", "Alice's second"):
            ok(await client.call_tool("create_task", {"title": title}, meta=as_user(alice_jwt)))
        bobs = ok(await client.call_tool("create_task", {"title": "Bob's only"}, meta=as_user(bob_jwt)))["task"]
        assert bobs["id"] == 1  # numbered within Bob's own list

        assert titles(await client.call_tool("list_tasks", {}, meta=as_user(alice_jwt))) == [
            "Alice's first",
            "Alice's second",
        ]
        assert titles(await client.call_tool("list_tasks", {}, meta=as_user(bob_jwt))) == ["Bob's only"]
        missing = await client.call_tool("get_task", {"task_id": 2}, meta=as_user(bob_jwt))
        assert missing.is_error and text(missing).startswith("not_found: ")
        # No token at all (no launch credential configured either): refused, with what to do.
        assert "TASK_MCP_TOKEN" in unauthenticated(await client.call_tool("list_tasks", {}))


@pytest.mark.anyio
async def test_stdio_subprocess_keeps_the_launch_user_and_a_meta_user_apart(
    better_auth: BetterAuth, database_file: str
) -> None:
    alice, bob = better_auth.sign_up("Alice"), better_auth.sign_up("Bob")
    alice_jwt, bob_jwt = better_auth.jwt(alice.session_token), better_auth.jwt(bob.session_token)

    async with stdio(stdio_env(better_auth, database_file, TASK_MCP_TOKEN=alice_jwt)) as client:
        ok(await client.call_tool("create_task", {"title": "Alice's plan"}))
        ok(await client.call_tool("create_task", {"title": "Bob's plan"}, meta=as_user(bob_jwt)))

        assert titles(await client.call_tool("list_tasks", {})) == ["Alice's plan"]
        assert titles(await client.call_tool("list_tasks", {}, meta=as_user(bob_jwt))) == ["Bob's plan"]
        assert ok(await client.call_tool("get_task", {"task_id": 1}, meta=as_user(bob_jwt)))["task"]["title"] == (
            "Bob's plan"
        )


@pytest.mark.anyio
async def test_a_jwt_from_another_better_auth_is_unauthenticated(
    better_auth: BetterAuth, other_better_auth: BetterAuth, database_file: str
) -> None:
    other = other_better_auth
    stranger = other.sign_up("Mallory")
    foreign_jwt = other.jwt(stranger.session_token)
    assert jwt.decode(foreign_jwt, options={"verify_signature": False})["iss"] == other.url != better_auth.url

    async with task_mcp(better_auth, database_file) as (_, client):
        refused = unauthenticated(await client.call_tool("list_tasks", {}, meta=as_user(foreign_jwt)))
        assert "another server" in refused and foreign_jwt not in refused
        write = unauthenticated(await client.call_tool("create_task", {"title": "x"}, meta=as_user(foreign_jwt)))
        assert "kid" in write


# ---- a session token instead of a JWT ----------------------------------------------------------


@pytest.mark.anyio
async def test_session_exchange_caches_one_jwt_and_shares_one_exchange(better_auth: BetterAuth) -> None:
    user = better_auth.sign_up("Carol")
    exchange = SessionExchange(better_auth.url, user.session_token)
    tokens: list[str] = []
    try:
        async with anyio.create_task_group() as tg:
            for _ in range(10):
                tg.start_soon(lambda: _append(tokens, exchange))
        assert exchange.exchange_count == 1
        assert len(set(tokens)) == 1
        assert await exchange.token() == tokens[0]  # still fresh: no second exchange
        assert exchange.exchange_count == 1
        claims = jwt.decode(tokens[0], options={"verify_signature": False})
        assert claims["sub"] == user.id
        assert user.session_token not in repr(exchange)
    finally:
        await exchange.aclose()


async def _append(tokens: list[str], exchange: SessionExchange) -> None:
    tokens.append(await exchange.token())


@pytest.mark.anyio
async def test_session_exchange_failures_say_what_to_do(
    better_auth: BetterAuth, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    bogus = "not-a-session.c2lnbmF0dXJl"
    exchange = SessionExchange(better_auth.url, bogus)
    try:
        errors: list[str] = []

        async def attempt() -> None:
            with pytest.raises(UnauthenticatedError) as caught:
                await exchange.token()
            errors.append(str(caught.value))

        async with anyio.create_task_group() as tg:
            for _ in range(5):
                tg.start_soon(attempt)
        assert exchange.exchange_count == 1  # waiters share the failed exchange's verdict
        assert len(set(errors)) == 1
        assert errors[0].startswith("unauthenticated: The Better Auth session is no longer valid")
        assert "HTTP 401" in errors[0] and "TASK_MCP_BETTER_AUTH_SESSION_TOKEN" in errors[0]
        with pytest.raises(UnauthenticatedError):
            await exchange.token()  # a later call tries again
        assert exchange.exchange_count == 2
    finally:
        await exchange.aclose()

    with anyio.fail_after(5):
        unreachable = SessionExchange("http://127.0.0.1:9", bogus, timeout_seconds=2)
        try:
            with pytest.raises(UnauthenticatedError) as caught:
                await unreachable.token()
        finally:
            await unreachable.aclose()
    assert "Better Auth could not be reached at http://127.0.0.1:9/api/auth/token" in str(caught.value)
    assert "TASK_MCP_BETTER_AUTH_URL" in str(caught.value)
    assert bogus not in caplog.text and bogus not in str(caught.value)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("status", "body", "expected", "detail"),
    [
        (200, b"<html>a login page</html>", "session is no longer valid", "the answer held no token"),
        (200, b'{"session": null}', "session is no longer valid", "the answer held no token"),
        (403, b'{"code": "BANNED_USER"}', "session is no longer valid", "HTTP 403"),
        (503, b"", "Better Auth could not be reached", "HTTP 503"),
    ],
)
async def test_session_exchange_answers_without_a_jwt_are_unauthenticated(
    status: int, body: bytes, expected: str, detail: str
) -> None:
    seen: list[str] = []

    def answer(request: Request) -> None:
        seen.append(request.headers["authorization"])
        request.send(status, body)

    # Answers a real Better Auth does not give on cue (a wrong URL, a proxy, an outage), from a loopback server.
    with Loopback(answer) as server:
        exchange = SessionExchange(server.base_url, "a-session-token")
        try:
            with pytest.raises(UnauthenticatedError, match=expected) as caught:
                await exchange.token()
        finally:
            await exchange.aclose()
    assert seen == ["Bearer a-session-token"]
    assert f"({detail})" in str(caught.value)
    assert "a-session-token" not in str(caught.value)


def test_a_session_token_without_a_better_auth_url_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match="TASK_MCP_BETTER_AUTH_SESSION_TOKEN needs TASK_MCP_BETTER_AUTH_URL"):
        SessionExchange.from_settings(Settings(_env_file=None, better_auth_session_token="abc"))
    assert SessionExchange.from_settings(Settings(_env_file=None, better_auth_session_token="")) is None
    assert SessionExchange.from_settings(Settings(_env_file=None)) is None


@pytest.mark.anyio
async def test_a_session_token_keeps_working_across_jwt_expiry_until_sign_out(
    short_lived_better_auth: BetterAuth, database_file: str
) -> None:
    ba = short_lived_better_auth  # JWTs live 3 s; the server below allows no leeway
    user = ba.sign_up("Dave")

    lifetime = int(str(ba.jwt_expiration).removesuffix("s"))
    served = task_mcp(ba, database_file, better_auth_session_token=user.session_token, leeway_seconds=0)
    async with served as (app, client):
        exchange = app.credentials.exchange
        assert exchange is not None
        ok(await client.call_tool("create_task", {"title": "Before expiry"}))  # exchanged, then verified
        assert exchange.exchange_count == 1

        await anyio.sleep(lifetime + 1)  # every JWT issued so far has expired by now
        assert titles(await client.call_tool("list_tasks", {})) == ["Before expiry"]
        assert exchange.exchange_count == 2  # a new JWT for the same session

        ba.sign_out(user.session_token)
        await anyio.sleep(lifetime + 1)
        refused = unauthenticated(await client.call_tool("list_tasks", {}))
        assert exchange.exchange_count == 3  # the exchange was tried, and refused
        assert "Better Auth session is no longer valid" in refused
        assert "Sign in" in refused and "TASK_MCP_BETTER_AUTH_SESSION_TOKEN" in refused
        assert user.session_token not in refused


@pytest.mark.anyio
async def test_stdio_serves_a_session_token_from_the_environment(better_auth: BetterAuth, database_file: str) -> None:
    erin = better_auth.sign_up("Erin")
    env = stdio_env(better_auth, database_file, TASK_MCP_BETTER_AUTH_SESSION_TOKEN=erin.session_token)
    async with stdio(env) as client:
        ok(await client.call_tool("create_task", {"title": "Erin's, via her session"}))
        assert titles(await client.call_tool("list_tasks", {})) == ["Erin's, via her session"]


@pytest.mark.anyio
async def test_task_mcp_token_comes_before_the_session_token(better_auth: BetterAuth, database_file: str) -> None:
    erin, frank = better_auth.sign_up("Erin"), better_auth.sign_up("Frank")
    frank_jwt = better_auth.jwt(frank.session_token)
    both = task_mcp(better_auth, database_file, token=frank_jwt, better_auth_session_token=erin.session_token)
    async with both as (app, client):
        created = ok(await client.call_tool("create_task", {"title": "Frank's"}))["task"]
        assert created["id"] == 1
        assert app.credentials.exchange is not None and app.credentials.exchange.exchange_count == 0
    async with task_mcp(better_auth, database_file, better_auth_session_token=erin.session_token) as (app, client):
        assert titles(await client.call_tool("list_tasks", {})) == []  # Erin's list, not Frank's
        assert app.credentials.exchange is not None and app.credentials.exchange.exchange_count == 1


# ---- Streamable HTTP ---------------------------------------------------------------------------


@contextmanager
def serve_http(settings: Settings) -> Iterator[str]:
    """`create_http_app(settings)` under uvicorn on an ephemeral loopback port; yields the /mcp URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    app = create_http_app(settings, host="127.0.0.1", port=port)
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, log_level="warning", ws="none", lifespan="on"))
    thread = threading.Thread(target=anyio.run, args=(server.serve, [sock]), daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 15
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "the HTTP server did not start"
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


@asynccontextmanager
async def http_client(url: str, token: str) -> AsyncIterator[Client]:
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30)
    async with http, Client(streamable_http_client(url, http_client=http), read_timeout_seconds=30) as client:
        yield client


@pytest.mark.anyio
async def test_a_real_better_auth_jwt_is_an_http_bearer_token(
    better_auth: BetterAuth, other_better_auth: BetterAuth, database_file: str
) -> None:
    alice, bob = better_auth.sign_up("Alice"), better_auth.sign_up("Bob")
    other = other_better_auth
    foreign_jwt = other.jwt(other.sign_up("Mallory").session_token)
    settings = Settings(_env_file=None, database_url=database_file, better_auth_url=better_auth.url)

    with serve_http(settings) as url:
        async with http_client(url, better_auth.jwt(alice.session_token)) as client:
            ok(await client.call_tool("create_task", {"title": "Alice's, over HTTP"}))
            assert titles(await client.call_tool("list_tasks", {})) == ["Alice's, over HTTP"]
        async with http_client(url, better_auth.jwt(bob.session_token)) as client:
            assert titles(await client.call_tool("list_tasks", {})) == []

        # Neither a foreign JWT nor a session token (not a JWT) gets past the SDK's bearer check.
        body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "list_tasks", "arguments": {}}}
        async with httpx2.AsyncClient(timeout=30) as http:
            for token in (foreign_jwt, alice.session_token):
                headers = {"Authorization": f"Bearer {token}", "Accept": "application/json, text/event-stream"}
                refused = await http.post(url, json=body, headers=headers)
                assert refused.status_code == 401
                assert "resource_metadata=" in refused.headers["www-authenticate"]
