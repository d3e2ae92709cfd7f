"""Streamable HTTP: a real uvicorn server on loopback, the SDK's HTTP client, raw httpx2 requests.

Each test starts its own server (an ephemeral port on 127.0.0.1, served from a thread) on the test
database, trusting the conftest JWKS. Only the `Authorization: Bearer` header identifies the caller.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
import uvicorn
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from task_mcp.config import Settings
from task_mcp.credentials import META_KEY
from task_mcp.errors import UnauthenticatedError
from task_mcp.http import BearerIdentity, BearerTokenVerifier, PrincipalAccessToken, create_http_app
from task_mcp.server import TaskMcp
from task_mcp.testing import JwksServer, SigningKey, bad_tokens
from tests.helpers import error as error_text
from tests.helpers import ok

MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
METADATA_PATH = "/.well-known/oauth-protected-resource/mcp"


# --- a real server --------------------------------------------------------------------------------


@contextmanager
def serve_asgi(build: Callable[[int], Any], *, on_exit: Callable[[], Any] | None = None) -> Iterator[str]:
    """Run `build(port)` with uvicorn on 127.0.0.1 in a thread; yield its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(build(port), log_config=None, log_level="warning", ws="none", lifespan="on")
    server = uvicorn.Server(config)

    async def main() -> None:
        try:
            await server.serve(sockets=[sock])
        finally:
            if on_exit is not None:
                await on_exit()

    thread = threading.Thread(target=anyio.run, args=(main,), name="uvicorn", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 15
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the HTTP server did not start")
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()
        assert not thread.is_alive(), "the HTTP server did not stop"


@dataclass
class Served:
    url: str  # http://127.0.0.1:<port>
    settings: Settings

    @property
    def mcp(self) -> str:
        return self.url + "/mcp"


@pytest.fixture
def settings_for(jwks: JwksServer, database_url: str) -> Callable[..., Settings]:
    """Settings on the test database trusting the test JWKS, like conftest's make_app (env included)."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {"database_url": database_url, "better_auth_url": jwks.base_url, **overrides}
        return Settings(_env_file=None, **values)

    return make


@pytest.fixture
def start(settings_for: Callable[..., Settings]) -> Iterator[Callable[..., Served]]:
    """start(read_only=True, ...) -> a running server; the app owns its TaskMcp (migrates, closes)."""
    with ExitStack() as stack:

        def start(*, migrate: bool = True, **overrides: Any) -> Served:
            settings = settings_for(**overrides)
            url = stack.enter_context(
                serve_asgi(lambda port: create_http_app(settings, host="127.0.0.1", port=port, migrate=migrate))
            )
            return Served(url, settings)

        yield start


@pytest.fixture
def server(start: Callable[..., Served]) -> Served:
    return start()


# --- clients --------------------------------------------------------------------------------------


@asynccontextmanager
async def connect(url: str, token: str | None, *, mode: str = "auto") -> AsyncIterator[Client]:
    """The SDK's Streamable HTTP client with `Authorization: Bearer <token>` on every request."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30)) as http:
        transport = streamable_http_client(url, http_client=http)
        async with Client(transport, mode=mode, read_timeout_seconds=30) as client:  # type: ignore[arg-type]
            yield client


def call_body(name: str, arguments: dict[str, Any], meta: dict[str, Any] | None = None) -> dict[str, Any]:
    params: dict[str, Any] = {"name": name, "arguments": arguments}
    if meta is not None:
        params["_meta"] = meta
    return {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params}


async def raw_post(
    url: str, body: dict[str, Any], *, token: str | None = None, headers: dict[str, str] | None = None
) -> httpx2.Response:
    sent = dict(MCP_HEADERS)
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    sent.update(headers or {})
    async with httpx2.AsyncClient(timeout=30) as http:
        return await http.post(url, json=body, headers=sent)


async def titles(url: str, token: str) -> list[str]:
    async with connect(url, token) as client:
        page = ok(await client.call_tool("list_tasks", {"status": "all", "limit": 100}))
    return sorted(t["title"] for t in page["tasks"])


# --- the happy path -------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_a_bearer_token_drives_the_tools_in_both_protocol_modes(
    server: Served, mint: Callable[..., str], mode: str
) -> None:
    async with connect(server.mcp, mint("alice"), mode=mode) as client:
        tools = {t.name for t in (await client.list_tools()).tools}
        assert {"list_tasks", "create_task", "delete_task"} <= tools
        created = ok(await client.call_tool("create_task", {"title": "Water the plants"}))
        assert created["created"] is True and created["task"]["id"] == 1
        page = ok(await client.call_tool("list_tasks", {}))
        assert [t["title"] for t in page["tasks"]] == ["Water the plants"] and page["total"] == 1


