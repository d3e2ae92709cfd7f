"""The verifier against real keys and a real JWKS endpoint on loopback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import anyio
import pytest

from task_mcp.auth import JwtVerifier, Principal
from task_mcp.config import Settings
from task_mcp.credentials import META_KEY, LaunchCredential, token_from_meta
from task_mcp.errors import UnauthenticatedError
from task_mcp.testing import JwksServer, SigningKey, bad_tokens, claims_for

pytestmark = pytest.mark.anyio

ALL_ALGORITHMS = ("EdDSA", "ES256", "ES512", "RS256", "PS256")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def key() -> SigningKey:
    return SigningKey.generate("EdDSA")


@pytest.fixture
def jwks(key: SigningKey):
    with JwksServer([key]) as server:
        yield server


@pytest.fixture
async def make_verifier(jwks: JwksServer) -> AsyncIterator[Callable[..., JwtVerifier]]:
    made: list[JwtVerifier] = []

    def make(**overrides) -> JwtVerifier:
        options = {"jwks_url": jwks.url, "issuer": jwks.base_url, "audience": jwks.base_url, **overrides}
        verifier = JwtVerifier(**options)
        made.append(verifier)
        return verifier

    yield make
    for verifier in made:
        await verifier.aclose()


async def until(condition: Callable[[], bool], seconds: float = 30) -> None:
    """Wait for `condition`, checking every 10 ms; the deadline only guards against a hang."""
    with anyio.fail_after(seconds):
        while not condition():
            await anyio.sleep(0.01)


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/api/auth/jwks"


async def rejection(verifier: JwtVerifier, token: str) -> str:
    with pytest.raises(UnauthenticatedError) as caught:
        await verifier.verify(token)
    assert caught.value.code == "unauthenticated"
    return caught.value.message


# ---- valid tokens ---------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ALL_ALGORITHMS)
async def test_a_valid_token_of_each_better_auth_algorithm_verifies_to_its_user(alg, make_verifier, jwks):
    signer = SigningKey.generate(alg)
    jwks.keys = [signer]
    claims = claims_for(jwks.base_url, sub="user-bob")
    principal = await make_verifier(algorithms=[alg]).verify(signer.sign(claims))
    assert isinstance(principal, Principal)
    assert principal.user_id == "user-bob"
    assert principal.scopes is None
    assert principal.has_scope("tasks:write")
    assert principal.expires_at == claims["exp"]
    assert principal.claims["email"] == "user-bob@example.com"


async def test_a_scope_claim_becomes_the_principals_scopes(key, jwks, make_verifier):
    verifier = make_verifier()
    as_string = await verifier.verify(key.sign(claims_for(jwks.base_url, scope="tasks:read  openid")))
    assert as_string.scopes == frozenset({"tasks:read", "openid"})
    assert as_string.has_scope("tasks:read")
    assert not as_string.has_scope("tasks:write")
    as_list = await verifier.verify(key.sign(claims_for(jwks.base_url, scope=["tasks:write"])))
    assert as_list.scopes == frozenset({"tasks:write"})
    empty = await verifier.verify(key.sign(claims_for(jwks.base_url, scope="")))
    assert empty.scopes == frozenset()
    assert not empty.has_scope("tasks:read")


async def test_the_principals_repr_does_not_show_the_claims(key, jwks, make_verifier):
    principal = await make_verifier().verify(key.sign(claims_for(jwks.base_url)))
    assert "user-alice@example.com" not in repr(principal)


@pytest.mark.parametrize(("issuer", "audience"), [(None, None), ("http://127.0.0.1:1", None), (None, "http://x")])
def test_a_verifier_with_a_jwks_but_without_an_issuer_or_audience_to_check_is_refused(issuer, audience):
    with pytest.raises(ValueError, match="issuer and an audience"):
        JwtVerifier(jwks_url="http://127.0.0.1:1/api/auth/jwks", issuer=issuer, audience=audience)


async def test_a_token_without_iss_or_aud_is_rejected(key, jwks, make_verifier):
    verifier = make_verifier()
    for claim in ("iss", "aud"):
        message = await rejection(verifier, key.sign(claims_for(jwks.base_url, **{claim: None})))
        assert f"lacks the required '{claim}' claim" in message


async def test_leeway_accepts_a_token_that_expired_a_moment_ago_but_not_longer(key, jwks, make_verifier):
    verifier = make_verifier(leeway_seconds=10)
    assert await verifier.verify(key.sign(claims_for(jwks.base_url, lifetime=-5)))
    message = await rejection(verifier, key.sign(claims_for(jwks.base_url, lifetime=-20)))
    assert "expired" in message


# ---- bad tokens -----------------------------------------------------------------------------------

EXPECTED_WORDS = {
    "expired": "has expired",
    "not_yet_valid": "not valid yet",
    "wrong_issuer": "different issuer",
    "wrong_audience": "different audience",
    "missing_sub": "lacks the required 'sub' claim",
    "alg_none": "algorithm this server does not accept",
    "hs256_with_public_key": "algorithm this server does not accept",
    "tampered_payload": "signature is invalid",
    "unknown_kid": "does not publish",
    "garbage": "not a well-formed JWT",
    "empty_sub": "'sub' claim (the user id) is empty",
}


@pytest.mark.parametrize("case", sorted(EXPECTED_WORDS))
async def test_every_bad_token_is_rejected_with_its_own_message_that_never_echoes_it(case, key, jwks, make_verifier):
    token = bad_tokens(key, jwks.base_url)[case]
    message = await rejection(make_verifier(), token)
    assert EXPECTED_WORDS[case] in message
    for secret in (token, *[part for part in token.split(".") if len(part) > 8]):
        assert secret not in message
    for claim_value in ("user-alice", "user-mallory", "evil.example.com", "other.example.com"):
        assert claim_value not in message


def test_bad_tokens_covers_every_named_case(key):
    assert set(bad_tokens(key, "http://127.0.0.1:1")) == set(EXPECTED_WORDS)


async def test_an_algorithm_outside_the_allow_list_is_rejected_before_any_fetch(jwks, make_verifier):
    es_key = SigningKey.generate("ES256")
    jwks.keys = [es_key]
    message = await rejection(make_verifier(algorithms=["EdDSA"]), es_key.sign(claims_for(jwks.base_url)))
    assert "does not accept (accepted: EdDSA)" in message
    assert jwks.fetches == 0


async def test_a_published_key_of_another_type_than_the_header_algorithm_is_rejected(key, jwks, make_verifier):
    impostor = SigningKey.generate("ES256", kid=key.kid)  # same kid as the published Ed25519 key
    verifier = make_verifier(algorithms=["EdDSA", "ES256"])
    message = await rejection(verifier, impostor.sign(claims_for(jwks.base_url)))
    assert "does not match the JWKS key" in message


async def test_a_token_without_a_kid_is_rejected(key, jwks, make_verifier):
    message = await rejection(make_verifier(), key.sign(claims_for(jwks.base_url), headers={"kid": None}))
    assert "no key id (kid)" in message


async def test_a_server_without_a_jwks_url_rejects_every_token_and_says_what_to_set(key, jwks):
    verifier = JwtVerifier(jwks_url=None, issuer=None, audience=None)
    message = await rejection(verifier, key.sign(claims_for(jwks.base_url)))
    assert "TASK_MCP_BETTER_AUTH_URL" in message
    assert "TASK_MCP_JWKS_URL" in message


def test_an_allow_list_with_a_symmetric_or_unknown_algorithm_is_refused():
    for algorithms in (["HS256"], ["none"], []):
        with pytest.raises(ValueError):
            JwtVerifier(
                jwks_url="http://127.0.0.1:1/jwks", issuer="http://a", audience="http://a", algorithms=algorithms
            )


def test_from_settings_uses_the_better_auth_derived_urls_and_limits():
    settings = Settings(better_auth_url="http://127.0.0.1:3000/", algorithms="EdDSA,ES256")
    verifier = JwtVerifier.from_settings(settings)
    assert verifier.jwks_url == "http://127.0.0.1:3000/api/auth/jwks"
    assert verifier.issuer == verifier.audience == "http://127.0.0.1:3000"
    assert verifier.algorithms == ("EdDSA", "ES256")


# ---- the key cache --------------------------------------------------------------------------------


async def test_verifications_with_a_cached_key_do_no_network_io(key, jwks, make_verifier):
    verifier = make_verifier()
    token = key.sign(claims_for(jwks.base_url))
    for _ in range(10):
        await verifier.verify(token)
    assert jwks.fetches == 1
    assert verifier.fetch_count == 1


async def test_cached_keys_keep_verifying_while_the_jwks_is_down(key, jwks, make_verifier):
    verifier = make_verifier(cache_seconds=0.2)
    token = key.sign(claims_for(jwks.base_url))
    await verifier.verify(token)
    jwks.down = True
    await anyio.sleep(0.25)
    assert (await verifier.verify(token)).user_id == "user-alice"
    await until(lambda: jwks.fetches == 2)  # the refresh was tried (in the background) and failed
    for _ in range(5):
        assert (await verifier.verify(token)).user_id == "user-alice"
    assert jwks.fetches == 2  # and is not retried on every call during the outage


async def test_a_rotated_in_key_verifies_once_it_is_published(key, jwks, make_verifier):
    verifier = make_verifier(cooldown_seconds=0)
    await verifier.verify(key.sign(claims_for(jwks.base_url)))
    new_key = SigningKey.generate()
    jwks.keys = [key, new_key]
    assert (await verifier.verify(new_key.sign(claims_for(jwks.base_url)))).user_id == "user-alice"
    assert jwks.fetches == 2


async def test_a_key_removed_from_the_jwks_stops_verifying_when_the_cache_expires(key, jwks, make_verifier):
    verifier = make_verifier(cache_seconds=0.2)
    old_token = key.sign(claims_for(jwks.base_url))
    await verifier.verify(old_token)
    jwks.keys = [SigningKey.generate()]
    await verifier.verify(old_token)  # still cached (fresh or, past 0.2 s, stale while it refreshes)
    await anyio.sleep(0.25)
    with anyio.fail_after(30):  # the stale key serves until the refresh that its expiry started lands
        while True:
            try:
                await verifier.verify(old_token)
            except UnauthenticatedError as exc:
                message = exc.message
                break
            await anyio.sleep(0.01)
    assert "does not publish" in message
    assert jwks.fetches == 2


async def test_a_flood_of_unknown_kids_costs_at_most_one_fetch_per_cooldown(jwks, make_verifier):
    verifier = make_verifier(cooldown_seconds=600)
    strangers = [SigningKey.generate() for _ in range(50)]
    for stranger in strangers:
        await rejection(verifier, stranger.sign(claims_for(jwks.base_url)))
    assert jwks.fetches == 1


async def test_an_unknown_kid_refetches_again_once_the_cooldown_has_passed(jwks, make_verifier):
    verifier = make_verifier(cooldown_seconds=0.3)
    stranger = SigningKey.generate().sign(claims_for(jwks.base_url))
    await rejection(verifier, stranger)
    await anyio.sleep(0.35)
    await rejection(verifier, stranger)
    assert jwks.fetches == 2


async def test_concurrent_verifications_on_a_cold_cache_share_one_fetch(key, jwks, make_verifier):
    jwks.delay = 0.2
    verifier = make_verifier()
    token = key.sign(claims_for(jwks.base_url))
    users: list[str] = []

    async def verify_one() -> None:
        users.append((await verifier.verify(token)).user_id)

    async with anyio.create_task_group() as tg:
        for _ in range(20):
            tg.start_soon(verify_one)
    assert users == ["user-alice"] * 20
    assert jwks.fetches == 1


async def test_a_jwks_unreachable_from_the_start_is_reported_as_unreachable(key, jwks):
    verifier = JwtVerifier(jwks_url=closed_port_url(), issuer=jwks.base_url, audience=jwks.base_url)
    try:
        message = await rejection(verifier, key.sign(claims_for(jwks.base_url)))
    finally:
        await verifier.aclose()
    assert "could not be reached" in message
    assert verifier.fetch_count == 1


async def test_a_slow_jwks_times_out_without_blocking_the_event_loop(key, jwks, make_verifier):
    jwks.delay = 3
    verifier = make_verifier(timeout_seconds=1)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await anyio.sleep(0.01)
            ticks += 1

    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker)
        message = await rejection(verifier, key.sign(claims_for(jwks.base_url)))
        tg.cancel_scope.cancel()
    assert "timed out" in message  # after 1 s, not the 3 s the JWKS takes to answer
    assert jwks.fetches == 1
    assert ticks >= 3  # about 100 on an idle machine: the loop kept running while the fetch waited


# ---- where tokens come from -----------------------------------------------------------------------


def test_the_launch_token_from_the_environment_wins_and_loses_its_bearer_prefix(tmp_path: Path):
    token_file = tmp_path / "token"
    token_file.write_text("from-file")
    assert LaunchCredential("Bearer from-env", token_file).get() == "from-env"
    assert LaunchCredential(None, token_file).get() == "from-file"
    assert LaunchCredential(None, None).get() is None


def test_the_launch_token_file_is_reread_when_it_changes(tmp_path: Path):
    token_file = tmp_path / "token"
    credential = LaunchCredential(None, token_file)
    assert credential.get() is None  # not there yet
    token_file.write_text("first-token\n")
    assert credential.get() == "first-token"
    token_file.write_text("Bearer the-second-token\n")
    assert credential.get() == "the-second-token"
    replacement = tmp_path / "token.new"
    replacement.write_text("third-token")
    os.replace(replacement, token_file)  # how editors and refresh scripts swap files
    assert credential.get() == "third-token"
    token_file.write_text("   \n")
    assert credential.get() is None
    token_file.unlink()
    assert credential.get() is None


@pytest.mark.parametrize(
    ("value", "token"),
    [
        ("Bearer abc.def.ghi", "abc.def.ghi"),
        ("abc.def.ghi", "abc.def.ghi"),
        ("bearer  abc.def.ghi ", "abc.def.ghi"),
    ],
)
def test_a_meta_credential_may_carry_the_bearer_prefix_or_not(value, token):
    assert token_from_meta(value) == token


@pytest.mark.parametrize("value", ["", "  ", "Bearer", "Bearer   ", 42, None, ["Bearer x"]])
def test_an_empty_or_non_string_meta_credential_is_rejected(value):
    with pytest.raises(UnauthenticatedError) as caught:
        token_from_meta(value)
    assert META_KEY in caught.value.message


# ---- configuration that would leave tokens unchecked ---------------------------------------------


@pytest.mark.parametrize(
    ("env", "missing"),
    [
        ({"TASK_MCP_JWKS_URL": "http://127.0.0.1:1/api/auth/jwks"}, "TASK_MCP_ISSUER and TASK_MCP_AUDIENCE"),
        (
            {"TASK_MCP_JWKS_URL": "http://127.0.0.1:1/j", "TASK_MCP_ISSUER": "http://127.0.0.1:1"},
            "TASK_MCP_AUDIENCE",
        ),
        (
            {"TASK_MCP_JWKS_URL": "http://127.0.0.1:1/j", "TASK_MCP_AUDIENCE": "http://127.0.0.1:1"},
            "TASK_MCP_ISSUER",
        ),
    ],
)
def test_serve_refuses_to_start_with_a_jwks_but_no_issuer_and_audience(env, missing, tmp_path: Path):
    base = {k: os.environ[k] for k in ("HOME", "PATH") if k in os.environ}
    done = subprocess.run(
        [sys.executable, "-m", "task_mcp", "serve"],
        env=base | {"TASK_MCP_DATABASE_URL": f"sqlite:///{tmp_path / 'tasks.db'}"} | env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith(f"task-mcp: error: TASK_MCP_JWKS_URL is set without {missing},")
    assert "Set TASK_MCP_BETTER_AUTH_URL, or both TASK_MCP_ISSUER and TASK_MCP_AUDIENCE" in line
    assert done.stdout == ""
    assert not (tmp_path / "tasks.db").exists()  # refused before touching anything


def test_settings_accept_a_jwks_with_the_better_auth_url_or_both_issuer_and_audience():
    jwks = "http://127.0.0.1:1/api/auth/jwks"
    assert Settings(_env_file=None, jwks_url=jwks, better_auth_url="http://127.0.0.1:1").effective_audience
    both = Settings(_env_file=None, jwks_url=jwks, issuer="http://127.0.0.1:1/api/auth", audience="https://t/mcp")
    assert (both.effective_issuer, both.effective_audience) == ("http://127.0.0.1:1/api/auth", "https://t/mcp")
