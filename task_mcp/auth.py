"""Who is calling: Better Auth JWTs, checked on every call against the Better Auth JWKS.

`JwtVerifier.verify(token)` turns a token into a `Principal` or raises `UnauthenticatedError`
with a message for the model and the user. Only the keys are cached, never a verification result:
signature, `exp`/`nbf`, `iss`, `aud` and the algorithm allow-list are checked on every call.

Key cache rules (`cache_seconds`, `cooldown_seconds`):
- a token whose `kid` is in a fresh cache verifies without network I/O;
- after `cache_seconds` a token whose `kid` is cached still verifies at once with the stale key
  while one refresh runs in the background; a successful fetch replaces the set, a failed one
  keeps the stale keys working (a JWKS outage, or a JWKS that hangs, does not log anyone out);
- an unknown `kid` refetches at most once per `cooldown_seconds`, and so does any retry after a
  failed fetch; the first fetch ever is never delayed;
- concurrent verifications that need a fetch share one (single flight).

What Better Auth answers is read as a stream and cut at its size limit (`MAX_JWKS_BYTES`), a
redirect is followed only within the same origin, and a JWKS may hold at most `MAX_JWKS_KEYS`
keys (Better Auth publishes one per rotation still in its grace period: a handful).

Where a token comes from on stdio is `credentials.py`.

This module knows nothing about MCP; `server.py` adapts it to the SDK's `TokenVerifier`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
import httpx2
import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from task_mcp.errors import UnauthenticatedError
from task_mcp.fetch import FetchError, Key, describe_fetch_error, fetch_limited, parse_jwks, plain_http_on_network
from task_mcp.principal import Principal, parse_organizations

if TYPE_CHECKING:
    from task_mcp.config import Settings

log = logging.getLogger(__name__)

READ_SCOPE = "tasks:read"
WRITE_SCOPE = "tasks:write"
SCOPES = (READ_SCOPE, WRITE_SCOPE)
MAX_TOKEN_LENGTH = 16_384
MAX_JWKS_BYTES = 1_000_000

# Each accepted algorithm and the public key type that may verify it (curve where it matters).
_KEY_TYPES: dict[str, tuple[type, str | None]] = {
    "EdDSA": (ed25519.Ed25519PublicKey, None),
    "ES256": (ec.EllipticCurvePublicKey, "secp256r1"),
    "ES512": (ec.EllipticCurvePublicKey, "secp521r1"),
    "RS256": (rsa.RSAPublicKey, None),
    "PS256": (rsa.RSAPublicKey, None),
}

MAX_SUB_LENGTH = 255

_FRESH = (
    "Get a fresh JWT from Better Auth (GET /api/auth/token) and set it in "
    "TASK_MCP_TOKEN / TASK_MCP_TOKEN_FILE or the request's _meta."
)

# What the model and the user read, per reason. Never a token or a claim value, only configuration.
_MESSAGES = {
    "no_jwks": "This server has no JWKS configured, so it cannot check any token. "
    "Set TASK_MCP_BETTER_AUTH_URL (or TASK_MCP_JWKS_URL) and restart the server.",
    "malformed": "The token is not a well-formed JWT (three base64url parts separated by dots). "
    "Send the JWT itself, not a session token or cookie. " + _FRESH,
    "too_large": f"The token is longer than {MAX_TOKEN_LENGTH} characters, far more than a Better Auth JWT: "
    "send the JWT itself, not a file or a whole response. " + _FRESH,
    "crit": "The token's header names a critical extension (crit) that this server does not support, so it "
    "cannot be accepted. Better Auth's JWT plugin does not set crit: " + _FRESH,
    "algorithm": "The token is signed with an algorithm this server does not accept (accepted: {algs}). "
    "Get a JWT from the configured Better Auth server, or set TASK_MCP_ALGORITHMS to the algorithm "
    "of its jwks.keyPairConfig.",
    "no_kid": "The token's header has no key id (kid), so its key cannot be found in the JWKS. " + _FRESH,
    "key_mismatch": "The token's algorithm does not match the JWKS key it names (kid). " + _FRESH,
    "unknown_kid": "The token was signed with a key (kid) that the JWKS at {url} does not publish: "
    "the key was rotated out, or the token comes from another server. " + _FRESH,
    "unreachable": "The token cannot be checked: the Better Auth JWKS at {url} could not be reached "
    "({error}) and no key is cached. Check that Better Auth is running and that "
    "TASK_MCP_BETTER_AUTH_URL / TASK_MCP_JWKS_URL point to it, then try again in a moment.",
    "signature": "The token's signature is invalid: it was altered or signed by another key. " + _FRESH,
    "expired": "The token has expired. " + _FRESH,
    "not_yet_valid": "The token is not valid yet (its nbf or iat lies in the future). Check the clocks "
    "of this machine and of the Better Auth server, then get a fresh JWT.",
    "issuer": "The token was issued by a different issuer than this server expects ({issuer}). Get a "
    "JWT from that Better Auth server, or set TASK_MCP_BETTER_AUTH_URL / TASK_MCP_ISSUER to the "
    "issuer your tokens come from.",
    "audience": "The token is meant for a different audience than this server ({audience}). Get a JWT "
    "for this server, or set TASK_MCP_AUDIENCE to the audience your tokens carry.",
    "missing_claim": "The token lacks the required '{claim}' claim. " + _FRESH,
    "bad_sub": f"The token's 'sub' claim (the user id) is empty, not a string, or longer than {MAX_SUB_LENGTH} "
    "characters. " + _FRESH,
    "bad_scope": "The token's 'scope' claim is neither a space-separated string nor a list of strings "
    "(null included). " + _FRESH,
    "invalid": "The token's contents are malformed (a claim has the wrong type or format). " + _FRESH,
}

# PyJWT's verdicts, most specific first (InvalidSignatureError is a DecodeError, for one).
_DECODE_ERRORS: tuple[tuple[type[jwt.PyJWTError], str], ...] = (
    (jwt.ExpiredSignatureError, "expired"),
    (jwt.ImmatureSignatureError, "not_yet_valid"),
    (jwt.InvalidIssuerError, "issuer"),
    (jwt.InvalidAudienceError, "audience"),
    (jwt.MissingRequiredClaimError, "missing_claim"),
    (jwt.InvalidSignatureError, "signature"),
    (jwt.exceptions.InvalidSubjectError, "bad_sub"),
    (jwt.PyJWTError, "invalid"),
)


def reject(reason: str, **details: object) -> UnauthenticatedError:
    log.debug("token rejected: %s", reason)
    return UnauthenticatedError(_MESSAGES[reason].format(**details))


def _curve_of(key: object) -> str | None:
    return key.curve.name if isinstance(key, ec.EllipticCurvePublicKey) else None


def _parse_scopes(claims: Mapping[str, Any]) -> frozenset[str] | None:
    if "scope" not in claims:
        return None  # a plain Better Auth JWT: limited only by the workspace role
    value = claims["scope"]
    if isinstance(value, str):
        return frozenset(value.split())
    if isinstance(value, list | tuple) and all(isinstance(item, str) for item in value):
        return frozenset(item for item in value if item.strip())
    raise reject("bad_scope")  # null included: a scope claim that is there must say what it grants


class JwtVerifier:
    """Verifies Better Auth JWTs against the JWKS at `jwks_url`; safe to share across tasks.

    With a JWKS, `issuer` and `audience` are required: a token is never accepted without both checks.
    """

    def __init__(
        self,
        *,
        jwks_url: str | None,
        issuer: str | None,
        audience: str | None,
        algorithms: Sequence[str] = ("EdDSA",),
        leeway_seconds: float = 10,
        cache_seconds: float = 300,
        cooldown_seconds: float = 30,
        timeout_seconds: float = 5,
        organizations_claim: str = "organizations",
    ) -> None:
        unsupported = [alg for alg in algorithms if alg not in _KEY_TYPES]
        if unsupported or not algorithms:
            raise ValueError(f"algorithms must be a non-empty subset of {sorted(_KEY_TYPES)}")
        if jwks_url and (not issuer or not audience):
            raise ValueError("a verifier with a JWKS needs both an issuer and an audience to check")
        self.jwks_url = jwks_url
        self.issuer = issuer
        self.audience = audience
        self.algorithms = tuple(algorithms)
        self._leeway = leeway_seconds
        self._cache_seconds = cache_seconds
        self._cooldown = cooldown_seconds
        self._timeout = timeout_seconds
        self.organizations_claim = organizations_claim
        self._keys: dict[str, Key] | None = None  # None until the first successful fetch
        self._fetched_at = 0.0  # monotonic time of the last successful fetch
        self._last_attempt: float | None = None
        self._last_ok = False
        self._last_error = ""
        self._fetch_count = 0
        self._lock = anyio.Lock()
        self._client: httpx2.AsyncClient | None = None
        self._refresh: asyncio.Task[None] | None = None  # the background refresh of stale keys
        if plain_http_on_network(jwks_url):
            log.warning("the JWKS URL %s is plain http:// on a network host: use https://", jwks_url)

    @classmethod
    def from_settings(cls, settings: Settings) -> JwtVerifier:
        return cls(
            jwks_url=settings.effective_jwks_url,
            issuer=settings.effective_issuer,
            audience=settings.effective_audience,
            algorithms=settings.algorithms,
            leeway_seconds=settings.leeway_seconds,
            cache_seconds=settings.jwks_cache_seconds,
            cooldown_seconds=settings.jwks_cooldown_seconds,
            timeout_seconds=settings.http_timeout_seconds,
            organizations_claim=settings.organizations_claim,
        )

    @property
    def fetch_count(self) -> int:
        """JWKS HTTP fetches attempted so far."""
        return self._fetch_count

    async def aclose(self) -> None:
        if self._refresh is not None:
            refresh, self._refresh = self._refresh, None
            refresh.cancel()
            with contextlib.suppress(asyncio.CancelledError, RuntimeError):
                await refresh  # RuntimeError: the task belonged to an event loop that has ended
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    # ---- verification -------------------------------------------------------------------------

    async def verify(self, token: str) -> Principal:
        if not self.jwks_url:
            raise reject("no_jwks")
        header = self._header(token)
        alg, kid = header["alg"], header["kid"]
        key = await self._key_for(kid)
        key_class, curve = _KEY_TYPES[alg]
        fits = isinstance(key.key, key_class) and (curve is None or _curve_of(key.key) == curve)
        if not fits or (key.declared_alg is not None and key.declared_alg != alg):
            raise reject("key_mismatch")
        claims = self._decode(token, key.key, alg)
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub.strip() or len(sub) > MAX_SUB_LENGTH:
            raise reject("bad_sub")
        exp = claims.get("exp")
        return Principal(
            user_id=sub,
            scopes=_parse_scopes(claims),
            claims=MappingProxyType(claims),
            expires_at=int(exp) if isinstance(exp, int | float) else None,
            organizations=parse_organizations(claims, self.organizations_claim),
        )

    def _header(self, token: str) -> Mapping[str, Any]:
        if not isinstance(token, str) or not token:
            raise reject("malformed")
        if len(token) > MAX_TOKEN_LENGTH:
            raise reject("too_large")
        try:
            header = _unverified_header(token)
        except jwt.DecodeError:
            raise reject("malformed") from None
        except jwt.PyJWTError as exc:  # the header decoded but breaks a rule: PyJWT names crit ones
            raise reject("crit" if "critical" in str(exc).lower() else "malformed") from None
        if "crit" in header:  # whatever PyJWT makes of it: no extension is understood here
            raise reject("crit")
        if header.get("alg") not in self.algorithms:  # `none`, HS256 and anything not configured
            raise reject("algorithm", algs=", ".join(self.algorithms))
        if not isinstance(header.get("kid"), str) or not header["kid"]:
            raise reject("no_kid")
        return header

    def _decode(self, token: str, key: Any, alg: str) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[alg],
                issuer=self.issuer,
                audience=self.audience,
                leeway=self._leeway,
                options={"require": ["exp", "sub", "iss", "aud"], "verify_aud": True, "verify_iss": True},
            )
            return claims
        except jwt.PyJWTError as exc:
            reason = next(reason for kind, reason in _DECODE_ERRORS if isinstance(exc, kind))
            claim = getattr(exc, "claim", "")
            raise reject(reason, issuer=self.issuer, audience=self.audience, claim=claim) from None

    # ---- keys ---------------------------------------------------------------------------------

    def _fresh(self, now: float) -> bool:
        return self._keys is not None and now - self._fetched_at < self._cache_seconds

    def _may_fetch(self, now: float) -> bool:
        if self._last_attempt is None:
            return True  # the first fetch ever
        if self._last_ok and not self._fresh(now):
            return True  # the keys of the last (successful) fetch have expired
        return now - self._last_attempt >= self._cooldown

    def _wants_fetch(self, kid: str, now: float) -> bool:
        if self._keys is None or not self._fresh(now) or kid not in self._keys:
            return self._may_fetch(now)
        return False

    async def _key_for(self, kid: str) -> Key:
        now = time.monotonic()
        if self._keys is not None and kid in self._keys:
            if not self._fresh(now) and self._may_fetch(now):
                self._refresh_in_background()
            return self._keys[kid]  # fresh, or stale while one refresh runs: never wait for the network
        if self._wants_fetch(kid, now):
            async with self._lock:  # single flight: re-check, someone may have fetched meanwhile
                if self._wants_fetch(kid, time.monotonic()):
                    await self._fetch()
        if self._keys is None:
            raise reject("unreachable", url=self.jwks_url, error=self._last_error)
        key = self._keys.get(kid)
        if key is None:
            raise reject("unknown_kid", url=self.jwks_url)
        return key

    def _refresh_in_background(self) -> None:
        if self._refresh is not None and not self._refresh.done():
            return  # one refresh at a time
        self._refresh = asyncio.get_running_loop().create_task(self._refresh_stale())

    async def _refresh_stale(self) -> None:
        async with self._lock:
            now = time.monotonic()
            if not self._fresh(now) and self._may_fetch(now):
                await self._fetch()

    async def _fetch(self) -> None:
        """One JWKS fetch; on success replace the key set, on failure keep the old one."""
        assert self.jwks_url is not None
        self._fetch_count += 1
        self._last_attempt = time.monotonic()
        try:
            keys = await self._download(self.jwks_url)
        except Exception as exc:
            self._last_ok = False
            self._last_error = describe_fetch_error(exc)
            log.warning(
                "JWKS fetch from %s failed: %s (%s); %s",
                self.jwks_url,
                self._last_error,
                type(exc).__name__,
                "keeping the cached keys" if self._keys is not None else "no keys cached",
            )
            return
        self._keys, self._fetched_at, self._last_ok = keys, time.monotonic(), True
        log.debug("fetched %d key(s) from %s", len(keys), self.jwks_url)

    async def _download(self, url: str) -> dict[str, Key]:
        if self._client is None:
            self._client = httpx2.AsyncClient(timeout=self._timeout, follow_redirects=False)
        with anyio.fail_after(self._timeout):  # the whole fetch, not only each socket operation
            status, body = await fetch_limited(
                self._client, url, limit=MAX_JWKS_BYTES, headers={"Accept": "application/json"}
            )
        if status != 200:
            raise FetchError(f"HTTP {status}")
        return await anyio.to_thread.run_sync(parse_jwks, body)  # RSA keys cost a little each: off the loop


@functools.lru_cache(maxsize=64)
def _unverified_header(token: str) -> Mapping[str, Any]:
    """PyJWT's parse of a token's header, kept for the tokens seen last. It depends on the token's
    bytes alone, and a stdio client sends one token on every call: parsing it once saves a pass
    over the whole token per call. The signature and claims are still checked on every call; a
    header that fails to parse raises, and errors are not cached."""
    return MappingProxyType(jwt.get_unverified_header(token))
