"""The change journal end to end, with real parts: whom a change names, and an agent taking one back.

- A change made with a real Better Auth OAuth-provider access token (`at+jwt`, from the
  authorization-code flow with PKCE against tests/better_auth/server.mjs) names the token's `azp`
  as `by.client`, over Streamable HTTP served by uvicorn.
- Over stdio (a real `task-mcp serve` subprocess) `by.client` is the MCP client's
  `clientInfo.name`, on the handshake protocol and on the sessionless 2026-07-28 one; a token that
  names its client (`azp`) comes first.
- An agent undoes a mistaken subtree delete; the conversation is docs/transcripts/
  undo-a-bulk-change.md, compared on every run and rewritten with UPDATE_TRANSCRIPTS=1.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import socket
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import httpx2
import jwt
import pytest
import uvicorn
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult, Implementation

from task_mcp.auth import JwtVerifier
from task_mcp.config import Settings
from task_mcp.db import Database
from task_mcp.http import create_http_app
from task_mcp.server import TaskMcp
from task_mcp.service import TaskService
from task_mcp.testing import JwksServer
from tests.helpers import Clock, bearer, ok, text

if TYPE_CHECKING:  # imported by pytest_plugins below, so that pytest rewrites its asserts
    from tests.better_auth_fixture import BetterAuth

pytest_plugins = ["tests.better_auth_fixture"]

TRANSCRIPT = Path(__file__).resolve().parent.parent / "docs" / "transcripts" / "undo-a-bulk-change.md"
AGENT = Implementation(name="journal-e2e-agent", version="1.0.0")  # the MCP client's clientInfo


def newest_change(answer: dict[str, Any]) -> dict[str, Any]:
    """The first (newest) change of a `list_changes` answer."""
    assert answer["changes"], answer
    return dict(answer["changes"][0])


# --- a real OAuth-provider access token over Streamable HTTP -------------------------------------


@dataclass
class OAuthDeployment:
    """A Better Auth OAuth provider and the task-mcp HTTP endpoint that is its one protected resource."""

    better_auth: BetterAuth
    resource: str  # http://127.0.0.1:<port>/mcp: TASK_MCP_RESOURCE_URL, and the tokens' aud


@contextmanager
def serve_http(settings: Settings, sock: socket.socket) -> Iterator[str]:
    """`create_http_app(settings)` under uvicorn on `sock` (bound to loopback); yields the /mcp URL."""
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


def loopback_socket() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


@pytest.fixture(scope="module")
def oauth(tmp_path_factory: pytest.TempPathFactory, _sqlite_template: Path) -> Iterator[OAuthDeployment]:
    """task-mcp configured for OAuth-provider tokens (issuer = Better Auth + /api/auth, audience =
    the resource URL), behind uvicorn; the port is bound first, so Better Auth can name it."""
    from tests.better_auth_fixture import BetterAuth

    reason = BetterAuth.unavailable()
    if reason:
        pytest.skip(reason)
    sock = loopback_socket()
    resource = f"http://127.0.0.1:{sock.getsockname()[1]}/mcp"
    better_auth = BetterAuth(oauth_resource=resource).start()
    database = tmp_path_factory.mktemp("oauth") / "tasks.db"
    database.write_bytes(_sqlite_template.read_bytes())
    settings = Settings(
        _env_file=None,
        database_url=f"sqlite:///{database}",
        better_auth_url=better_auth.url,  # where the JWKS is
        issuer=better_auth.oauth_issuer,
        audience=resource,
        resource_url=resource,
    )
    try:
        with serve_http(settings, sock):
            yield OAuthDeployment(better_auth, resource)
    finally:
        better_auth.stop()


@asynccontextmanager
async def http_client(url: str, token: str, mode: str = "auto") -> AsyncIterator[Client]:
    """The SDK's Streamable HTTP client, as AGENT, with `Authorization: Bearer <token>`."""
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30) as http:
        transport = streamable_http_client(url, http_client=http)
        async with Client(transport, mode=mode, client_info=AGENT, read_timeout_seconds=30) as client:  # type: ignore[arg-type]
            yield client


