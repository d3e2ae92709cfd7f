"""What a hostile or broken Better Auth answer, or a hostile token, cannot do to the verifier.

Real keys, real loopback HTTP servers (tests/loopback.py) that answer huge, hang, redirect
elsewhere or publish thousands of keys; the verdicts are counted, never timed.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Iterator

import anyio
import pytest

from task_mcp.auth import MAX_TOKEN_LENGTH, JwtVerifier
from task_mcp.config import Settings
from task_mcp.errors import UnauthenticatedError
from task_mcp.fetch import MAX_JWKS_KEYS
from task_mcp.testing import JWKS_PATH, SigningKey, claims_for
from tests.loopback import Loopback, Request

pytestmark = pytest.mark.anyio

MB = 1_000_000


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def key() -> SigningKey:
    return SigningKey.generate("EdDSA")


@pytest.fixture
async def verifiers() -> AsyncIterator[list[JwtVerifier]]:
    made: list[JwtVerifier] = []
    yield made
    for verifier in made:
        await verifier.aclose()


def verifier_for(made: list[JwtVerifier], base_url: str, **options: float) -> JwtVerifier:
    verifier = JwtVerifier(jwks_url=base_url + JWKS_PATH, issuer=base_url, audience=base_url, **options)
    made.append(verifier)
    return verifier


def jwks_of(*keys: SigningKey) -> dict[str, list[dict[str, str]]]:
    return {"keys": [k.public_jwk() for k in keys]}


async def rejection(verifier: JwtVerifier, token: str) -> str:
    with pytest.raises(UnauthenticatedError) as caught:
        await verifier.verify(token)
    return caught.value.message


# ---- size, count and origin of what the JWKS answers ----------------------------------------------


async def test_a_400_mb_jwks_is_cut_at_the_size_limit_not_read_whole(key, verifiers):
    with Loopback(lambda request: request.stream(400 * MB)) as server:
        verifier = verifier_for(verifiers, server.base_url, timeout_seconds=60)
        message = await rejection(verifier, key.sign(claims_for(server.base_url)))
        assert "answer too large" in message
        # What the server wrote before the client hung up: the 1 MB limit plus socket buffers, not 400 MB.
        assert server.sent < 32 * MB


async def test_a_jwks_that_declares_a_huge_length_is_refused_before_its_body(key, verifiers):
    def answer(request: Request) -> None:
        request.send_response(200)
        request.send_header("Content-Length", str(400 * MB))
        request.end_headers()
        request.wfile.write(b"{")

    with Loopback(answer) as server:
        message = await rejection(verifier_for(verifiers, server.base_url), key.sign(claims_for(server.base_url)))
    assert "answer too large" in message


async def test_a_jwks_of_8000_keys_under_the_byte_limit_is_refused_with_its_reason(key, verifiers):
    template = key.public_jwk()
    body = json.dumps({"keys": [{**template, "kid": f"k{i:05}"} for i in range(8000)] + [template]}).encode()
    assert len(body) < MB  # the byte limit alone would let it through

    with Loopback(lambda request: request.send(200, body)) as server:
        verifier = verifier_for(verifiers, server.base_url)
        message = await rejection(verifier, key.sign(claims_for(server.base_url)))
    assert f"8001 keys, more than the {MAX_JWKS_KEYS} this server accepts" in message
    assert verifier.fetch_count == 1


async def test_a_jwks_of_the_maximum_number_of_keys_verifies(key, verifiers):
    others = [{**key.public_jwk(), "kid": f"other-{i}"} for i in range(MAX_JWKS_KEYS - 1)]
    with Loopback(lambda request: request.send(200, {"keys": [*others, key.public_jwk()]})) as server:
        principal = await verifier_for(verifiers, server.base_url).verify(key.sign(claims_for(server.base_url)))
    assert principal.user_id == "user-alice"


async def test_a_jwks_redirected_to_another_origin_is_not_trusted(key, verifiers):
    attacker = SigningKey.generate("EdDSA")
    with Loopback(lambda request: request.send(200, jwks_of(attacker))) as elsewhere:

        def redirect(request: Request) -> None:
            request.send(302, b"", headers={"Location": elsewhere.base_url + JWKS_PATH})

        with Loopback(redirect) as server:
            verifier = verifier_for(verifiers, server.base_url)
            forged = attacker.sign(claims_for(server.base_url, sub="user-mallory"))
            message = await rejection(verifier, forged)
    assert "redirected to another origin" in message
    assert elsewhere.requests[JWKS_PATH] == 0


async def test_a_jwks_redirected_within_its_origin_is_followed(key, verifiers):
    def answer(request: Request) -> None:
        if request.path == JWKS_PATH:
            request.send(307, b"", headers={"Location": "/keys/current"})
        else:
            request.send(200, jwks_of(key))

    with Loopback(answer) as server:
        principal = await verifier_for(verifiers, server.base_url).verify(key.sign(claims_for(server.base_url)))
        assert server.requests == {JWKS_PATH: 1, "/keys/current": 1}
    assert principal.user_id == "user-alice"


# ---- a JWKS that hangs once the cache is stale ----------------------------------------------------


async def test_a_cached_kid_is_served_at_once_while_one_refresh_waits_on_a_hanging_jwks(key, verifiers):
    hang = threading.Event()
    release = threading.Event()

    def answer(request: Request) -> None:
        if hang.is_set():
            release.wait(60)
        request.send(200, jwks_of(key))

    with Loopback(answer) as server:
        verifier = verifier_for(verifiers, server.base_url, cache_seconds=0.2, timeout_seconds=60)
        token = key.sign(claims_for(server.base_url))
        await verifier.verify(token)  # first fetch: keys cached
        hang.set()
        await anyio.sleep(0.3)  # the cache is stale now

        with anyio.fail_after(30):  # only guards against a hang; on a stale cache this must not wait
            users = [(await verifier.verify(token)).user_id for _ in range(20)]
        assert not release.is_set()  # all 20 answered while the refresh was still hanging
        assert users == ["user-alice"] * 20
        with anyio.fail_after(30):
            while server.requests[JWKS_PATH] < 2:
                await anyio.sleep(0.01)
        assert (await verifier.verify(token)).user_id == "user-alice"
        assert verifier.fetch_count == 2  # one background refresh for all 21 calls
        assert not release.is_set()
        release.set()
    assert server.requests[JWKS_PATH] == 2


# ---- tokens that break a rule of their own --------------------------------------------------------


@pytest.fixture
def served(key: SigningKey) -> Iterator[Loopback]:
    with Loopback(lambda request: request.send(200, jwks_of(key))) as server:
        yield server


async def test_a_token_over_the_size_limit_gets_its_own_message(key, served, verifiers):
    token = key.sign(claims_for(served.base_url, padding="x" * MAX_TOKEN_LENGTH))
    message = await rejection(verifier_for(verifiers, served.base_url), token)
    assert f"longer than {MAX_TOKEN_LENGTH} characters" in message
    assert "not a well-formed JWT" not in message


async def test_a_token_with_a_crit_header_gets_its_own_message(key, served, verifiers):
    verifier = verifier_for(verifiers, served.base_url)
    for crit in (["exp"], ["x-custom"]):
        token = key.sign(claims_for(served.base_url), headers={"crit": crit, "x-custom": 1})
        message = await rejection(verifier, token)
        assert "critical extension (crit)" in message, crit


async def test_a_null_scope_is_malformed_not_a_plain_jwt(key, served, verifiers):
    verifier = verifier_for(verifiers, served.base_url)
    empty = await verifier.verify(key.sign(claims_for(served.base_url, scope=[])))
    assert empty.scopes == frozenset()
    token = key.sign({**claims_for(served.base_url), "scope": None})
    message = await rejection(verifier, token)
    assert "'scope' claim is neither" in message


@pytest.mark.parametrize(
    ("sub", "accepted"),
    [("u" * 255, True), ("u", True), ("u" * 256, False), ("", False), ("   ", False), (42, False), (["a"], False)],
)
async def test_sub_must_be_a_string_of_1_to_255_characters(key, served, verifiers, sub, accepted):
    verifier = verifier_for(verifiers, served.base_url)
    token = key.sign({**claims_for(served.base_url), "sub": sub})
    if accepted:
        assert (await verifier.verify(token)).user_id == sub
    else:
        assert "'sub' claim (the user id) is empty, not a string, or longer than 255" in await rejection(
            verifier, token
        )


async def test_leeway_applies_to_nbf_too(key, served, verifiers):
    verifier = verifier_for(verifiers, served.base_url, leeway_seconds=30)
    now = int(time.time())
    assert await verifier.verify(key.sign(claims_for(served.base_url, nbf=now + 10)))
    assert "not valid yet" in await rejection(verifier, key.sign(claims_for(served.base_url, nbf=now + 120)))


def test_leeway_is_at_most_30_seconds():
    assert Settings(_env_file=None, leeway_seconds=30).leeway_seconds == 30
    with pytest.raises(ValueError, match="less than or equal to 30"):
        Settings(_env_file=None, leeway_seconds=31)


async def test_an_unknown_kid_while_the_jwks_is_down_is_unauthenticated(key, verifiers):
    down = threading.Event()

    def answer(request: Request) -> None:
        request.send(503, {"error": "down"}) if down.is_set() else request.send(200, jwks_of(key))

    with Loopback(answer) as server:
        verifier = verifier_for(verifiers, server.base_url, cooldown_seconds=0)
        await verifier.verify(key.sign(claims_for(server.base_url)))
        down.set()
        stranger = SigningKey.generate().sign(claims_for(server.base_url))
        message = await rejection(verifier, stranger)
        assert server.requests[JWKS_PATH] == 2  # it did try to refetch for the unknown kid
    assert "does not publish" in message


# ---- plain http on a network ----------------------------------------------------------------------


def test_a_plain_http_jwks_on_a_network_host_is_warned_about(caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.WARNING, logger="task_mcp")
    JwtVerifier(jwks_url="http://127.0.0.1:3000/api/auth/jwks", issuer="http://a", audience="http://a")
    JwtVerifier(jwks_url="http://localhost:3000/api/auth/jwks", issuer="http://a", audience="http://a")
    JwtVerifier(jwks_url="https://auth.example.com/api/auth/jwks", issuer="http://a", audience="http://a")
    assert caplog.records == []
    JwtVerifier(jwks_url="http://auth.example.com/api/auth/jwks", issuer="http://a", audience="http://a")
    [record] = caplog.records
    assert record.levelno == logging.WARNING and "plain http://" in record.getMessage()
