"""A real Better Auth server (Node, tests/better_auth/server.mjs) for end-to-end tests.

`BetterAuth.start()` runs `node tests/better_auth/server.mjs` on an ephemeral loopback port and
waits for its `READY <url>` line (`spawn()` + `wait_ready()` start several at once); `sign_up()`
makes a user and returns its session, `jwt()` exchanges a session token at `/api/auth/token`,
`sign_out()` revokes the session. Organizations (the organization plugin): `create_organization()`
as a signed-in user, `add_member()` with a role (a test-only route: Better Auth's `addMember` is
server-only), `remove_member()` through Better Auth's own `/organization/remove-member`. Each
instance has its own users, signing keys and secret (in-memory adapter).

`BetterAuth(oauth_resource=url)` is also an OAuth 2.1 provider (`@better-auth/oauth-provider`)
for that one resource: `register_oauth_client()` registers a client as a signed-in developer
would, and `oauth_access_token()` runs the authorization-code flow with PKCE for a signed-in
user (authorize, consent, token), giving the `at+jwt` access token an MCP client would send.

Session fixtures, started together on first use (load them with
`pytest_plugins = ["tests.better_auth_fixture"]`): `better_auth` (JWTs live 15 minutes),
`other_better_auth` (an unrelated second server) and `short_lived_better_auth` (JWTs live
SHORT_JWT_SECONDS, leeway not included). Without `node` or `tests/better_auth/node_modules`
they skip: `make test` installs the fixture.
"""

from __future__ import annotations

import base64
import hashlib
import os
import queue
import secrets
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO
from urllib.parse import parse_qs, urlparse

import httpx2
import pytest

HERE = Path(__file__).parent / "better_auth"
SERVER = HERE / "server.mjs"
READY_TIMEOUT = 20.0
SHORT_JWT_SECONDS = 3
INSTALL_HINT = "run `make test`, which installs the Better Auth fixture with npm ci"
OAUTH_REDIRECT_URI = "http://127.0.0.1/callback"  # a native app's loopback redirect; never fetched
TASK_SCOPES = "tasks:read tasks:write"


@dataclass(frozen=True)
class BetterAuthUser:
    id: str
    email: str
    session_token: str  # the bearer plugin's `set-auth-token` (signed session token)
    name: str = ""


@dataclass(frozen=True)
class Organization:
    id: str
    slug: str
    name: str


