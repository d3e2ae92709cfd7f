"""`task-mcp doctor`: one screen that says what works and what to fix.

Each line starts with `OK  ` or `FIX `; a FIX line says what to do. Checks: the configuration, the
database (reachable, schema at the newest migration, checked without migrating), the JWKS (reachable,
which keys) and, if one is configured, the launch token (verified like a tool call verifies it: whose
it is, its scopes, when it expires). Never prints a token, a password or a session token.
"""

from __future__ import annotations

import json
import stat
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import anyio
import httpx2
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import make_url

from task_mcp.auth import MAX_JWKS_BYTES, READ_SCOPE, SCOPES, WRITE_SCOPE, JwtVerifier
from task_mcp.config import Settings, load_settings
from task_mcp.credentials import StdioCredentials, readable_by_others, token_file_problem
from task_mcp.db import Database, alembic_config
from task_mcp.errors import ConfigError, UnauthenticatedError
from task_mcp.fetch import MAX_JWKS_KEYS, FetchError, describe_fetch_error, fetch_limited, plain_http_on_network
from task_mcp.principal import Principal

# What a JWK without `alg` can verify, by key type (and curve).
_ALGS_BY_KEY: dict[tuple[object, object], str] = {
    ("OKP", "Ed25519"): "EdDSA",
    ("EC", "P-256"): "ES256",
    ("EC", "P-521"): "ES512",
    ("RSA", None): "RS256/PS256",
}


class _Report:
    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.ok = True

    def good(self, text: str) -> None:
        print(f"OK  {text}", file=self.out)

    def fix(self, text: str) -> None:
        self.ok = False
        print(f"FIX {text}", file=self.out)


def run_doctor(*, database_url: str | None = None, out: TextIO | None = None) -> int:
    """Print the report; 0 when every check passed, else 1."""
    report = _Report(out or sys.stdout)
    try:
        settings = load_settings(database_url=database_url)
    except ConfigError as exc:
        report.fix(f"configuration: {exc}. Correct that variable, then run task-mcp doctor again.")
        return 1
    _check_configuration(settings, report)
    _check_database(settings, report)
    _check_jwks(settings, report)
    if _check_token_file(settings, report):
        _check_token(settings, report)
    return 0 if report.ok else 1


def _check_configuration(settings: Settings, report: _Report) -> None:
    if not settings.effective_jwks_url:
        report.fix(
            "configuration: no JWKS, so no token can be checked. Set TASK_MCP_BETTER_AUTH_URL to your Better "
            "Auth base URL (or TASK_MCP_JWKS_URL, TASK_MCP_ISSUER and TASK_MCP_AUDIENCE)."
        )
        return
    parts = [
        f"issuer {settings.effective_issuer or '(not checked)'}",
        f"audience {settings.effective_audience or '(not checked)'}",
        f"algorithms {', '.join(settings.algorithms)}",
    ]
    if settings.read_only:
        parts.append("read-only")
    if settings.resource_url:
        parts.append(f"resource {settings.resource_url}")
    report.good("configuration: " + "; ".join(parts))
    for name, url in (("TASK_MCP_BETTER_AUTH_URL", settings.better_auth_url), ("TASK_MCP_JWKS_URL", settings.jwks_url)):
        if plain_http_on_network(url):
            report.fix(
                f"configuration: {name} {url} is plain http:// on a network host, so keys and tokens travel "
                "unencrypted and can be swapped on the way. Use https:// (plain http is fine on loopback only)."
            )


def _check_token_file(settings: Settings, report: _Report) -> bool:
    """FIX lines for a token file this server would not read or should not trust; False if unusable."""
    if settings.token is not None and settings.token.get_secret_value().strip():
        return True  # TASK_MCP_TOKEN wins: the file is not read
    if settings.token_file is None:
        return True
    path = Path(settings.token_file).expanduser()
    try:
        st = path.stat()
    except OSError:
        return True  # the token check says it does not exist
    problem = token_file_problem(st)
    if problem is not None:
        report.fix(
            f"token: TASK_MCP_TOKEN_FILE {path} is {problem}. Write only the JWT from Better Auth "
            "(GET /api/auth/token) to a regular file there."
        )
        return False
    if readable_by_others(st):
        report.fix(
            f"token: TASK_MCP_TOKEN_FILE {path} is readable by other users (mode {stat.S_IMODE(st.st_mode):o}), "
            f"so anyone on this machine can use the token in it. Run `chmod 600 {path}`."
        )
    return True


