"""Who is calling: Better Auth JWTs, checked on every call against the Better Auth JWKS.

`JwtVerifier.verify(token)` turns a token into a `Principal` or raises `UnauthenticatedError`
with a message for the model and the user. Only the keys are cached, never a verification result:
signature, `exp`/`nbf`, `iss`, `aud` and the algorithm allow-list are checked on every call.

Key cache rules (`cache_seconds`, `cooldown_seconds`):
- a token whose `kid` is in a fresh cache verifies without network I/O;
- after `cache_seconds` the next verification refetches; a successful fetch replaces the set,
  a failed one keeps the stale keys working (a JWKS outage does not log anyone out);
- an unknown `kid` refetches at most once per `cooldown_seconds`, and so does any retry after a
  failed fetch; the first fetch ever is never delayed;
- concurrent verifications that need a fetch share one (single flight).

Where a token comes from on stdio is `credentials.py`.

This module knows nothing about MCP; `server.py` adapts it to the SDK's `TokenVerifier`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import anyio
import httpx2
import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from task_mcp.errors import UnauthenticatedError

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
    "bad_sub": "The token's 'sub' claim (the user id) is empty or not a string. " + _FRESH,
    "bad_scope": "The token's 'scope' claim is neither a space-separated string nor a list of strings. " + _FRESH,
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
    (jwt.PyJWTError, "invalid"),
)


def reject(reason: str, **details: object) -> UnauthenticatedError:
    log.debug("token rejected: %s", reason)
    return UnauthenticatedError(_MESSAGES[reason].format(**details))


@dataclass(frozen=True)
class Principal:
    """The verified caller. Every read and write is scoped by `user_id`."""

    user_id: str
    scopes: frozenset[str] | None
    claims: Mapping[str, Any] = field(repr=False)
    expires_at: int | None = None

    def has_scope(self, scope: str) -> bool:
        """A token without a `scope` claim (plain Better Auth JWT) may do everything."""
        return self.scopes is None or scope in self.scopes


@dataclass(frozen=True)
class _Key:
    declared_alg: str | None  # the JWK's own `alg`, if it names one
    key: Any  # a cryptography public key


def _parse_scopes(value: object) -> frozenset[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return frozenset(value.split())
    if isinstance(value, list | tuple) and all(isinstance(item, str) for item in value):
        return frozenset(item for item in value if item.strip())
    raise reject("bad_scope")


class JwtVerifier:
    """Verifies Better Auth JWTs against the JWKS at `jwks_url`; safe to share across tasks."""

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
    ) -> None:
        unsupported = [alg for alg in algorithms if alg not in _KEY_TYPES]
        if unsupported or not algorithms:
            raise ValueError(f"algorithms must be a non-empty subset of {sorted(_KEY_TYPES)}")
        self.jwks_url = jwks_url
        self.issuer = issuer
        self.audience = audience
        self.algorithms = tuple(algorithms)
        self._leeway = leeway_seconds
        self._cache_seconds = cache_seconds
        self._cooldown = cooldown_seconds
        self._timeout = timeout_seconds
        self._keys: dict[str, _Key] | None = None  # None until the first successful fetch
        self._fetched_at = 0.0  # monotonic time of the last successful fetch
        self._last_attempt: float | None = None
        self._last_ok = False
        self._last_error = ""
        self._fetch_count = 0
        self._lock = anyio.Lock()
        self._client: httpx2.AsyncClient | None = None

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
        )

    @property
    def fetch_count(self) -> int:
        """JWKS HTTP fetches attempted so far."""
        return self._fetch_count

    async def aclose(self) -> None:
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
        fits = isinstance(key.key, key_class) and (curve is None or key.key.curve.name == curve)
        if not fits or (key.declared_alg is not None and key.declared_alg != alg):
            raise reject("key_mismatch")
        claims = self._decode(token, key.key, alg)
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub.strip():
            raise reject("bad_sub")
        exp = claims.get("exp")
        return Principal(
            user_id=sub,
            scopes=_parse_scopes(claims.get("scope")),
            claims=MappingProxyType(claims),
            expires_at=int(exp) if isinstance(exp, int | float) else None,
        )

    def _header(self, token: str) -> dict[str, Any]:
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH:
            raise reject("malformed")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise reject("malformed") from None
        if header.get("alg") not in self.algorithms:  # `none`, HS256 and anything not configured
            raise reject("algorithm", algs=", ".join(self.algorithms))
        if not isinstance(header.get("kid"), str) or not header["kid"]:
            raise reject("no_kid")
        return header

    def _decode(self, token: str, key: Any, alg: str) -> dict[str, Any]:
        require = ["exp", "sub"]
        if self.issuer is not None:
            require.append("iss")
        if self.audience is not None:
            require.append("aud")
        try:
            return jwt.decode(
                token,
                key,
                algorithms=[alg],
                issuer=self.issuer,
                audience=self.audience,
                leeway=self._leeway,
                options={"require": require, "verify_aud": self.audience is not None},
            )
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

    async def _key_for(self, kid: str) -> _Key:
        if self._wants_fetch(kid, time.monotonic()):
            async with self._lock:  # single flight: re-check, someone may have fetched meanwhile
                if self._wants_fetch(kid, time.monotonic()):
                    await self._fetch()
        if self._keys is None:
            raise reject("unreachable", url=self.jwks_url, error=self._last_error)
        key = self._keys.get(kid)
        if key is None:
            raise reject("unknown_kid", url=self.jwks_url)
        return key

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

    async def _download(self, url: str) -> dict[str, _Key]:
        if self._client is None:
            self._client = httpx2.AsyncClient(timeout=self._timeout, follow_redirects=True)
        with anyio.fail_after(self._timeout):  # the whole fetch, not only each socket operation
            response = await self._client.get(url, headers={"Accept": "application/json"})
        response.raise_for_status()
        if len(response.content) > MAX_JWKS_BYTES:
            raise ValueError("JWKS document too large")
        document = response.json()
        if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
            raise ValueError("not a JWKS document")
        raw = [k for k in document["keys"] if isinstance(k, dict) and k.get("use") in (None, "sig")]
        keys: dict[str, _Key] = {}
        for jwk in jwt.PyJWKSet(raw):  # skips keys it cannot use; raises if none is usable
            kid = jwk.key_id
            if isinstance(kid, str) and kid and kid not in keys:
                declared = next((k.get("alg") for k in raw if k.get("kid") == kid), None)
                keys[kid] = _Key(declared_alg=declared if isinstance(declared, str) else None, key=jwk.key)
        if not keys:
            raise ValueError("JWKS has no usable key with a kid")
        return keys


def describe_fetch_error(exc: BaseException) -> str:
    """A few words for the model about why a fetch failed."""
    if isinstance(exc, TimeoutError | httpx2.TimeoutException):
        return "timed out"
    if isinstance(exc, httpx2.HTTPStatusError):
        return f"HTTP {exc.response.status_code}"
    if isinstance(exc, httpx2.TransportError):
        return "connection failed"
    return "not a usable JWKS document"