# --- 401, 403 and the metadata --------------------------------------------------------------------


@pytest.mark.anyio
async def test_bad_or_missing_bearer_tokens_get_401_with_resource_metadata_and_change_nothing(
    server: Served, signing_key: SigningKey, jwks: JwksServer, mint: Callable[..., str]
) -> None:
    bad = bad_tokens(signing_key, jwks.base_url, sub="user-alice")
    attempts: dict[str, dict[str, str]] = {name: {"Authorization": f"Bearer {token}"} for name, token in bad.items()}
    attempts["missing"] = {}
    attempts["bearer_without_token"] = {"Authorization": "Bearer"}
    attempts["basic_scheme"] = {"Authorization": "Basic dXNlcjpwYXNz"}
    attempts["jwt_without_scheme"] = {"Authorization": mint("user-alice")}
    body = call_body("create_task", {"title": "should not exist"})
    expected_metadata = f'resource_metadata="{server.url}{METADATA_PATH}"'
    for name, headers in attempts.items():
        response = await raw_post(server.mcp, body, headers=headers)
        assert response.status_code == 401, name
        challenge = response.headers["www-authenticate"]
        assert challenge.startswith("Bearer ") and 'error="invalid_token"' in challenge, name
        assert expected_metadata in challenge, (name, challenge)
        assert response.json()["error"] == "invalid_token"
    async with httpx2.AsyncClient(timeout=30) as http:  # the GET stream is guarded the same way
        assert (await http.get(server.mcp, headers={"Accept": "text/event-stream"})).status_code == 401
    assert await titles(server.mcp, mint("user-alice")) == []


@pytest.mark.anyio
async def test_protected_resource_metadata_names_the_better_auth_server(server: Served, jwks: JwksServer) -> None:
    async with httpx2.AsyncClient(timeout=30) as http:
        response = await http.get(server.url + METADATA_PATH)
    assert response.status_code == 200
    assert response.json() == {
        "resource": server.mcp,
        "authorization_servers": [jwks.base_url],
        "scopes_supported": ["tasks:read", "tasks:write"],
        "bearer_methods_supported": ["header"],
        "resource_name": "task-mcp",
    }


@pytest.mark.anyio
async def test_configured_resource_url_and_issuer_shape_metadata_and_challenge(
    start: Callable[..., Served], jwks: JwksServer
) -> None:
    issuer = jwks.base_url + "/api/auth"  # an OAuth-provider deployment
    served = start(resource_url="https://tasks.example.com/mcp", issuer=issuer)
    async with httpx2.AsyncClient(timeout=30) as http:
        metadata = (await http.get(served.url + METADATA_PATH)).json()
        challenge = (await http.post(served.mcp, json={}, headers=MCP_HEADERS)).headers["www-authenticate"]
    assert metadata["resource"] == "https://tasks.example.com/mcp"
    assert metadata["authorization_servers"] == [issuer]
    assert f'resource_metadata="https://tasks.example.com{METADATA_PATH}"' in challenge


@pytest.mark.anyio
async def test_a_read_scope_token_can_list_but_a_write_is_forbidden(server: Served, mint: Callable[..., str]) -> None:
    async with connect(server.mcp, mint("alice", scope="tasks:read")) as client:
        assert ok(await client.call_tool("list_tasks", {}))["total"] == 0
        text = error_text(await client.call_tool("create_task", {"title": "nope"}), "forbidden")
        assert "tasks:write" in text
    assert await titles(server.mcp, mint("alice")) == []


