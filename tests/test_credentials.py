"""Where a stdio token comes from, when the source misbehaves: a hostile token file, a sleepy clock,
a Better Auth that answers huge or redirects elsewhere. Real files, FIFOs, loopback servers and a
real `task-mcp serve` subprocess where the defect is about the process.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters
from mcp.types import CallToolResult

from task_mcp.credentials import MAX_TOKEN_FILE_BYTES, LaunchCredential, SessionExchange
from task_mcp.errors import UnauthenticatedError
from task_mcp.testing import JWKS_PATH, SigningKey, claims_for
from tests.loopback import Loopback, Request

TOKEN_PATH = "/api/auth/token"
MB = 1_000_000


def text_of(result: CallToolResult) -> str:
    return "\n".join(c.text for c in result.content if c.type == "text")


@asynccontextmanager
async def stdio(env: dict[str, str]) -> AsyncIterator[Client]:
    params = StdioServerParameters(command=sys.executable, args=["-m", "task_mcp", "serve"], env=env)
    async with Client(params, read_timeout_seconds=30) as client:  # type: ignore[arg-type]
        yield client


# ---- the token file -----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_fifo_as_token_file_does_not_block_the_server(tmp_path: Path) -> None:
    fifo = tmp_path / "token"
    os.mkfifo(fifo)
    env = {
        "TASK_MCP_DATABASE_URL": f"sqlite:///{tmp_path / 'tasks.db'}",
        "TASK_MCP_BETTER_AUTH_URL": "http://127.0.0.1:9",
        "TASK_MCP_TOKEN_FILE": str(fifo),
        "TASK_MCP_LOG_LEVEL": "WARNING",
    }
    async with stdio(env) as client:
        assert len((await client.list_tools()).tools) == 15
        for _ in range(2):  # and again: the server is still answering
            result = await client.call_tool("list_tasks", {})
            assert result.is_error
            assert text_of(result).startswith("unauthenticated: TASK_MCP_TOKEN_FILE"), text_of(result)
            assert "not a regular file" in text_of(result)


def test_a_huge_token_file_is_refused_without_being_read(tmp_path: Path) -> None:
    path = tmp_path / "token"
    with path.open("wb") as file:
        file.truncate(300 * MB)  # sparse: 300 MB long, nothing on disk
    with pytest.raises(UnauthenticatedError, match="larger than 64 KB"):
        LaunchCredential(None, path).get()
    path.write_text("x" * MAX_TOKEN_FILE_BYTES)
    assert LaunchCredential(None, path).get() == "x" * MAX_TOKEN_FILE_BYTES  # the limit itself is fine


def test_a_token_file_readable_by_others_is_used_and_warned_about_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="task_mcp")
    path = tmp_path / "token"
    path.write_text("the-secret-token")
    path.chmod(0o644)
    credential = LaunchCredential(None, path)
    for _ in range(3):
        assert credential.get() == "the-secret-token"
    path.write_text("another-secret-token")  # a refresh re-reads, but does not warn again
    assert credential.get() == "another-secret-token"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "readable by other users" in warnings[0].getMessage()
    assert "chmod 600" in warnings[0].getMessage()
    assert "secret-token" not in caplog.text

    caplog.clear()
    private = tmp_path / "private"
    private.write_text("t")
    private.chmod(0o600)
    assert LaunchCredential(None, private).get() == "t"
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


# ---- the session exchange -----------------------------------------------------------------------


def better_auth_stand_in(key: SigningKey, jwts: list[str]) -> Loopback:
    """/api/auth/jwks publishes `key`; /api/auth/token hands out `jwts` in turn (the last one repeats)."""

    def answer(request: Request) -> None:
        if request.path == JWKS_PATH:
            request.send(200, {"keys": [key.public_jwk()]})
        elif request.path == TOKEN_PATH:
            served = request.server.owner.requests[TOKEN_PATH]
            request.send(200, {"token": jwts[min(served, len(jwts)) - 1]})
        else:
            request.send(404, {})

    return Loopback(answer)


@pytest.mark.anyio
async def test_a_jwt_expired_by_the_wall_clock_is_exchanged_again_on_the_next_call(tmp_path: Path) -> None:
    key = SigningKey.generate()
    jwts: list[str] = []
    with better_auth_stand_in(key, jwts) as server:
        now = int(time.time())
        # Lived 15 minutes by its own iat/exp, but its exp passed 100 s ago: a laptop that slept.
        jwts.append(key.sign(claims_for(server.base_url, "user-erin", iat=now - 1000, exp=now - 100)))
        jwts.append(key.sign(claims_for(server.base_url, "user-erin")))
        env = {
            "TASK_MCP_DATABASE_URL": f"sqlite:///{tmp_path / 'tasks.db'}",
            "TASK_MCP_BETTER_AUTH_URL": server.base_url,
            "TASK_MCP_BETTER_AUTH_SESSION_TOKEN": "erins-session",
            "TASK_MCP_LOG_LEVEL": "WARNING",
        }
        async with stdio(env) as client:
            first = await client.call_tool("list_tasks", {})
            assert first.is_error and "has expired" in text_of(first), text_of(first)
            second = await client.call_tool("create_task", {"title": "After the nap"})
            assert not second.is_error, text_of(second)
        assert server.requests[TOKEN_PATH] == 2


@pytest.mark.anyio
async def test_a_400_mb_token_exchange_answer_is_cut_at_64_kb() -> None:
    with Loopback(lambda request: request.stream(400 * MB)) as server:
        exchange = SessionExchange(server.base_url, "a-session-token", timeout_seconds=60)
        try:
            with pytest.raises(UnauthenticatedError, match="answer too large") as caught:
                await exchange.token()
        finally:
            await exchange.aclose()
        assert server.sent < 32 * MB
    assert "a-session-token" not in str(caught.value)


@pytest.mark.anyio
async def test_a_token_exchange_redirected_to_another_origin_is_not_followed() -> None:
    key = SigningKey.generate()
    with better_auth_stand_in(key, [key.sign(claims_for("http://elsewhere"))]) as elsewhere:

        def redirect(request: Request) -> None:
            request.send(302, b"", headers={"Location": elsewhere.base_url + TOKEN_PATH})

        with Loopback(redirect) as server:
            exchange = SessionExchange(server.base_url, "a-session-token")
            try:
                with pytest.raises(UnauthenticatedError, match="redirected to another origin"):
                    await exchange.token()
            finally:
                await exchange.aclose()
    assert elsewhere.requests[TOKEN_PATH] == 0  # the session token never travelled there