@pytest.mark.anyio
async def test_a_change_made_with_a_real_oauth_access_token_names_the_tokens_client(oauth: OAuthDeployment) -> None:
    ba = oauth.better_auth
    developer, alice = ba.sign_up("Developer"), ba.sign_up("Alice")
    planner = ba.register_oauth_client(developer, "Planner agent")
    mailer = ba.register_oauth_client(developer, "Mail agent")
    token = ba.oauth_access_token(alice, planner)

    assert jwt.get_unverified_header(token)["typ"] == "at+jwt"
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["azp"] == claims["client_id"] == planner
    assert (claims["sub"], claims["aud"], claims["iss"]) == (alice.id, oauth.resource, ba.oauth_issuer)
    assert claims["scope"] == "tasks:read tasks:write"

    async with http_client(oauth.resource, token) as client:
        created = ok(await client.call_tool("create_task", {"title": "Written through the planner"}))
        change = newest_change(ok(await client.call_tool("list_changes", {})))
    assert change["change_id"] == created["change_id"]
    assert change["tool"] == "create_task" and change["task_ids"] == [created["task"]["id"]]
    assert change["by"]["user_id"] == alice.id
    assert change["by"]["client"] == planner  # the token's azp, not the MCP client's own name

    # Another OAuth client of the same user is named as itself.
    async with http_client(oauth.resource, ba.oauth_access_token(alice, mailer)) as client:
        completed = ok(await client.call_tool("complete_task", {"task_id": created["task"]["id"]}))
        changes = ok(await client.call_tool("list_changes", {"task_id": created["task"]["id"]}))["changes"]
    assert [(c["change_id"], c["by"]["client"]) for c in changes] == [
        (completed["change_id"], mailer),
        (created["change_id"], planner),
    ]


@pytest.mark.anyio
async def test_over_http_a_plain_jwt_leaves_the_client_to_the_sessionless_clients_info(
    better_auth: BetterAuth, _sqlite_template: Path, tmp_path: Path
) -> None:
    """A plain Better Auth JWT names no client; at 2026-07-28 every HTTP request carries the MCP
    client's clientInfo, so the transport knows it."""
    bob = better_auth.sign_up("Bob")
    database = tmp_path / "tasks.db"
    database.write_bytes(_sqlite_template.read_bytes())
    settings = Settings(_env_file=None, database_url=f"sqlite:///{database}", better_auth_url=better_auth.url)
    with serve_http(settings, loopback_socket()) as url:
        async with http_client(url, better_auth.jwt(bob.session_token)) as client:
            assert client.protocol_version == "2026-07-28"
            ok(await client.call_tool("create_task", {"title": "Bob's"}))
            change = newest_change(ok(await client.call_tool("list_changes", {})))
    assert change["by"]["user_id"] == bob.id
    assert change["by"]["client"] == AGENT.name


# --- stdio: the MCP client's name ----------------------------------------------------------------


@asynccontextmanager
async def stdio_agent(env: dict[str, str], mode: str) -> AsyncIterator[Client]:
    """A real `task-mcp serve` subprocess, driven by the SDK's stdio client as AGENT."""
    params = StdioServerParameters(command=sys.executable, args=["-m", "task_mcp", "serve"], env=env)
    async with Client(params, mode=mode, client_info=AGENT, read_timeout_seconds=30) as client:  # type: ignore[arg-type]
        yield client


@pytest.mark.anyio
@pytest.mark.parametrize(("mode", "protocol"), [("legacy", "2025-11-25"), ("auto", "2026-07-28")])
async def test_a_change_over_stdio_names_the_mcp_clients_name(
    mode: str, protocol: str, database_url: str, jwks: JwksServer, mint: Callable[..., str]
) -> None:
    env = {
        "TASK_MCP_DATABASE_URL": database_url,
        "TASK_MCP_BETTER_AUTH_URL": jwks.base_url,
        "TASK_MCP_TOKEN": mint("alice", name="Alice"),  # a plain Better Auth JWT: no azp
        "TASK_MCP_LOG_LEVEL": "WARNING",
    }
    oauth_token = mint(
        "alice", name="Alice", azp="cursor-oauth", client_id="cursor-oauth", scope="tasks:read tasks:write"
    )
    async with stdio_agent(env, mode) as client:
        assert client.protocol_version == protocol
        first = ok(await client.call_tool("create_task", {"title": "From the IDE"}))
        # The same user through an OAuth client on the same process: its azp comes first.
        second = ok(await client.call_tool("create_task", {"title": "From an OAuth client"}, meta=bearer(oauth_token)))
        changes = ok(await client.call_tool("list_changes", {}))["changes"]
    assert [(c["change_id"], c["by"]) for c in changes] == [
        (second["change_id"], {"user_id": "alice", "name": "Alice", "client": "cursor-oauth"}),
        (first["change_id"], {"user_id": "alice", "name": "Alice", "client": AGENT.name}),
    ]


# --- an agent undoes a mistaken bulk change: the transcript --------------------------------------

START = dt.datetime(2026, 11, 30, 9, 0, tzinfo=dt.UTC)
INSTANT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)")