@pytest.mark.anyio
@pytest.mark.parametrize("scope", ["", "tasks:write", "profile email"])
async def test_a_token_without_the_read_scope_gets_403_insufficient_scope(
    server: Served, mint: Callable[..., str], scope: str
) -> None:
    response = await raw_post(server.mcp, call_body("list_tasks", {}), token=mint("alice", scope=scope))
    assert response.status_code == 403
    assert 'error="insufficient_scope"' in response.headers["www-authenticate"]
    assert response.json()["error"] == "insufficient_scope"


def oauth_access_token(key: SigningKey, jwks: JwksServer, resource: str, sub: str, scope: str) -> str:
    """Like @better-auth/oauth-provider's: typ at+jwt, iss = base URL + /api/auth, aud = the resource."""
    now = int(time.time())
    claims = {
        "sub": sub,
        "iss": jwks.base_url + "/api/auth",
        "aud": resource,
        "scope": scope,
        "client_id": "cursor-client",
        "azp": "cursor-client",
        "iat": now,
        "exp": now + 900,
    }
    return key.sign(claims, headers={"typ": "at+jwt"})


@pytest.mark.anyio
async def test_oauth_provider_access_tokens_work_when_configured_and_plain_jwts_then_do_not(
    start: Callable[..., Served], signing_key: SigningKey, jwks: JwksServer, mint: Callable[..., str]
) -> None:
    resource = "http://127.0.0.1/mcp"
    served = start(issuer=jwks.base_url + "/api/auth", audience=resource, resource_url=resource)
    async with httpx2.AsyncClient(timeout=30) as http:
        metadata = (await http.get(served.url + METADATA_PATH)).json()
    assert metadata["authorization_servers"] == [jwks.base_url + "/api/auth"]

    writer = oauth_access_token(signing_key, jwks, resource, "alice", "tasks:read tasks:write")
    async with connect(served.mcp, writer) as client:
        assert ok(await client.call_tool("create_task", {"title": "From an OAuth client"}))["created"] is True
    reader = oauth_access_token(signing_key, jwks, resource, "alice", "tasks:read")
    async with connect(served.mcp, reader) as client:
        error_text(await client.call_tool("create_task", {"title": "nope"}), "forbidden")
    assert await titles(served.mcp, writer) == ["From an OAuth client"]

    # A plain JWT-plugin token (iss = aud = base URL) is not what this deployment accepts, and an
    # access token for another resource is refused too.
    for token in (
        mint("alice"),
        oauth_access_token(signing_key, jwks, "https://other.example/mcp", "alice", "tasks:read"),
    ):
        response = await raw_post(served.mcp, call_body("list_tasks", {}), token=token)
        assert response.status_code == 401


@pytest.mark.anyio
async def test_the_default_configuration_refuses_oauth_provider_access_tokens(
    server: Served, signing_key: SigningKey, jwks: JwksServer
) -> None:
    token = oauth_access_token(signing_key, jwks, server.mcp, "alice", "tasks:read tasks:write")
    response = await raw_post(server.mcp, call_body("list_tasks", {}), token=token)
    assert response.status_code == 401


# --- only the bearer header counts ----------------------------------------------------------------


@pytest.mark.anyio
async def test_meta_tokens_and_the_launch_token_are_ignored_over_http(
    start: Callable[..., Served], mint: Callable[..., str]
) -> None:
    served = start(token=mint("carol"))  # a launch token: used on stdio, never over HTTP
    alice, bob = mint("alice"), mint("bob")
    body = call_body("create_task", {"title": "from meta"}, meta={META_KEY: f"Bearer {alice}"})
    response = await raw_post(served.mcp, body)  # no Authorization header at all
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]

    async with connect(served.mcp, bob) as client:
        # The bearer decides whose list it is; a _meta token, valid or not, is not even looked at.
        ok(await client.call_tool("create_task", {"title": "bob's"}, meta={META_KEY: f"Bearer {alice}"}))
        ok(await client.call_tool("create_task", {"title": "bob's too"}, meta={META_KEY: "garbage"}))
        ok(await client.call_tool("create_task", {"title": "bob's three"}, meta={META_KEY: 42}))
    assert await titles(served.mcp, bob) == ["bob's", "bob's three", "bob's too"]
    assert await titles(served.mcp, alice) == []
    assert await titles(served.mcp, mint("carol")) == []


