"""A Better Auth stand-in for tests: real keys, a real JWKS endpoint on loopback, real tokens.

Use it in your own tests of code that calls task_mcp, as task_mcp's tests, demo and benchmarks
do. It needs no test framework:

    from task_mcp.testing import JwksServer

    with JwksServer() as better_auth:  # one Ed25519 key (Better Auth's default)
        settings = Settings(better_auth_url=better_auth.base_url, database_url="sqlite:///tasks.db")
        token = better_auth.mint("user-alice")  # iss = aud = base_url, 15 minutes, kid in the header

`JwksServer` publishes its keys at `{base_url}/api/auth/jwks` like Better Auth's JWT plugin;
`SigningKey.generate(alg)` makes an EdDSA, ES256, ES512, RS256 or PS256 key; `claims_for()` builds
the claims the JWT plugin signs; `bad_tokens()` names tokens a verifier must reject.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

__all__ = ["ALGORITHMS", "JWKS_PATH", "JwksServer", "SigningKey", "bad_tokens", "claims_for"]

JWKS_PATH = "/api/auth/jwks"

PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
PublicKey = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey | rsa.RSAPublicKey

_GENERATORS: dict[str, Callable[[], PrivateKey]] = {
    "EdDSA": ed25519.Ed25519PrivateKey.generate,
    "ES256": lambda: ec.generate_private_key(ec.SECP256R1()),
    "ES512": lambda: ec.generate_private_key(ec.SECP521R1()),
    "RS256": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
    "PS256": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
}
ALGORITHMS = tuple(_GENERATORS)
"""The algorithms Better Auth's JWT plugin can sign with (EdDSA is its default)."""


class SigningKey:
    """A real private/public key pair with a `kid`, signing like Better Auth's JWT plugin."""

    def __init__(self, alg: str, kid: str, private_key: PrivateKey) -> None:
        self.alg = alg
        self.kid = kid
        self.private_key = private_key

    @classmethod
    def generate(cls, alg: str = "EdDSA", kid: str | None = None) -> SigningKey:
        if alg not in _GENERATORS:
            raise ValueError(f"unsupported alg {alg!r}; use one of {sorted(_GENERATORS)}")
        return cls(alg, kid or secrets.token_hex(8), _GENERATORS[alg]())

    def __repr__(self) -> str:
        return f"SigningKey(alg={self.alg!r}, kid={self.kid!r})"

    @property
    def public_key(self) -> PublicKey:
        return self.private_key.public_key()

    def public_jwk(self) -> dict[str, Any]:
        """The public JWK as Better Auth publishes it: kty/crv/x(/y) or n/e, kid, alg; no `use`."""
        jwk: dict[str, Any] = dict(jwt.get_algorithm_by_name(self.alg).to_jwk(self.public_key, as_dict=True))
        jwk.pop("use", None)
        jwk.pop("key_ops", None)
        return {**jwk, "kid": self.kid, "alg": self.alg}

    def public_pem(self) -> bytes:
        return self.public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    def sign(self, claims: dict[str, Any], headers: dict[str, Any] | None = None) -> str:
        """A JWT with header {"alg", "kid"} (no `typ`, like Better Auth). A header value None drops it."""
        merged: dict[str, Any] = {"kid": self.kid, **(headers or {})}
        merged = {k: v for k, v in merged.items() if v is not None}
        merged.setdefault("typ", None)  # PyJWT adds typ=JWT unless told not to
        return jwt.encode(claims, self.private_key, algorithm=self.alg, headers=merged)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        owner = self.server.owner
        if self.path.split("?", 1)[0] != JWKS_PATH:
            self._send(404, {"error": "not found"})
            return
        with owner._lock:
            owner.fetches += 1
        if owner.delay:
            time.sleep(owner.delay)
        if owner.down:
            self._send(503, {"error": "JWKS temporarily unavailable"})
            return
        self._send(200, {"keys": [key.public_jwk() for key in list(owner.keys)]})

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout tests)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # logs go nowhere near stdout, which may carry MCP messages


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: JwksServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hangs up early is expected in timeout tests


