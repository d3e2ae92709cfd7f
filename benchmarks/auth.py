"""A throwaway Better Auth stand-in: EdDSA, ES256 and RS256 keys behind a loopback JWKS.

Like `task_mcp.demo`, but with one key per algorithm so the verification benchmark can compare
them. Tokens are signed like Better Auth's JWT plugin: header alg + kid, iss = aud = base URL.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

ALGORITHMS = ("EdDSA", "ES256", "RS256")


class BetterAuthStandIn:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.keys: dict[str, Any] = {
            "EdDSA": ed25519.Ed25519PrivateKey.generate(),
            "ES256": ec.generate_private_key(ec.SECP256R1()),
            "RS256": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        }

    def jwks(self) -> dict[str, Any]:
        keys = []
        for alg, private in self.keys.items():
            jwk = jwt.get_algorithm_by_name(alg).to_jwk(private.public_key(), as_dict=True)
            keys.append({**jwk, "kid": f"bench-{alg.lower()}", "alg": alg})
        return {"keys": keys}

    def mint(self, sub: str, alg: str = "EdDSA", lifetime: int = 3600) -> str:
        now = int(time.time())
        claims = {"sub": sub, "name": sub, "email": f"{sub}@example.com", "emailVerified": True,
                  "iat": now, "exp": now + lifetime, "iss": self.base_url, "aud": self.base_url}  # fmt: skip
        headers = {"kid": f"bench-{alg.lower()}", "typ": None}
        return jwt.encode(claims, self.keys[alg], algorithm=alg, headers=headers)


@contextmanager
def better_auth_stand_in() -> Iterator[BetterAuthStandIn]:
    """Serve the stand-in's JWKS at http://127.0.0.1:<port>/api/auth/jwks while the block runs."""
    holder: dict[str, bytes] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            found = self.path == "/api/auth/jwks"
            body = holder["body"] if found else b""
            self.send_response(200 if found else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    stand_in = BetterAuthStandIn(f"http://127.0.0.1:{server.server_address[1]}")
    holder["body"] = json.dumps(stand_in.jwks()).encode()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield stand_in
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