@pytest.mark.anyio
async def test_principal_over_http_without_a_verified_bearer_is_unauthenticated(
    make_app: Callable[..., TaskMcp], mint: Callable[..., str]
) -> None:
    # Defence in depth: even if a request reached the tools without the SDK's bearer check, neither
    # the _meta token nor the launch token would stand in for it.
    app = make_app(token=mint("carol"))
    with pytest.raises(UnauthenticatedError, match="Authorization: Bearer"):
        await BearerIdentity(app.verifier).principal({META_KEY: mint("alice")})
    assert (await app.stdio_identity.principal({META_KEY: mint("alice")})).user_id == "alice"  # stdio: _meta counts
    assert (await app.stdio_identity.principal(None)).user_id == "carol"  # stdio: then the launch token


@pytest.mark.anyio
async def test_the_token_verifier_adapter_carries_the_principal_and_default_scopes(
    make_app: Callable[..., TaskMcp], mint: Callable[..., str], signing_key: SigningKey, jwks: JwksServer
) -> None:
    verifier = BearerTokenVerifier(make_app().verifier)
    plain = await verifier.verify_token(mint("alice"))
    assert isinstance(plain, PrincipalAccessToken)
    assert plain.principal.user_id == plain.subject == "alice"
    assert plain.scopes == ["tasks:read", "tasks:write"]  # no scope claim: a plain Better Auth JWT
    assert plain.expires_at == plain.principal.expires_at is not None
    oauth = await verifier.verify_token(mint("bob", scope="tasks:read openid", client_id="cursor"))
    assert oauth is not None and oauth.scopes == ["openid", "tasks:read"] and oauth.client_id == "cursor"
    for token in bad_tokens(signing_key, jwks.base_url).values():
        assert await verifier.verify_token(token) is None
    await verifier.verifier.aclose()


# --- isolation under concurrency ------------------------------------------------------------------


@pytest.mark.anyio
async def test_two_users_concurrently_never_see_each_others_tasks(server: Served, mint: Callable[..., str]) -> None:
    users = {"alice": mint("alice"), "bob": mint("bob")}
    seen: dict[str, list[list[str]]] = {name: [] for name in users}
    ids: dict[str, list[int]] = {name: [] for name in users}

    async def work(name: str, client: Client, i: int) -> None:
        created = ok(await client.call_tool("create_task", {"title": f"{name} task {i}"}))
        ids[name].append(created["task"]["id"])
        page = ok(await client.call_tool("list_tasks", {"limit": 100}))
        seen[name].append([t["title"] for t in page["tasks"]])

    async with connect(server.mcp, users["alice"]) as alice, connect(server.mcp, users["bob"]) as bob:
        async with anyio.create_task_group() as tg:
            for i in range(20):  # interleaved: alice, bob, alice, bob, ...
                tg.start_soon(work, "alice", alice, i)
                tg.start_soon(work, "bob", bob, i)
        final = {
            "alice": ok(await alice.call_tool("list_tasks", {"limit": 100})),
            "bob": ok(await bob.call_tool("list_tasks", {"limit": 100})),
        }
    for name in users:
        assert sorted(ids[name]) == list(range(1, 21)), name  # each user's own numbering, gap-free
        assert len(seen[name]) == 20
        assert all(title.startswith(f"{name} ") for page in seen[name] for title in page), name
        assert final[name]["total"] == 20
        assert sorted(t["title"] for t in final[name]["tasks"]) == sorted(f"{name} task {i}" for i in range(20))


# --- health, hosts, origins -----------------------------------------------------------------------


@pytest.mark.anyio
async def test_healthz_answers_without_auth_when_the_database_is_up(server: Served) -> None:
    async with httpx2.AsyncClient(timeout=30) as http:
        response = await http.get(server.url + "/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}
    assert response.headers["cache-control"] == "no-store"


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["postgres_closed_port", "sqlite_file_is_a_folder"])
async def test_healthz_is_503_when_the_database_is_unreachable(
    start: Callable[..., Served], tmp_path: Path, kind: str
) -> None:
    url = {
        "postgres_closed_port": "postgresql+psycopg://postgres@127.0.0.1:1/tasks",
        # (a file in a missing folder is refused at start-up instead: see test_db)
        "sqlite_file_is_a_folder": f"sqlite:///{tmp_path}",
    }[kind]
    served = start(database_url=url, migrate=False)
    async with httpx2.AsyncClient(timeout=30) as http:
        response = await http.get(served.url + "/healthz")
    assert response.status_code == 503 and response.json() == {"status": "unavailable"}


