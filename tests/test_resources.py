"""Resources (DESIGN §13): the task board linked from list_tasks, and `task://{workspace}/{id}`.

Driven through the SDK's in-memory client with tokens from the Better Auth stand-in; a task read
must answer exactly what `get_task` answers, failures included, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mcp import Client, MCPError
from mcp.types import INVALID_PARAMS

import task_mcp
from task_mcp.errors import InvalidArgumentError
from task_mcp.resources import parse_task_uri
from task_mcp.server import TaskMcp
from task_mcp.testing import JwksServer, SigningKey, bad_tokens
from tests.helpers import Caller, bearer, connect, text

pytestmark = pytest.mark.anyio

BOARD = "ui://task-mcp/board.html"
ACME = {"id": "org-acme", "slug": "acme", "name": "Acme Inc.", "role": "member"}


async def read_json(client: Client, uri: str, token: str) -> Any:
    result = await client.read_resource(uri, meta=bearer(token))
    (content,) = result.contents
    assert content.mime_type == "application/json" and str(content.uri) == uri
    return json.loads(content.text)  # type: ignore[union-attr]


async def read_error(client: Client, uri: str, meta: dict[str, Any] | None) -> MCPError:
    with pytest.raises(MCPError) as failed:
        await client.read_resource(uri, meta=meta)
    return failed.value


async def test_the_board_is_listed_and_reads_as_the_packaged_page(app: TaskMcp) -> None:
    packaged = (Path(task_mcp.__file__).parent / "ui" / "board.html").read_bytes()
    async with connect(app) as client:
        (board,) = (await client.list_resources()).resources
        assert (str(board.uri), board.mime_type) == (BOARD, "text/html;profile=mcp-app")
        (content,) = (await client.read_resource(BOARD)).contents  # a static page: no token needed
        assert content.mime_type == "text/html;profile=mcp-app"
        assert content.text.encode() == packaged  # type: ignore[union-attr]
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        assert tools["list_tasks"].meta == {"ui": {"resourceUri": BOARD}}
        assert all(tool.meta is None for name, tool in tools.items() if name != "list_tasks")
        caps = client.server_capabilities
        assert caps.resources is not None and caps.prompts is not None


async def test_a_task_resource_reads_as_get_task_answers_it(app: TaskMcp, mint: Callable[..., str]) -> None:
    token = mint("alice")
    async with connect(app) as client:
        alice = Caller(client, token)
        await alice.add("Buy milk", priority="high", tags=["home"])
        await alice.ok("add_note", task_id=1, text="semi-skimmed")
        (template,) = (await client.list_resource_templates()).resource_templates
        assert (template.uri_template, template.mime_type) == ("task://{workspace}/{id}", "application/json")
        expected = await alice.ok("get_task", task_id=1)
        assert await read_json(client, "task://personal/1", token) == expected
        assert expected["task"]["notes"][0]["text"] == "semi-skimmed"


async def test_a_read_with_a_bad_missing_or_expired_token_fails_with_get_tasks_text(
    app: TaskMcp, signing_key: SigningKey, jwks: JwksServer, mint: Callable[..., str]
) -> None:
    async with connect(app) as client:
        await Caller(client, mint("alice")).add("Mine")
        tokens: dict[str, str | None] = {"missing": None, **bad_tokens(signing_key, jwks.base_url, sub="alice")}
        for name, token in tokens.items():
            meta = bearer(token) if token is not None else None
            tool = await client.call_tool("get_task", {"task_id": 1}, meta=meta)
            assert tool.is_error and text(tool).startswith("unauthenticated: "), name
            failed = await read_error(client, "task://personal/1", meta)
            assert failed.message == text(tool), name
            assert "Mine" not in failed.message


async def test_another_users_task_is_not_found_like_get_task(app: TaskMcp, mint: Callable[..., str]) -> None:
    async with connect(app) as client:
        await Caller(client, mint("alice")).add("Alice's secret")
        bob = Caller(client, mint("bob"))
        expected = await bob.fails("get_task", "not_found", task_id=1)
        failed = await read_error(client, "task://personal/1", bearer(bob.token))
        assert (failed.code, failed.message) == (INVALID_PARAMS, expected)
        assert "secret" not in failed.message


async def test_an_organization_task_reads_for_members_only(app: TaskMcp, mint: Callable[..., str]) -> None:
    async with connect(app) as client:
        alice = Caller(client, mint("alice", organizations=[ACME]))
        await alice.ok("create_task", title="Ship it", workspace="acme")
        for uri in ("task://acme/1", "task://org-acme/1"):
            assert (await read_json(client, uri, alice.token))["task"]["title"] == "Ship it"
        outsider = Caller(client, mint("olga"))
        expected = await outsider.fails("get_task", "not_found", task_id=1, workspace="acme")
        assert (await read_error(client, "task://acme/1", bearer(outsider.token))).message == expected


@pytest.mark.parametrize(
    "uri", ["task://personal/0", "task://personal/x", "task://personal/", "task:///1", "tasks://personal/1", "nope"]
)
async def test_a_malformed_address_is_invalid_argument_and_says_the_form(
    app: TaskMcp, mint: Callable[..., str], uri: str
) -> None:
    async with connect(app) as client:
        failed = await read_error(client, uri, bearer(mint("alice")))
    assert failed.code == INVALID_PARAMS
    assert failed.message.startswith("invalid_argument: ") and "task://personal/3" in failed.message


async def test_read_only_results_tell_the_board_which_actions_it_may_show(
    make_app: Callable[..., TaskMcp], mint: Callable[..., str]
) -> None:
    token = mint("alice")
    async with connect(make_app()) as client:
        await Caller(client, token).add("Open")
        full = await client.call_tool("list_tasks", {}, meta=bearer(token))
        assert "task-mcp/tools" not in (full.meta or {})  # every board action is offered: nothing added
    async with connect(make_app(read_only=True)) as client:
        limited = await client.call_tool("list_tasks", {}, meta=bearer(token))
        assert (limited.meta or {})["task-mcp/tools"] == []
        assert [t["title"] for t in limited.structured_content["tasks"]] == ["Open"]  # type: ignore[index]
        assert await read_json(client, "task://personal/1", token)  # reading stays possible


async def test_without_the_tasks_toolset_there_is_no_board_and_no_task_resource(
    make_app: Callable[..., TaskMcp], mint: Callable[..., str]
) -> None:
    async with connect(make_app(toolsets="history")) as client:
        assert (await client.list_resources()).resources == []
        assert (await client.list_resource_templates()).resource_templates == []
        failed = await read_error(client, "task://personal/1", bearer(mint("alice")))
        assert failed.message.startswith("forbidden: get_task is not offered")
        assert (await read_error(client, BOARD, None)).message.startswith("invalid_argument: ")


@given(st.text(max_size=60))
@settings(max_examples=300, deadline=None)
def test_any_address_parses_or_is_refused_clearly(uri: str) -> None:
    try:
        workspace, task_id = parse_task_uri(uri)
    except InvalidArgumentError as exc:
        assert "task://{workspace}/{id}" in str(exc)
    else:
        assert workspace and task_id >= 1 and uri.startswith("task://")


@given(st.sampled_from(["personal", "acme", "org%2Dacme"]), st.integers(1, 2**31 - 1))
def test_well_formed_addresses_round_trip(workspace: str, task_id: int) -> None:
    assert parse_task_uri(f"task://{workspace}/{task_id}") == (workspace.replace("%2D", "-"), task_id)
