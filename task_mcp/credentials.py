"""Where a token comes from on stdio: the request's `_meta`, the launch environment, or a session.

- `token_from_meta`: `_meta["task-mcp/authorization"]` of one request ("Bearer <jwt>" or the jwt);
- `LaunchCredential`: TASK_MCP_TOKEN, else TASK_MCP_TOKEN_FILE (re-read when the file changes);
- `SessionExchange`: a Better Auth session token (TASK_MCP_BETTER_AUTH_SESSION_TOKEN) traded for
  fresh JWTs at `/api/auth/token`;
- `StdioCredentials`: the order in which a stdio call looks at them, the one place that knows it
  (the server and `task-mcp doctor` both use it).

Each yields a JWT that `auth.JwtVerifier` then verifies like any other. Over HTTP none of these
count: only the request's bearer header does.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import httpx2
import jwt

from task_mcp.errors import ConfigError, UnauthenticatedError
from task_mcp.fetch import FetchError, fetch_limited, plain_http_on_network

if TYPE_CHECKING:
    from task_mcp.config import Settings

log = logging.getLogger(__name__)

META_KEY = "task-mcp/authorization"
"""The request `_meta` key that carries a per-call token on stdio ("Bearer <jwt>" or the bare JWT)."""

_META_HINT = "with a JWT from Better Auth (GET /api/auth/token), or leave the key out to use the launch token."
META_TYPE = f'The request\'s _meta["{META_KEY}"] must be a string: "Bearer <jwt>" or the bare JWT. Put one there ' + (
    _META_HINT
)
META_EMPTY = f'The request\'s _meta["{META_KEY}"] is empty. Put "Bearer <jwt>" there ' + _META_HINT
NO_TOKEN = (
    "No Better Auth token reached this server. In the env block of this server's mcp.json entry, set "
    "TASK_MCP_TOKEN (a JWT from your Better Auth server's GET /api/auth/token), TASK_MCP_TOKEN_FILE "
    "(a file holding one) or TASK_MCP_BETTER_AUTH_SESSION_TOKEN, then restart it; or send the token in "
    f"the request's _meta['{META_KEY}']."
)

# ---- where the token comes from ---------------------------------------------------------------


def _strip_bearer(value: str) -> str:
    value = value.strip()
    if value[:7].lower() == "bearer ":
        value = value[7:].strip()
    return value


def token_from_meta(value: object) -> str:
    """The token in `_meta["task-mcp/authorization"]`; present but unusable is an error."""
    if not isinstance(value, str):
        log.debug("token rejected: _meta value is not a string")
        raise UnauthenticatedError(META_TYPE)
    token = _strip_bearer(value)
    if not token or token.lower() == "bearer":
        log.debug("token rejected: _meta value is empty")
        raise UnauthenticatedError(META_EMPTY)
    return token


MAX_TOKEN_FILE_BYTES = 64_000
_TOKEN_FILE_UNUSABLE = (
    "TASK_MCP_TOKEN_FILE {path} is {what}, so no token was read from it. Point TASK_MCP_TOKEN_FILE at a "
    "regular file holding only the JWT from Better Auth (GET /api/auth/token)."
)


def token_file_problem(st: os.stat_result) -> str | None:
    """Why a token file with this stat is not read, or None if it may be."""
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file (a FIFO, device or directory)"
    if st.st_size > MAX_TOKEN_FILE_BYTES:
        return f"larger than {MAX_TOKEN_FILE_BYTES // 1000} KB, far more than a JWT"
    return None


def readable_by_others(st: os.stat_result) -> bool:
    return bool(st.st_mode & (stat.S_IRGRP | stat.S_IROTH))


class LaunchCredential:
    """The stdio launch token: TASK_MCP_TOKEN, else the contents of TASK_MCP_TOKEN_FILE.

    The file is read only if it is a regular file under MAX_TOKEN_FILE_BYTES, opened without
    blocking (a FIFO there must not stall the server); one readable by group or others is used
    but warned about once.
    """

    def __init__(self, token: str | None, token_file: Path | None) -> None:
        self._token = _strip_bearer(token) if token else ""
        self._file = Path(os.path.expanduser(token_file)) if token_file is not None else None
        self._stamp: tuple[int, int, int] | None = None
        self._cached: str | None = None
        self._problem: str | None = None
        self._warned = False

    def get(self) -> str | None:
        """The current token, or None; the file is re-read only when it changes.

        Raises UnauthenticatedError when the file exists but is not one this server reads.
        """
        if self._token:
            return self._token
        if self._file is None:
            return None
        try:
            fd = os.open(self._file, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        except OSError as exc:
            log.debug("token file %s unreadable: %s", self._file, type(exc).__name__)
            self._cached, self._stamp, self._problem = None, None, None
            return None
        try:
            self._read(fd)
        finally:
            os.close(fd)
        if self._problem is not None:
            raise UnauthenticatedError(_TOKEN_FILE_UNUSABLE.format(path=self._file, what=self._problem))
        return self._cached

    def _read(self, fd: int) -> None:
        st = os.fstat(fd)
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if stamp == self._stamp:
            return
        self._cached, self._stamp, self._problem = None, stamp, token_file_problem(st)
        if self._problem is not None:
            log.warning("TASK_MCP_TOKEN_FILE %s is %s; not reading it", self._file, self._problem)
            return
        if readable_by_others(st) and not self._warned:
            self._warned = True
            log.warning(
                "TASK_MCP_TOKEN_FILE %s is readable by other users (mode %o): anyone on this machine can use "
                "the token in it. Run `chmod 600 %s`.",
                self._file,
                stat.S_IMODE(st.st_mode),
                self._file,
            )
        data = b""
        while chunk := os.read(fd, MAX_TOKEN_FILE_BYTES + 1 - len(data)):
            data += chunk
            if len(data) > MAX_TOKEN_FILE_BYTES:  # it grew since fstat: not a token any more
                return
        try:
            self._cached = _strip_bearer(data.decode("utf-8")) or None
        except UnicodeDecodeError:
            log.debug("token file %s is not UTF-8", self._file)


# ---- a Better Auth session exchanged for JWTs (stdio launch credential) -----------------------

_SESSION_INVALID = (
    "The Better Auth session is no longer valid (signed out, expired or revoked): {url} did not give "
    "a JWT for it ({detail}). Sign in to Better Auth again and put the new session token in "
    "TASK_MCP_BETTER_AUTH_SESSION_TOKEN, then restart this server."
)
_SESSION_UNREACHABLE = (
    "Better Auth could not be reached at {url} ({detail}) to exchange the session token for a JWT. "
    "Check that Better Auth is running and that TASK_MCP_BETTER_AUTH_URL points to it, then try again."
)
MAX_TOKEN_RESPONSE_BYTES = 64_000


class SessionExchange:
    """Turns a Better Auth session token into short-lived JWTs: `GET /api/auth/token` (bearer plugin).

    The JWT is cached and exchanged again shortly before it expires (a quarter of its lifetime
    early, at most 30 s), timed by the token's own `exp - iat` on this machine's monotonic clock,
    so clock skew does not matter; and at once when its `exp` has passed by the wall clock (the
    monotonic clock stands still while a laptop sleeps). Its payload is read unverified for that
    timing only: the caller verifies the JWT like any other. The answer is read as a stream and
    cut at MAX_TOKEN_RESPONSE_BYTES; a redirect is followed only within Better Auth's origin.
    Concurrent callers share one exchange, and its failure; a failure is not cached (the next call
    tries again).
    The session token is never logged or put in a message.
    """

    def __init__(self, base_url: str, session_token: str, *, timeout_seconds: float = 5) -> None:
        self.url = base_url.rstrip("/") + "/api/auth/token"
        self._session_token = _strip_bearer(session_token)
        self._timeout = timeout_seconds
        self._jwt: str | None = None
        self._refresh_at = 0.0  # monotonic
        self._expires_at = 0.0  # wall clock: the JWT's exp
        self._failure: UnauthenticatedError | None = None
        self._attempts = 0  # exchanges attempted; also the single-flight generation
        self._lock = anyio.Lock()
        self._client: httpx2.AsyncClient | None = None
        if plain_http_on_network(self.url):
            log.warning("TASK_MCP_BETTER_AUTH_URL %s is plain http:// on a network host: use https://", base_url)

    def __repr__(self) -> str:
        return f"SessionExchange(url={self.url!r})"

    def _cached(self) -> str | None:
        if self._jwt is not None and time.monotonic() < self._refresh_at and time.time() < self._expires_at:
            return self._jwt
        return None

    @classmethod
    def from_settings(cls, settings: Settings) -> SessionExchange | None:
        """None unless TASK_MCP_BETTER_AUTH_SESSION_TOKEN is set (an empty value counts as unset)."""
        secret = settings.better_auth_session_token
        if secret is None or not secret.get_secret_value().strip():
            return None
        if not settings.auth_base_url:
            raise ConfigError(
                "TASK_MCP_BETTER_AUTH_SESSION_TOKEN needs TASK_MCP_BETTER_AUTH_URL, the Better Auth server "
                "that issued the session"
            )
        return cls(settings.auth_base_url, secret.get_secret_value(), timeout_seconds=settings.http_timeout_seconds)

    @property
    def exchange_count(self) -> int:
        """Exchanges attempted so far."""
        return self._attempts

    async def token(self) -> str:
        """A JWT for the session: the cached one while it is fresh, else a new one."""
        cached = self._cached()
        if cached is not None:
            return cached
        generation = self._attempts
        async with self._lock:
            cached = self._cached()
            if cached is not None:
                return cached
            if self._attempts != generation and self._failure is not None:
                raise self._failure  # an exchange failed while we waited: share its verdict
            self._attempts += 1
            try:
                token = await self._exchange()
            except UnauthenticatedError as exc:
                self._jwt, self._failure = None, exc
                raise
            self._jwt, self._failure = token, None
            refresh_in, self._expires_at = _timing(token)
            self._refresh_at = time.monotonic() + refresh_in
            return token

    async def _exchange(self) -> str:
        if self._client is None:
            self._client = httpx2.AsyncClient(timeout=self._timeout, follow_redirects=False)
        headers = {"Authorization": f"Bearer {self._session_token}", "Accept": "application/json"}
        try:
            with anyio.fail_after(self._timeout):
                status, content = await fetch_limited(
                    self._client, self.url, limit=MAX_TOKEN_RESPONSE_BYTES, headers=headers
                )
        except FetchError as exc:
            log.warning("Better Auth's answer to the session exchange at %s was refused: %s", self.url, exc)
            raise UnauthenticatedError(_SESSION_UNREACHABLE.format(url=self.url, detail=str(exc))) from None
        except (TimeoutError, httpx2.HTTPError) as exc:
            log.warning("Better Auth session exchange at %s failed: %s", self.url, type(exc).__name__)
            detail = "timed out" if isinstance(exc, TimeoutError | httpx2.TimeoutException) else "connection failed"
            raise UnauthenticatedError(_SESSION_UNREACHABLE.format(url=self.url, detail=detail)) from None
        finally:
            self._client.cookies.clear()  # the session travels in the header only, never in a jar
        if status >= 500:
            raise UnauthenticatedError(_SESSION_UNREACHABLE.format(url=self.url, detail=f"HTTP {status}"))
        if status != 200:
            log.warning("Better Auth refused the session token: HTTP %s", status)
            raise UnauthenticatedError(_SESSION_INVALID.format(url=self.url, detail=f"HTTP {status}"))
        try:
            body = json.loads(content)
        except ValueError:
            body = None
        token = body.get("token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            log.warning("Better Auth answered the session exchange without a token")
            raise UnauthenticatedError(_SESSION_INVALID.format(url=self.url, detail="the answer held no token"))
        log.debug("exchanged the Better Auth session for a new JWT")
        return token

    async def aclose(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()


def _timing(token: str) -> tuple[float, float]:
    """Seconds until a fresh JWT should be fetched (its lifetime less a margin) and its wall-clock exp.

    Both 0 if the JWT cannot be read: it is exchanged again on the next call.
    """
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
        exp = float(claims["exp"])
        # Better Auth's iat is whole seconds (rounded down), so a token may have a second less to live.
        lifetime = exp - float(claims["iat"]) - 1 if "iat" in claims else exp - time.time()
    except (jwt.PyJWTError, KeyError, TypeError, ValueError):
        return 0.0, 0.0
    return max(0.0, lifetime - min(30.0, lifetime / 4)), exp


# ---- the order on stdio -----------------------------------------------------------------------


class StdioCredentials:
    """The token of one stdio (or in-memory) call, looked for in this order:

    1. the request's `_meta["task-mcp/authorization"]`: present but unusable (empty, not a string)
       is an error, never a reason to fall back to the launch token;
    2. TASK_MCP_TOKEN, else TASK_MCP_TOKEN_FILE (`LaunchCredential`);
    3. TASK_MCP_BETTER_AUTH_SESSION_TOKEN exchanged for a JWT (`SessionExchange`).

    It only finds the token; `auth.JwtVerifier` verifies it like any other.
    """

    def __init__(
        self, launch: LaunchCredential, exchange: SessionExchange | None = None, *, launch_source: str | None = None
    ) -> None:
        self.launch = launch
        self.exchange = exchange
        self.launch_source = launch_source
        """The variable a call without `_meta` takes its token from (for messages); None if none is set."""

    @classmethod
    def from_settings(cls, settings: Settings) -> StdioCredentials:
        """Raises `ConfigError` when a session token is set without TASK_MCP_BETTER_AUTH_URL."""
        # An empty TASK_MCP_TOKEN (as in the sample mcp.json) counts as unset.
        token = settings.token.get_secret_value().strip() if settings.token else ""
        exchange = SessionExchange.from_settings(settings)
        if token:
            source: str | None = "TASK_MCP_TOKEN"
        elif settings.token_file is not None:
            source = f"TASK_MCP_TOKEN_FILE {settings.token_file}"
        else:
            source = "TASK_MCP_BETTER_AUTH_SESSION_TOKEN" if exchange is not None else None
        return cls(LaunchCredential(token or None, settings.token_file), exchange, launch_source=source)

    async def token(self, meta: Mapping[str, object] | None) -> str:
        """The JWT for this call. Raises `UnauthenticatedError` when there is none or `_meta` is unusable."""
        if meta and META_KEY in meta:
            return token_from_meta(meta[META_KEY])
        launch = self.launch.get()
        if launch is None and self.exchange is not None:
            launch = await self.exchange.token()
        if launch is None:
            raise UnauthenticatedError(NO_TOKEN)
        return launch

    async def aclose(self) -> None:
        if self.exchange is not None:
            await self.exchange.aclose()