@pytest.mark.anyio
async def test_a_foreign_host_header_gets_421_unless_allowed(
    start: Callable[..., Served], mint: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    token = mint("alice")
    body = call_body("list_tasks", {})
    default = start()
    assert (await raw_post(default.mcp, body, token=token)).status_code == 200  # Host: 127.0.0.1:<port>
    foreign = await raw_post(default.mcp, body, token=token, headers={"Host": "tasks.example.com"})
    assert foreign.status_code == 421

    monkeypatch.setenv("TASK_MCP_ALLOWED_HOSTS", "tasks.example.com, tasks.example.com:*")
    allowed = start()
    assert allowed.settings.allowed_hosts == ("tasks.example.com", "tasks.example.com:*")
    response = await raw_post(allowed.mcp, body, token=token, headers={"Host": "tasks.example.com"})
    assert response.status_code == 200
    response = await raw_post(allowed.mcp, body, token=token, headers={"Host": "evil.example.com"})
    assert response.status_code == 421

    monkeypatch.setenv("TASK_MCP_ALLOWED_HOSTS", "*")  # behind a proxy that checks Host itself
    anything = start()
    response = await raw_post(anything.mcp, body, token=token, headers={"Host": "evil.example.com"})
    assert response.status_code == 200


@pytest.mark.anyio
async def test_a_foreign_origin_gets_403_unless_allowed(
    start: Callable[..., Served], mint: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    token, body = mint("alice"), call_body("list_tasks", {})
    origin = {"Origin": "https://app.example.com"}
    assert (await raw_post(start().mcp, body, token=token, headers=origin)).status_code == 403
    monkeypatch.setenv("TASK_MCP_ALLOWED_ORIGINS", "https://app.example.com")
    assert (await raw_post(start().mcp, body, token=token, headers=origin)).status_code == 200


# --- mounted in FastAPI ---------------------------------------------------------------------------


@pytest.mark.anyio
async def test_mounted_in_a_fastapi_app_next_to_an_ordinary_route(
    settings_for: Callable[..., Settings], mint: Callable[..., str]
) -> None:
    from fastapi import FastAPI

    def build(port: int) -> FastAPI:
        tasks = create_http_app(settings_for(), port=port)

        @asynccontextmanager
        async def lifespan(api: FastAPI) -> AsyncIterator[None]:
            async with tasks.router.lifespan_context(tasks):
                yield

        api = FastAPI(lifespan=lifespan)

        @api.get("/hello")
        def hello() -> dict[str, str]:
            return {"hello": "world"}

        api.mount("/", tasks)
        return api

    with serve_asgi(build) as url:
        async with httpx2.AsyncClient(timeout=30) as http:
            assert (await http.get(url + "/hello")).json() == {"hello": "world"}
            assert (await http.get(url + "/healthz")).json() == {"status": "ok"}
            assert (await http.get(url + METADATA_PATH)).json()["resource"] == url + "/mcp"
            assert (await http.post(url + "/mcp", json={}, headers=MCP_HEADERS)).status_code == 401
        async with connect(url + "/mcp", mint("alice")) as client:
            ok(await client.call_tool("create_task", {"title": "via FastAPI"}))
            assert [t["title"] for t in ok(await client.call_tool("list_tasks", {}))["tasks"]] == ["via FastAPI"]


# --- the command ----------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.anyio
async def test_task_mcp_serve_http_runs_uvicorn_and_logs_to_stderr(
    jwks: JwksServer, mint: Callable[..., str], tmp_path: Path
) -> None:
    port, token = _free_port(), mint("alice")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASK_MCP_")} | {
        "TASK_MCP_DATABASE_URL": f"sqlite:///{tmp_path / 'tasks.db'}",
        "TASK_MCP_BETTER_AUTH_URL": jwks.base_url,
        "TASK_MCP_LOG_LEVEL": "INFO",
    }
    command = [sys.executable, "-m", "task_mcp", "serve", "--transport", "http", "--port", str(port)]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        async with httpx2.AsyncClient(timeout=5) as http:
            for _ in range(300):
                try:
                    if (await http.get(url + "/healthz")).status_code == 200:
                        break
                except httpx2.TransportError:
                    pass
                assert proc.poll() is None, proc.communicate()[1]
                await anyio.sleep(0.05)
        async with connect(url + "/mcp", token) as client:
            ok(await client.call_tool("create_task", {"title": "served by the CLI"}))
    finally:
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=15)
    assert stdout == ""  # logs, access lines included, go to stderr
    assert "Streamable HTTP" in stderr and "POST /mcp" in stderr
    assert token not in stderr
    assert proc.returncode in (0, 130)


