"""Who is calling, through the MCP client: every token path, every way a token can be bad.

Paths: the request's `_meta["task-mcp/authorization"]` ("Bearer <jwt>" or the bare jwt), the
launch token (TASK_MCP_TOKEN) and the token file (TASK_MCP_TOKEN_FILE). A rejected call answers
`unauthenticated`, never echoes the token, and changes nothing.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import anyio
import jwt
import pytest
from mcp import Client
from mcp.types import CallToolResult
from pydantic import SecretStr

from task_mcp.credentials import META_KEY
from task_mcp.server import TaskMcp
from task_mcp.testing import bad_tokens, claims_for
from tests.helpers import connect, rows

pytestmark = pytest.mark.anyio

AUTH = META_KEY
BAD_TOKEN_NAMES = [
    "alg_none", "empty_sub", "expired", "garbage", "hs256_with_public_key", "missing_sub",
    "not_yet_valid", "tampered_payload", "unknown_kid", "wrong_audience", "wrong_issuer",
]  # fmt: skip
PATHS = ["meta_bearer", "meta_bare", "meta_over_valid_launch_token", "launch_token", "token_file"]


def text_of(result: CallToolResult) -> str:
    return result.content[0].text


def assert_unauthenticated(result: CallToolResult, token: str | None = None, case: object = None) -> str:
    text = text_of(result)
    assert result.is_error, (case, text)
    assert text.startswith("unauthenticated: "), (case, text)
    if token:
        assert token not in text, case
        for part in token.split("."):  # not even one segment of it
            assert len(part) < 8 or part not in text, case
    return text


async def titles(client: Client, token: str) -> list[str]:
    """What the token's user sees in their list, asked with a valid `_meta` token."""
    result = await client.call_tool("list_tasks", {"status": "all"}, meta={AUTH: f"Bearer {token}"})
    assert not result.is_error, text_of(result)
    return [t["title"] for t in result.structured_content["tasks"]]


def sibling(base: TaskMcp, **settings: Any) -> TaskMcp:
    """Another server on `base`'s database and verifier, its settings changed (say, its launch token)."""
    if "token" in settings:
        settings["token"] = SecretStr(settings["token"])
    return TaskMcp(base.settings.model_copy(update=settings), database=base.database, verifier=base.verifier)


def app_for(path: str, token: str, base: TaskMcp, tmp_path: Path, valid: str) -> TaskMcp:
    """A server whose launch credential fits `path`; `token` travels by that path."""
    if path == "launch_token":
        return sibling(base, token=token)
    if path == "token_file":
        token_file = tmp_path / "token"
        token_file.write_text(token + "\n")
        return sibling(base, token_file=token_file)
    if path == "meta_over_valid_launch_token":
        return sibling(base, token=valid)
    return base


def meta_for(path: str, token: str) -> dict[str, Any] | None:
    if path in ("meta_bearer", "meta_over_valid_launch_token"):
        return {AUTH: f"Bearer {token}"}
    if path == "meta_bare":
        return {AUTH: token}
    return None


# --- every bad token on every path ----------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
async def test_every_bad_token_on_each_path_is_unauthenticated_and_changes_nothing(
    app, mint, signing_key, jwks, tmp_path, path
):
    tokens = bad_tokens(signing_key, jwks.base_url, sub="alice")
    assert sorted(tokens) == BAD_TOKEN_NAMES
    valid = mint("alice")
    for name, token in tokens.items():
        async with connect(app_for(path, token, app, tmp_path, valid)) as client:
            meta = meta_for(path, token)
            created = await client.call_tool("create_task", {"title": f"Should not exist ({name})"}, meta=meta)
            assert_unauthenticated(created, token, name)
            listed = await client.call_tool("list_tasks", {}, meta=meta)
            assert_unauthenticated(listed, token, name)
    async with connect(app) as client:
        assert await titles(client, valid) == []
        assert await titles(client, mint("user-mallory")) == []  # the tampered token's claimed user

    # The same path with a valid token works: it was the tokens that were refused, not the path.
    good = mint("alice")
    async with connect(app_for(path, good, app, tmp_path, valid=mint("bob"))) as client:
        created = await client.call_tool("create_task", {"title": "Mine"}, meta=meta_for(path, good))
        assert not created.is_error, text_of(created)
        assert created.structured_content["task"]["id"] == 1
        assert await titles(client, good) == ["Mine"]
        assert await titles(client, mint("bob")) == []


async def test_an_empty_or_non_string_meta_credential_never_falls_back_to_the_launch_token(app, mint):
    valid = mint("alice")
    async with connect(sibling(app, token=valid)) as client:
        for value in ["", "   ", "Bearer", "Bearer ", "bearer   ", 123, ["Bearer x"], {"token": "x"}, True]:
            result = await client.call_tool("create_task", {"title": "Should not exist"}, meta={AUTH: value})
            text = assert_unauthenticated(result, case=value)
            assert AUTH in text, value
        assert await titles(client, valid) == []
        fallback = await client.call_tool("create_task", {"title": "Launch token"})  # no key: launch token
        assert not fallback.is_error, text_of(fallback)
        assert await titles(client, valid) == ["Launch token"]