class JwksServer:
    """A Better Auth-like JWKS endpoint on 127.0.0.1 (ephemeral port), served from a daemon thread.

    `JwksServer()` holds one new Ed25519 key; pass `keys` for others. Mutate `keys` to rotate, set
    `down` to answer 503, `delay` (seconds) to answer slowly; `fetches` counts GETs of the JWKS
    path. Use it as a context manager, or call `start()` and `stop()`.
    """

    def __init__(self, keys: list[SigningKey] | None = None) -> None:
        self.keys: list[SigningKey] = list(keys) if keys is not None else [SigningKey.generate()]
        self.fetches = 0
        self.down = False
        self.delay: float = 0
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.base_url = ""
        self.url = ""

    def start(self) -> JwksServer:
        server = _Server(("127.0.0.1", 0), _Handler)
        server.owner = self
        self._server = server
        self.base_url = f"http://127.0.0.1:{server.server_address[1]}"
        self.url = self.base_url + JWKS_PATH
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.02}, name="jwks-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> JwksServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def key(self, alg: str | None = None) -> SigningKey:
        """The first published key, or the first one for `alg`."""
        for key in self.keys:
            if alg is None or key.alg == alg:
                return key
        raise LookupError(f"no {alg} key is published here; published: {[k.alg for k in self.keys]}")

    def mint(self, sub: str = "user-alice", alg: str | None = None, *, lifetime: int = 900, **claims: Any) -> str:
        """A token for `sub` as Better Auth's JWT plugin signs it, with the first key (of `alg`).

        `claims` override or add claims (None drops one), as in `claims_for`.
        """
        return self.key(alg).sign(claims_for(self.base_url, sub, lifetime, **claims))


def claims_for(base_url: str, sub: str = "user-alice", lifetime: int = 900, **extra: Any) -> dict[str, Any]:
    """Claims like Better Auth's JWT plugin: the user row plus sub, iat, exp, iss = aud = base_url.

    `extra` overrides or adds claims; a value of None drops that claim.
    """
    now = int(time.time())
    name = sub.removeprefix("user-").replace("-", " ").title() or "User"
    claims: dict[str, Any] = {
        "id": sub,
        "name": name,
        "email": f"{sub}@example.com",
        "emailVerified": True,
        "image": None,
        "createdAt": "2026-01-01T00:00:00.000Z",
        "updatedAt": "2026-01-01T00:00:00.000Z",
        "sub": sub,
        "iat": now,
        "exp": now + lifetime,
        "iss": base_url,
        "aud": base_url,
    }
    for key, value in extra.items():
        if value is None:
            claims.pop(key, None)
        else:
            claims[key] = value
    return claims


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64json(obj: dict[str, Any]) -> str:
    return _b64url(json.dumps(obj, separators=(",", ":")).encode())


def bad_tokens(key: SigningKey, base_url: str, sub: str = "user-alice") -> dict[str, str]:
    """Named tokens that a verifier trusting `key` (published at base_url) must reject."""
    now = int(time.time())
    good = claims_for(base_url, sub)
    signing_input_none = f"{_b64json({'alg': 'none', 'typ': 'JWT'})}.{_b64json(good)}"
    hs_header = {"alg": "HS256", "typ": "JWT", "kid": key.kid}
    hs_input = f"{_b64json(hs_header)}.{_b64json(good)}"
    hs_sig = hmac.new(key.public_pem(), hs_input.encode(), hashlib.sha256).digest()
    header, _, signature = key.sign(good).split(".")
    tampered = f"{header}.{_b64json({**good, 'sub': 'user-mallory'})}.{signature}"
    stranger = SigningKey.generate(key.alg)  # same algorithm, a kid the JWKS does not publish
    return {
        "expired": key.sign(claims_for(base_url, sub, lifetime=-3600, iat=now - 4500)),
        "not_yet_valid": key.sign(claims_for(base_url, sub, nbf=now + 3600)),
        "wrong_issuer": key.sign(claims_for(base_url, sub, iss="https://evil.example.com")),
        "wrong_audience": key.sign(claims_for(base_url, sub, aud="https://other.example.com")),
        "missing_sub": key.sign({k: v for k, v in good.items() if k != "sub"}),
        "alg_none": signing_input_none + ".",
        "hs256_with_public_key": f"{hs_input}.{_b64url(hs_sig)}",
        "tampered_payload": tampered,
        "unknown_kid": stranger.sign(claims_for(base_url, sub)),
        "garbage": "this-is-not-a-jwt",
        "empty_sub": key.sign({**good, "sub": ""}),
    }