def test_settings_split_comma_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TASK_MCP_ALLOWED_HOSTS", raising=False)
    monkeypatch.delenv("TASK_MCP_ALLOWED_ORIGINS", raising=False)
    settings = Settings(_env_file=None, allowed_hosts=" a.example.com ,b:* ,", allowed_origins="https://x")
    assert settings.allowed_hosts == ("a.example.com", "b:*")
    assert settings.allowed_origins == ("https://x",)
    assert json.loads(Settings(_env_file=None).model_dump_json())["allowed_hosts"] == []


# --- slow clients, stateless GET, Host and Origin on their own ---------------------------------


def _closed_by_server(sock: socket.socket) -> bool:
    """True once the server has closed `sock` (whatever it sent first); False while it is open."""
    try:
        while chunk := sock.recv(4096):
            del chunk
        return True
    except BlockingIOError:
        return False
    except OSError:
        return True


@pytest.mark.anyio
async def test_requests_that_never_finish_are_closed_while_valid_calls_go_through(
    jwks: JwksServer, mint: Callable[..., str], tmp_path: Path
) -> None:
    port, token = _free_port(), mint("alice")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASK_MCP_")} | {
        "TASK_MCP_DATABASE_URL": f"sqlite:///{tmp_path / 'tasks.db'}",
        "TASK_MCP_BETTER_AUTH_URL": jwks.base_url,
        # Long enough that the valid call's own requests, on a loaded machine, are never cut.
        "TASK_MCP_HTTP_REQUEST_TIMEOUT_SECONDS": "10",
        "TASK_MCP_JWKS_COOLDOWN_SECONDS": "0",
        "TASK_MCP_LOG_LEVEL": "INFO",
    }
    command = [sys.executable, "-m", "task_mcp", "serve", "--transport", "http", "--port", str(port)]
    log = tmp_path / "server.log"
    with log.open("w") as stderr:
        proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=stderr, text=True)
    slow: list[socket.socket] = []
    try:
        url = f"http://127.0.0.1:{port}"
        async with httpx2.AsyncClient(timeout=5) as http:
            for _ in range(600):
                try:
                    if (await http.get(url + "/healthz")).status_code == 200:
                        break
                except httpx2.TransportError:
                    pass
                assert proc.poll() is None, log.read_text()
                await anyio.sleep(0.05)
        # Warm the server's key cache first, so that the call under test depends on nothing but the
        # server itself (a JWKS fetch that fails on a loaded machine is another test's subject).
        for _ in range(20):
            if (await raw_post(url + "/mcp", call_body("list_tasks", {}), token=token)).status_code == 200:
                break
            await anyio.sleep(0.5)
        for i in range(100):  # headers that never end
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + str(i).encode())
            slow.append(sock)
        body_never_ends = socket.create_connection(("127.0.0.1", port))
        body_never_ends.sendall(
            f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n"
            "Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n"
            'Content-Length: 1000\r\n\r\n{"jsonrpc": '.encode()
        )
        slow.append(body_never_ends)
        for sock in slow:
            sock.setblocking(False)

        try:
            async with connect(url + "/mcp", token) as client:  # meanwhile, a real call is served
                ok(await client.call_tool("create_task", {"title": "served despite slow clients"}))
        except Exception as exc:
            raise AssertionError(f"the valid call failed; server log:\n{log.read_text()[-4000:]}") from exc

        open_sockets = list(slow)
        for _ in range(3000):  # the server closes them after ~10 s; wait far longer on a loaded machine
            open_sockets = [sock for sock in open_sockets if not _closed_by_server(sock)]
            if not open_sockets:
                break
            await anyio.sleep(0.1)
        assert len(open_sockets) == 0, f"{len(open_sockets)} of {len(slow)} incomplete requests still open"
        assert "closed an HTTP connection whose request was incomplete" in log.read_text()
        async with connect(url + "/mcp", token) as client:
            titles_now = [t["title"] for t in ok(await client.call_tool("list_tasks", {}))["tasks"]]
        assert titles_now == ["served despite slow clients"]
    finally:
        for sock in slow:
            sock.close()
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=15)


