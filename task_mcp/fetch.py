"""Reading what Better Auth answers: bounded, same-origin, and a JWKS parsed in linear time.

`fetch_limited` reads a body as a stream and cuts it at a size limit (a JWKS, a token-exchange
answer), so a huge or endless answer costs at most that many bytes; it follows a redirect only
within the origin it was given (a JWKS served from elsewhere is not Better Auth's). `parse_jwks`
turns a JWKS document into keys by `kid`, at most `MAX_JWKS_KEYS` of them.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx2
import jwt

MAX_JWKS_KEYS = 100  # signing keys a JWKS may publish; more is refused, not truncated
MAX_REDIRECTS = 3  # same-origin redirects followed


@dataclass(frozen=True)
class Key:
    """One usable key of a JWKS."""

    declared_alg: str | None  # the JWK's own `alg`, if it names one
    key: Any  # a cryptography public key


class FetchError(Exception):
    """An answer from Better Auth that is refused on its shape; `str()` says why in a few words."""


def is_loopback(url: str) -> bool:
    host = httpx2.URL(url).host
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def plain_http_on_network(url: str | None) -> bool:
    """True for an `http://` URL whose host is not loopback: keys or tokens would cross a network in clear."""
    return url is not None and url.startswith("http://") and not is_loopback(url)


def _same_origin(a: httpx2.URL, b: httpx2.URL) -> bool:
    return (a.scheme, a.host, a.port) == (b.scheme, b.host, b.port)


async def fetch_limited(
    client: httpx2.AsyncClient, url: str, *, limit: int, headers: Mapping[str, str]
) -> tuple[int, bytes]:
    """GET `url` and read the body as a stream, refusing it past `limit` bytes; redirects stay in its origin.

    `client` must not follow redirects itself. Raises FetchError, or httpx2's errors.
    """
    target = httpx2.URL(url)
    for _ in range(MAX_REDIRECTS + 1):
        async with client.stream("GET", target, headers=dict(headers)) as response:
            if response.has_redirect_location:
                following = target.join(response.headers["location"])
                if not _same_origin(target, following):
                    raise FetchError("redirected to another origin")
                target = following
                continue
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > limit:
                raise FetchError("answer too large")
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > limit:
                    raise FetchError("answer too large")
            return response.status_code, bytes(body)
    raise FetchError("too many redirects")


def parse_jwks(body: bytes) -> dict[str, Key]:
    """The usable signing keys of a JWKS document, by kid; linear in its size, at most MAX_JWKS_KEYS keys."""
    try:
        document = json.loads(body)
    except ValueError:
        raise FetchError("not a JWKS document") from None
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise FetchError("not a JWKS document")
    raw = [k for k in document["keys"] if isinstance(k, dict) and k.get("use") in (None, "sig")]
    if len(raw) > MAX_JWKS_KEYS:
        raise FetchError(f"{len(raw)} keys, more than the {MAX_JWKS_KEYS} this server accepts")
    keys: dict[str, Key] = {}
    for jwk in raw:
        kid, declared = jwk.get("kid"), jwk.get("alg")
        if not isinstance(kid, str) or not kid or kid in keys:
            continue
        try:
            parsed = jwt.PyJWK(jwk)
        except jwt.PyJWTError:
            continue  # a key of a type or algorithm PyJWT cannot use: skipped, like PyJWKSet does
        keys[kid] = Key(declared_alg=declared if isinstance(declared, str) else None, key=parsed.key)
    if not keys:
        raise FetchError("no usable key with a kid")
    return keys


def describe_fetch_error(exc: BaseException) -> str:
    """A few words for the model about why a fetch failed."""
    if isinstance(exc, FetchError):
        return str(exc)
    if isinstance(exc, TimeoutError | httpx2.TimeoutException):
        return "timed out"
    if isinstance(exc, httpx2.HTTPStatusError):
        return f"HTTP {exc.response.status_code}"
    if isinstance(exc, httpx2.TransportError):
        return "connection failed"
    return "not a usable JWKS document"