# ---- database -----------------------------------------------------------------------------------


def _check_database(settings: Settings, report: _Report) -> None:
    url = make_url(settings.sqlalchemy_url)
    shown = url.render_as_string(hide_password=True)
    file = url.database if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:") else None
    if file is not None and not Path(file).exists():  # connecting would create an empty file: say so instead
        where = "its folder does not exist" if not Path(file).parent.is_dir() else "no such file"
        report.fix(
            f"database {shown}: {where}. Run `task-mcp migrate` to create it, or set TASK_MCP_DATABASE_URL "
            "to the database the server uses."
        )
        return
    database = Database(settings.sqlalchemy_url)
    try:
        try:
            with database.engine.connect() as conn:
                current = set(MigrationContext.configure(conn).get_current_heads())
        except Exception as exc:
            report.fix(
                f"database {shown} is unreachable ({_db_reason(exc)}). Check TASK_MCP_DATABASE_URL and that the "
                "database server is running."
            )
            return
        script = ScriptDirectory.from_config(alembic_config(database))
        heads = set(script.get_heads())
        newest = ", ".join(sorted(heads))
        if current == heads:
            report.good(f"database {shown}: reachable, schema at the newest revision ({newest})")
        elif not current:
            report.fix(f"database {shown}: reachable but has no task_mcp schema. Run `task-mcp migrate`.")
        elif any(_unknown_revision(script, rev) for rev in current):
            report.fix(
                f"database {shown}: schema at revision {', '.join(sorted(current))}, newer than this task-mcp "
                f"knows ({newest}). Upgrade task-mcp."
            )
        else:
            report.fix(
                f"database {shown}: schema at revision {', '.join(sorted(current))}, the newest is {newest}. "
                "Run `task-mcp migrate`."
            )
    finally:
        database.dispose()


def _unknown_revision(script: ScriptDirectory, revision: str) -> bool:
    try:
        return script.get_revision(revision) is None
    except Exception:
        return True


def _db_reason(exc: Exception) -> str:
    original = getattr(exc, "orig", None) or exc
    text = str(original).strip().splitlines()
    first = text[0] if text else type(original).__name__
    return first[:200]


# ---- JWKS ---------------------------------------------------------------------------------------


def _check_jwks(settings: Settings, report: _Report) -> None:
    url = settings.effective_jwks_url
    if not url:
        return  # already reported by the configuration check
    try:
        keys = anyio.run(_fetch_jwks, url, settings.http_timeout_seconds)
    except Exception as exc:
        report.fix(
            f"JWKS at {url} cannot be read ({describe_fetch_error(exc)}). Check that Better Auth is running "
            "(with the jwt plugin) and that TASK_MCP_BETTER_AUTH_URL / TASK_MCP_JWKS_URL point to it."
        )
        return
    described = [(str(k.get("kid") or "(no kid)"), _alg_of(k)) for k in keys if isinstance(k, dict)]
    if not described:
        report.fix(f"JWKS at {url} publishes no keys. Let Better Auth sign a JWT once (GET /api/auth/token).")
        return
    listing = ", ".join(f"kid {kid} ({alg})" for kid, alg in described)
    usable = [alg for _, alg in described if any(a in settings.algorithms for a in alg.split("/"))]
    if not usable:
        algs = sorted({alg.split("/")[0] for _, alg in described})
        report.fix(
            f"JWKS at {url} has {listing}, none for the accepted algorithms ({', '.join(settings.algorithms)}). "
            f"Set TASK_MCP_ALGORITHMS={','.join(algs)}, or configure Better Auth's jwks.keyPairConfig."
        )
        return
    report.good(f"JWKS at {url}: reachable, {len(described)} key(s): {listing}")