class Transcript:
    """Tool calls and the text answers a model reads, as Markdown."""

    def __init__(self, client: Client, token: str, clock: Clock) -> None:
        self.client, self.token, self.clock = client, token, clock
        self.lines: list[str] = []

    def say(self, line: str) -> None:
        self.lines += [line, ""]

    async def call(self, tool: str, arguments: dict[str, Any]) -> CallToolResult:
        self.clock.advance(seconds=20)  # a model thinks between calls
        result = await self.client.call_tool(tool, arguments, meta=bearer(self.token))
        shown = json.dumps(arguments, ensure_ascii=False)
        self.lines += [f"**→ `{tool}`** `{shown}`", "", "```", text(result), "```", ""]
        return result

    async def ok(self, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        return ok(await self.call(tool, arguments))


def _comparable(markdown: str) -> str:
    """The transcript with instants masked: where the journal takes its time from is not the point."""
    return INSTANT.sub("<instant>", markdown)


@pytest.mark.anyio
async def test_transcript_of_undoing_a_mistaken_bulk_change(
    tmp_path: Path, _sqlite_template: Path, jwks: JwksServer, mint: Callable[..., str]
) -> None:
    database_url = f"sqlite:///{tmp_path / 'tasks.db'}"
    (tmp_path / "tasks.db").write_bytes(_sqlite_template.read_bytes())
    settings = Settings(_env_file=None, database_url=database_url, better_auth_url=jwks.base_url)
    clock = Clock(START)
    app = TaskMcp(settings, database=Database(database_url), verifier=JwtVerifier.from_settings(settings))
    app.service = TaskService(app.database, clock=clock, purge_every=None)  # fixed times in the transcript
    token = mint("user-sam", name="Sam")
    try:
        async with Client(app.build_server(), client_info=AGENT) as client:  # type: ignore[arg-type]
            t = Transcript(client, token, clock)
            t.say("Sam asked the agent to plan the office move, then to drop the task about booking movers.")
            project = (await t.ok("create_task", {"title": "Move to the new office", "priority": "high"}))["task"]
            subtasks = [
                {"title": "Book the movers", "due": "2026-12-10", "parent_id": project["id"]},
                {"title": "Pack the archive", "tags": ["packing"], "parent_id": project["id"]},
                {"title": "Order desks", "priority": "medium", "parent_id": project["id"]},
                {"title": "Forward the mail", "parent_id": project["id"]},
                {"title": "Send the new address to clients", "due": "2026-12-14", "parent_id": project["id"]},
            ]
            created = (await t.ok("create_tasks", {"tasks": subtasks}))["tasks"]
            before = await t.ok("list_tasks", {"status": "all", "include_description": True})
            assert before["total"] == 6

            t.say("The agent meant task 2 and deleted the whole project instead: one change, six tasks.")
            mistake = await t.ok("delete_task", {"task_id": project["id"]})
            assert (await t.ok("list_tasks", {"status": "all"}))["total"] == 0

            t.say("Sam: “Everything is gone!” The agent looks at what it did, and takes it back.")
            changes = await t.ok("list_changes", {"limit": 3})
            wrong = newest_change(changes)
            assert wrong["change_id"] == mistake["change_id"] and wrong["tool"] == "delete_task"
            assert sorted(wrong["task_ids"]) == sorted([project["id"], *(task["id"] for task in created)])
            undo = await t.ok("undo_change", {"change_id": wrong["change_id"]})
            assert undo["change_id"] not in (None, wrong["change_id"])
            after = await t.ok("list_tasks", {"status": "all", "include_description": True})

            t.say("Then it does what Sam asked.")
            await t.ok("delete_task", {"task_id": created[0]["id"]})
    finally:
        await app.aclose()

    def state(page: dict[str, Any]) -> list[dict[str, Any]]:
        volatile = {"version", "updated_at"}  # undo moves these forward; every other field is restored
        return [{k: v for k, v in task.items() if k not in volatile} for task in page["tasks"]]

    assert after["total"] == before["total"]
    assert state(after) == state(before)

    header = [
        "# Undoing a mistaken bulk change",
        "",
        "An agent (MCP client `journal-e2e-agent`) on task-mcp, in memory. Each call shows the tool, its",
        "arguments and the text the model reads (the structured content is left out). Generated by",
        "`tests/test_journal_e2e.py::test_transcript_of_undoing_a_mistaken_bulk_change`;",
        "`UPDATE_TRANSCRIPTS=1` rewrites it.",
        "",
    ]
    markdown = "\n".join(header + t.lines).rstrip() + "\n"
    if os.environ.get("UPDATE_TRANSCRIPTS") or not TRANSCRIPT.exists():
        missing = not TRANSCRIPT.exists()
        TRANSCRIPT.parent.mkdir(parents=True, exist_ok=True)
        TRANSCRIPT.write_text(markdown, encoding="utf-8")
        if missing:
            pytest.fail(f"{TRANSCRIPT} was missing and is now written: review it, commit it, rerun")
    else:
        assert _comparable(TRANSCRIPT.read_text(encoding="utf-8")) == _comparable(markdown), (
            f"{TRANSCRIPT} no longer matches what the server answers: rerun with UPDATE_TRANSCRIPTS=1 and review it"
        )