async def test_no_token_at_all_is_unauthenticated_with_guidance(app, tmp_path):
    (tmp_path / "empty").write_text("\n")
    for settings in [{}, {"token": ""}, {"token": "   "}, {"token_file": tmp_path / "empty"}]:
        async with connect(sibling(app, **settings)) as client:
            for tool, arguments in [("list_tasks", {}), ("create_task", {"title": "T"})]:
                text = assert_unauthenticated(await client.call_tool(tool, arguments), case=settings)
                assert "TASK_MCP_TOKEN" in text and "_meta" in text, settings


# --- the token file -------------------------------------------------------------------------------


async def test_the_token_file_is_read_again_when_it_changes(make_app, mint, signing_key, jwks, tmp_path):
    token_file = tmp_path / "token"
    expired = bad_tokens(signing_key, jwks.base_url, sub="alice")["expired"]
    token_file.write_text(expired + "\n")
    alice, bob = mint("alice"), mint("bob")
    async with connect(make_app(token_file=token_file)) as client:
        first = await client.call_tool("create_task", {"title": "First try"})
        assert "expired" in assert_unauthenticated(first, expired)

        token_file.write_text(f"Bearer {alice}\n")  # refreshed in place, as `echo > file` does
        second = await client.call_tool("create_task", {"title": "Second try"})
        assert not second.is_error, text_of(second)

        replacement = tmp_path / "token.new"
        replacement.write_text(bob)
        replacement.replace(token_file)  # refreshed by an atomic rename
        third = await client.call_tool("create_task", {"title": "Bob's"})
        assert not third.is_error, text_of(third)

        assert await titles(client, alice) == ["Second try"]
        assert await titles(client, bob) == ["Bob's"]


async def test_a_missing_token_file_is_unauthenticated_but_the_tools_are_listed(make_app, mint, tmp_path):
    token_file = tmp_path / "not-yet" / "token"
    async with connect(make_app(token_file=token_file)) as client:
        tools = (await client.list_tools()).tools
        assert len(tools) == 15
        text = assert_unauthenticated(await client.call_tool("list_tasks", {}))
        assert "TASK_MCP_TOKEN" in text

        token_file.parent.mkdir()
        token_file.write_text(mint("alice"))  # the file appears later: no restart needed
        result = await client.call_tool("list_tasks", {})
        assert not result.is_error, text_of(result)

        token_file.unlink()  # and when it goes away again, so does the identity
        assert_unauthenticated(await client.call_tool("list_tasks", {}))


# --- a launch token is checked on every call ------------------------------------------------------


async def test_a_launch_token_valid_at_start_is_rejected_once_it_expires(make_app, mint):
    app = make_app(leeway_seconds=0)
    async with connect(app) as client:
        assert await titles(client, mint("alice")) == []  # the JWKS is fetched and cached by now
    lifetime = 2
    while True:  # a loaded machine may need longer than the token lives to make one call: try longer ones
        token = mint("alice", lifetime=lifetime)  # exp is in whole seconds: lives lifetime - 1 to lifetime s
        async with connect(sibling(app, token=token)) as client:
            fresh = await client.call_tool("create_task", {"title": "While valid"})
        if not fresh.is_error:
            break
        assert "expired" in text_of(fresh) and lifetime < 64, text_of(fresh)
        lifetime *= 2
    expires_at = jwt.decode(token, options={"verify_signature": False})["exp"]
    async with connect(sibling(app, token=token)) as client:
        await anyio.sleep(max(0.0, expires_at - time.time()) + 0.2)

        for tool, arguments in [("create_task", {"title": "Too late"}), ("list_tasks", {})]:
            text = assert_unauthenticated(await client.call_tool(tool, arguments), token)
            assert "expired" in text
        assert await titles(client, mint("alice")) == ["While valid"]


async def test_an_expired_launch_token_still_lets_the_client_list_the_tools(make_app, signing_key, jwks):
    expired = bad_tokens(signing_key, jwks.base_url, sub="alice")["expired"]
    async with connect(make_app(token=expired)) as client:
        assert len((await client.list_tools()).tools) == 15
        text = assert_unauthenticated(await client.call_tool("list_tasks", {}), expired)
        assert "has expired" in text


# --- sub: a string of 1 to 255 characters --------------------------------------------------------


async def test_a_sub_over_255_characters_is_unauthenticated_and_never_reaches_the_database(app, mint, database_url):
    too_long, longest = "u" * 256, "u" * 255
    async with connect(app) as client:
        for tool, arguments in [("create_task", {"title": "Too long a user"}), ("list_tasks", {})]:
            result = await client.call_tool(tool, arguments, meta={AUTH: f"Bearer {mint(too_long)}"})
            assert "longer than 255 characters" in assert_unauthenticated(result), tool
        created = await client.call_tool("create_task", {"title": "Longest user"}, meta={AUTH: mint(longest)})
        assert not created.is_error, text_of(created)
        assert await titles(client, mint(longest)) == ["Longest user"]
    assert rows(database_url, "SELECT title FROM tasks") == [("Longest user",)]


async def test_a_non_string_sub_is_unauthenticated(app, signing_key, jwks):
    async with connect(app) as client:
        for sub in (42, ["alice"], {"id": "alice"}, None):
            claims = {**claims_for(jwks.base_url), "sub": sub}
            token = signing_key.sign({k: v for k, v in claims.items() if v is not None})
            result = await client.call_tool("list_tasks", {}, meta={AUTH: token})
            assert_unauthenticated(result, token, sub)