@pytest.mark.anyio
async def test_get_on_the_stateless_endpoint_is_405_not_an_endless_stream(
    server: Served, mint: Callable[..., str]
) -> None:
    # Before: a 200 event stream that never sent anything and never ended (hence the deadline).
    with anyio.fail_after(60):
        async with httpx2.AsyncClient(timeout=30) as http:
            response = await http.get(
                server.mcp, headers={"Accept": "text/event-stream", "Authorization": f"Bearer {mint('alice')}"}
            )
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"


@pytest.mark.anyio
async def test_any_host_still_checks_the_allowed_origins(
    start: Callable[..., Served], mint: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TASK_MCP_ALLOWED_HOSTS", "*")
    monkeypatch.setenv("TASK_MCP_ALLOWED_ORIGINS", "https://app.example.com")
    served, token, body = start(), mint("alice"), call_body("list_tasks", {})
    foreign_host = {"Host": "tasks.example.com"}
    assert (await raw_post(served.mcp, body, token=token, headers=foreign_host)).status_code == 200
    allowed = foreign_host | {"Origin": "https://app.example.com"}
    assert (await raw_post(served.mcp, body, token=token, headers=allowed)).status_code == 200
    evil = foreign_host | {"Origin": "https://evil.example.com"}
    assert (await raw_post(served.mcp, body, token=token, headers=evil)).status_code == 403


def _children(pid: int) -> list[str]:
    """Command lines of the live child processes of `pid` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                found.append((stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode())
        except (OSError, IndexError, ValueError):
            continue
    return found


@pytest.mark.anyio
async def test_serve_http_with_two_workers_serves_one_port_from_two_processes(
    jwks: JwksServer, mint: Callable[..., str], tmp_path: Path
) -> None:
    port, token = _free_port(), mint("alice")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASK_MCP_")} | {
        "TASK_MCP_BETTER_AUTH_URL": jwks.base_url,
        "TASK_MCP_LOG_LEVEL": "WARNING",
    }
    db = f"sqlite:///{tmp_path / 'tasks.db'}"
    command = [sys.executable, "-m", "task_mcp", "serve", "--transport", "http", "--port", str(port)]
    command += ["--workers", "2", "--database-url", db]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        async with httpx2.AsyncClient(timeout=5) as http:
            for _ in range(1200):
                try:
                    if (await http.get(url + "/healthz")).status_code == 200:
                        break
                except httpx2.TransportError:
                    pass
                assert proc.poll() is None, proc.communicate()[1]
                await anyio.sleep(0.05)
        async with connect(url + "/mcp", token) as client:
            for i in range(6):
                ok(await client.call_tool("create_task", {"title": f"task {i}"}))
        assert sorted(await titles(url + "/mcp", token)) == [f"task {i}" for i in range(6)]
        workers = [line for line in _children(proc.pid) if "spawn_main" in line]
        assert len(workers) == 2, _children(proc.pid)
    finally:
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=30)
    assert stdout == ""
    assert token not in stderr


def test_serve_http_refuses_an_in_memory_sqlite_database_with_several_workers(jwks: JwksServer) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASK_MCP_")} | {
        "TASK_MCP_BETTER_AUTH_URL": jwks.base_url
    }
    command = [sys.executable, "-m", "task_mcp", "serve", "--transport", "http", "--port", str(_free_port())]
    done = subprocess.run(
        [*command, "--workers", "2", "--database-url", "sqlite:///:memory:"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("task-mcp: error: TASK_MCP_DATABASE_URL: an in-memory SQLite database")
    assert len(done.stderr.strip().splitlines()) == 1