class BetterAuth:
    """One `node server.mjs` process; `url` is its base URL (= the JWTs' iss and aud)."""

    def __init__(self, *, jwt_expiration: str | None = None, oauth_resource: str | None = None) -> None:
        self.jwt_expiration = jwt_expiration
        self.oauth_resource = oauth_resource
        self.url = ""
        self._process: subprocess.Popen[str] | None = None
        self._pumps: list[threading.Thread] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._stderr: list[str | None] = []
        self._spawned_at = 0.0
        self._http = httpx2.Client(timeout=10)

    @staticmethod
    def unavailable() -> str | None:
        """Why the fixture cannot run here, or None."""
        if shutil.which("node") is None:
            return f"node is not installed; install Node 20+ and {INSTALL_HINT}"
        if not (HERE / "node_modules" / "better-auth").is_dir():
            return f"tests/better_auth/node_modules is missing: {INSTALL_HINT}"
        return None

    def start(self) -> BetterAuth:
        return self.spawn().wait_ready()

    def spawn(self) -> BetterAuth:
        """Start the process; `wait_ready()` waits for it."""
        env = {**os.environ, "BA_SECRET": secrets.token_hex(32)}
        env.pop("NODE_ENV", None)  # production mode would turn rate limiting and secure cookies on
        if self.jwt_expiration:
            env["BA_JWT_EXPIRATION"] = self.jwt_expiration
        if self.oauth_resource:
            env["BA_OAUTH_RESOURCE"] = self.oauth_resource
        self._process = subprocess.Popen(
            ["node", str(SERVER)],
            cwd=HERE,
            env=env,
            stdin=subprocess.PIPE,  # the server exits when this closes, even if pytest is killed
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._lines, self._stderr = queue.Queue(), []

        def pump(stream: IO[str], sink: Callable[[str | None], object]) -> None:
            for line in stream:
                sink(line)
            sink(None)

        self._pumps = [
            threading.Thread(target=pump, args=(self._process.stdout, self._lines.put), daemon=True),
            threading.Thread(target=pump, args=(self._process.stderr, self._stderr.append), daemon=True),
        ]
        for thread in self._pumps:
            thread.start()
        self._spawned_at = time.monotonic()
        return self

    def wait_ready(self) -> BetterAuth:
        try:
            line = self._lines.get(timeout=max(0.0, self._spawned_at + READY_TIMEOUT - time.monotonic()))
        except queue.Empty:
            line = None
        if not line or not line.startswith("READY "):
            self.stop()
            log = "".join(s for s in self._stderr if s).strip()[-2000:]
            raise RuntimeError(f"Better Auth was not READY within {READY_TIMEOUT:.0f} s (got {line!r}):\n{log}")
        self.url = line.split()[1]
        return self

    def stop(self) -> None:
        process, self._process = self._process, None
        self._http.close()
        if process is None:
            return
        if process.stdin is not None:
            process.stdin.close()
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        for thread in self._pumps:
            thread.join(timeout=5)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()

    # ---- the Better Auth API, as a client app uses it --------------------------------------------

    def post(self, path: str, json: dict, session_token: str | None = None) -> httpx2.Response:
        # Better Auth rejects a POST with cookies but no (or a foreign) Origin: send ours, as a browser does.
        headers = {"Origin": self.url}
        if session_token is not None:
            headers["Authorization"] = f"Bearer {session_token}"
        return self._http.post(f"{self.url}/api/auth{path}", json=json, headers=headers)

    def sign_up(self, name: str) -> BetterAuthUser:
        email = f"{name.lower()}-{secrets.token_hex(4)}@example.com"
        response = self.post("/sign-up/email", {"email": email, "password": secrets.token_hex(12), "name": name})
        response.raise_for_status()
        self._http.cookies.clear()  # each user signs in on their own; no shared cookie jar
        return BetterAuthUser(
            id=response.json()["user"]["id"],
            email=email,
            session_token=response.headers["set-auth-token"],
            name=name,
        )

    def jwt(self, session_token: str) -> str:
        """A JWT for the session, from GET /api/auth/token."""
        response = self._http.get(f"{self.url}/api/auth/token", headers={"Authorization": f"Bearer {session_token}"})
        response.raise_for_status()
        return response.json()["token"]

    def sign_out(self, session_token: str) -> None:
        self.post("/sign-out", {}, session_token=session_token).raise_for_status()
        self._http.cookies.clear()

    # ---- organizations ---------------------------------------------------------------------------

    def create_organization(self, owner: BetterAuthUser, name: str) -> Organization:
        """An organization created by `owner` (who becomes its `owner`), with a slug unique to this run."""
        slug = f"{name.lower()}-{secrets.token_hex(3)}"
        response = self.post("/organization/create", {"name": name, "slug": slug}, session_token=owner.session_token)
        response.raise_for_status()
        self._http.cookies.clear()
        body = response.json()
        return Organization(id=body["id"], slug=body["slug"], name=body["name"])

    def add_member(self, organization: Organization, user: BetterAuthUser, role: str | list[str]) -> None:
        """Make `user` a member of `organization` with `role` (several roles: a list)."""
        body = {"organizationId": organization.id, "userId": user.id, "role": role}
        response = self._http.post(f"{self.url}/test/add-member", json=body)
        assert response.status_code == 200, response.text

    def remove_member(self, organization: Organization, by: BetterAuthUser, member: BetterAuthUser) -> None:
        """`by` (an owner or admin) removes `member`, as the organization plugin's own API does it."""
        body = {"organizationId": organization.id, "memberIdOrEmail": member.email}
        response = self.post("/organization/remove-member", body, session_token=by.session_token)
        assert response.status_code == 200, response.text
        self._http.cookies.clear()

    # ---- the OAuth provider (oauth_resource set) -------------------------------------------------

    @property
    def oauth_issuer(self) -> str:
        """The `iss` of OAuth-provider access tokens: the base URL + /api/auth (FACTS.md)."""
        return f"{self.url}/api/auth"

    def register_oauth_client(self, developer: BetterAuthUser, name: str, scope: str = TASK_SCOPES) -> str:
        """A public (PKCE) OAuth client registered by a signed-in developer; returns its client_id."""
        body = {
            "client_name": name,
            "redirect_uris": [OAUTH_REDIRECT_URI],
            "application_type": "native",  # loopback redirect over http (RFC 8252)
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code"],
            "response_types": ["code"],
            "scope": scope,
        }
        response = self.post("/oauth2/create-client", body, session_token=developer.session_token)
        response.raise_for_status()
        self._http.cookies.clear()
        return str(response.json()["client_id"])

    def oauth_access_token(self, user: BetterAuthUser, client_id: str, scope: str = TASK_SCOPES) -> str:
        """The access token `client_id` gets for `user`: authorization code + PKCE, consent given."""
        assert self.oauth_resource, "start this BetterAuth with oauth_resource= to use the OAuth provider"
        verifier = secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        state = secrets.token_urlsafe(8)
        as_user = {"Authorization": f"Bearer {user.session_token}", "Accept": "application/json"}
        query = {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": OAUTH_REDIRECT_URI,
            "scope": scope,
            "state": state,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "resource": self.oauth_resource,
        }
        # A signed-in user is sent on to the consent page, with the request signed in its query.
        authorize = self._http.get(f"{self.url}/api/auth/oauth2/authorize", params=query, headers=as_user)
        authorize.raise_for_status()
        consent_page = urlparse(authorize.json()["url"])
        assert consent_page.path == "/consent", authorize.json()
        consent = self._http.post(
            f"{self.url}/api/auth/oauth2/consent",
            json={"accept": True, "oauth_query": consent_page.query},
            headers={**as_user, "Origin": self.url},
        )
        consent.raise_for_status()
        callback = parse_qs(urlparse(consent.json()["url"]).query)
        assert callback["state"] == [state] and callback["iss"] == [self.oauth_issuer], callback
        self._http.cookies.clear()
        token = self._http.post(
            f"{self.url}/api/auth/oauth2/token",
            data={
                "grant_type": "authorization_code",
                "code": callback["code"][0],
                "redirect_uri": OAUTH_REDIRECT_URI,
                "client_id": client_id,
                "code_verifier": verifier,
                "resource": self.oauth_resource,
            },
        )
        token.raise_for_status()
        return str(token.json()["access_token"])


@pytest.fixture(scope="session")
def _better_auth_servers() -> Iterator[dict[str, BetterAuth]]:
    reason = BetterAuth.unavailable()
    if reason:
        pytest.skip(reason)
    servers = {
        "main": BetterAuth(),
        "other": BetterAuth(),
        "short": BetterAuth(jwt_expiration=f"{SHORT_JWT_SECONDS}s"),
    }
    try:
        for server in servers.values():
            server.spawn()  # all at once: Node takes a moment to load Better Auth
        for server in servers.values():
            server.wait_ready()
        yield servers
    finally:
        for server in servers.values():
            server.stop()


@pytest.fixture(scope="session")
def better_auth(_better_auth_servers: dict[str, BetterAuth]) -> BetterAuth:
    """A real Better Auth (JWTs live 15 minutes) shared by the whole run."""
    return _better_auth_servers["main"]


@pytest.fixture(scope="session")
def other_better_auth(_better_auth_servers: dict[str, BetterAuth]) -> BetterAuth:
    """A second, unrelated Better Auth (its own keys and users): its JWTs must not be accepted."""
    return _better_auth_servers["other"]


@pytest.fixture(scope="session")
def short_lived_better_auth(_better_auth_servers: dict[str, BetterAuth]) -> BetterAuth:
    """A Better Auth whose JWTs expire SHORT_JWT_SECONDS after they are issued."""
    return _better_auth_servers["short"]