async def _fetch_jwks(url: str, timeout: float) -> list[Any]:
    """The JWKS's keys, fetched as the server fetches them: bounded, redirects within the origin only."""
    async with httpx2.AsyncClient(timeout=timeout, follow_redirects=False) as client:
        with anyio.fail_after(timeout):
            status, body = await fetch_limited(
                client, url, limit=MAX_JWKS_BYTES, headers={"Accept": "application/json"}
            )
    if status != 200:
        raise FetchError(f"HTTP {status}")
    document = json.loads(body)
    keys = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(keys, list):
        raise FetchError("not a JWKS document")
    if len(keys) > MAX_JWKS_KEYS:
        raise FetchError(f"{len(keys)} keys, more than the {MAX_JWKS_KEYS} this server accepts")
    return keys


def _alg_of(jwk: dict[str, Any]) -> str:
    alg = jwk.get("alg")
    if isinstance(alg, str) and alg:
        return alg
    kty = jwk.get("kty")
    return _ALGS_BY_KEY.get((kty, jwk.get("crv") if kty != "RSA" else None), f"unknown {kty}")


# ---- the launch token ---------------------------------------------------------------------------


def _check_token(settings: Settings, report: _Report) -> None:
    # The same object that finds a stdio call's token finds the one to check here: one order, one home.
    try:
        credentials = StdioCredentials.from_settings(settings)
    except ConfigError as exc:
        report.fix(f"token: {exc}.")
        return
    source = credentials.launch_source
    if source is None:
        report.good(
            "token: no launch token configured (fine for HTTP; stdio clients then send one per request in "
            "_meta, or set TASK_MCP_TOKEN / TASK_MCP_TOKEN_FILE)"
        )
        return
    if settings.token_file is not None and source.startswith("TASK_MCP_TOKEN_FILE"):
        if not Path(settings.token_file).expanduser().is_file():
            report.fix(
                f"token: {source} does not exist. Write a JWT from Better Auth (GET /api/auth/token) there; "
                "the server re-reads it when it changes."
            )
            return
        if credentials.exchange is None and credentials.launch.get() is None:
            report.fix(f"token: {source} is empty or unreadable. Write a JWT from Better Auth there.")
            return
    if not settings.effective_jwks_url:
        return  # cannot be verified; the configuration check said why

    async def verify() -> Principal:
        verifier = JwtVerifier.from_settings(settings)
        try:
            return await verifier.verify(await credentials.token(None))
        finally:
            await verifier.aclose()
            await credentials.aclose()

    try:
        principal = anyio.run(verify)
    except UnauthenticatedError as exc:
        report.fix(f"token ({source}): {exc.message}")
        return
    report.good(f"token ({source}): {_describe_principal(principal)}")
    if principal.scopes is not None and not any(s in principal.scopes for s in SCOPES):
        report.fix(
            f"token: its scope claim grants neither {READ_SCOPE} nor {WRITE_SCOPE}, so every tool answers "
            f"forbidden. Ask Better Auth for a token with scope '{READ_SCOPE} {WRITE_SCOPE}'."
        )


def _describe_principal(principal: Principal) -> str:
    email = principal.claims.get("email")
    who = f"user {principal.user_id}" + (f" <{email}>" if isinstance(email, str) and email else "")
    if principal.scopes is None:
        scopes = "all (a plain Better Auth JWT without a scope claim)"
    else:
        scopes = " ".join(sorted(principal.scopes)) or "(none)"
        if WRITE_SCOPE not in principal.scopes and READ_SCOPE in principal.scopes:
            scopes += " (read-only: write tools answer forbidden)"
    if principal.expires_at is None:
        expiry = "no expiry"
    else:
        left = principal.expires_at - time.time()
        when = datetime.fromtimestamp(principal.expires_at, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        expiry = f"expires {when} (in {_duration(left)})" if left > 0 else f"expired {when} (within the leeway)"
    return f"verified, {who}, scopes: {scopes}, {expiry}"


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 172_800:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} days"
