"""Prompts (DESIGN §13): plan_my_day, weekly_review and triage, as a host lists and gets them.

Driven through the SDK's in-memory client; a prompt needs no token and holds no data, and the
prompts a server lists follow TASK_MCP_READ_ONLY and TASK_MCP_TOOLSETS.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mcp import MCPError
from mcp.types import INVALID_PARAMS

from task_mcp.errors import TaskMcpError
from task_mcp.prompts import PROMPTS, get_prompt
from task_mcp.server import TaskMcp
from task_mcp.tools import TOOLS
from tests.helpers import Caller, connect

pytestmark = pytest.mark.anyio

ALL = ["plan_my_day", "weekly_review", "triage"]


async def listed(app: TaskMcp) -> list[str]:
    async with connect(app) as client:
        return [p.name for p in (await client.list_prompts()).prompts]


async def test_the_three_prompts_are_listed_with_their_optional_arguments(app: TaskMcp) -> None:
    async with connect(app) as client:
        prompts = {p.name: p for p in (await client.list_prompts()).prompts}
    assert list(prompts) == ALL
    arguments = {name: [(a.name, bool(a.required)) for a in p.arguments or []] for name, p in prompts.items()}
    assert arguments == {
        "plan_my_day": [("timezone", False), ("workspace", False)],
        "weekly_review": [("workspace", False)],
        "triage": [("workspace", False)],
    }
    assert all(p.title and p.description for p in prompts.values())


async def test_plan_my_day_is_one_user_message_naming_the_tools_and_the_arguments(app: TaskMcp) -> None:
    async with connect(app) as client:
        result = await client.get_prompt("plan_my_day", {"timezone": "Europe/Paris", "workspace": "acme"})
        default = await client.get_prompt("plan_my_day")
    (message,) = result.messages
    assert message.role == "user" and message.content.type == "text"
    words = message.content.text  # type: ignore[union-attr]
    assert "list_tasks" in words and "overdue: true" in words
    assert "'Europe/Paris'" in words and "'acme'" in words
    (plain,) = default.messages
    assert "'UTC'" in plain.content.text and "'personal'" in plain.content.text  # type: ignore[union-attr]


async def test_each_prompt_is_small_and_names_only_offered_tools(app: TaskMcp, mint: Callable[..., str]) -> None:
    names = {t.name for t in TOOLS}
    async with connect(app) as client:
        await Caller(client, mint("alice")).add("A task title that must not leak into prompts")
        for name in ALL:
            (message,) = (await client.get_prompt(name)).messages
            words = message.content.text  # type: ignore[union-attr]
            assert len(words.encode()) < 1000, name
            assert "must not leak" not in words  # no data inside
            mentioned = {w.strip(".,:()") for w in words.split()} & names
            spec = next(p for p in PROMPTS if p.name == name)
            assert mentioned == set(spec.needs), name


@pytest.mark.parametrize(
    ("overrides", "shown"),
    [
        ({}, ALL),
        ({"read_only": True}, ["plan_my_day", "weekly_review"]),
        ({"toolsets": "tasks"}, ["plan_my_day", "triage"]),
        ({"toolsets": "tasks", "read_only": True}, ["plan_my_day"]),
        ({"toolsets": "workspaces,history"}, []),
    ],
)
async def test_a_prompt_needing_a_tool_not_offered_is_not_listed(
    make_app: Callable[..., TaskMcp], overrides: dict[str, object], shown: list[str]
) -> None:
    assert await listed(make_app(**overrides)) == shown


async def test_getting_a_hidden_prompt_is_an_error_that_says_why(make_app: Callable[..., TaskMcp]) -> None:
    async with connect(make_app(read_only=True)) as client:
        with pytest.raises(MCPError) as failed:
            await client.get_prompt("triage")
    assert failed.value.message.startswith("forbidden: The prompt triage needs update_task")
    assert "TASK_MCP_READ_ONLY" in failed.value.message


@pytest.mark.parametrize(
    ("name", "arguments", "says"),
    [
        ("make_coffee", None, "invalid_argument: There is no prompt named 'make_coffee'. Prompts offered here:"),
        ("plan_my_day", {"timezone": "Mars/Olympus"}, "invalid_argument: timezone: is not an IANA time zone"),
        ("triage", {"timezone": "UTC"}, "invalid_argument: The prompt triage takes no argument 'timezone'"),
        ("weekly_review", {"workspace": "x" * 300}, "invalid_argument: workspace: "),
    ],
)
async def test_bad_prompt_requests_get_a_clear_invalid_params_error(
    app: TaskMcp, name: str, arguments: dict[str, str] | None, says: str
) -> None:
    async with connect(app) as client:
        with pytest.raises(MCPError) as failed:
            await client.get_prompt(name, arguments)
    assert failed.value.code == INVALID_PARAMS
    assert failed.value.message.startswith(says), failed.value.message


async def test_an_empty_argument_from_a_host_form_means_the_default(app: TaskMcp) -> None:
    async with connect(app) as client:
        result = await client.get_prompt("weekly_review", {"workspace": ""})
    assert "'personal'" in result.messages[0].content.text  # type: ignore[union-attr]


OFFERED = {s.name for s in TOOLS}


@given(
    st.sampled_from(ALL),
    st.dictionaries(st.sampled_from(["workspace", "timezone", "other"]), st.text(max_size=80), max_size=3),
)
@settings(max_examples=200, deadline=None)
def test_any_arguments_give_a_message_or_a_clear_error(name: str, arguments: dict[str, str]) -> None:
    try:
        result = get_prompt(name, arguments, OFFERED)
    except TaskMcpError as exc:
        assert str(exc).startswith("invalid_argument: ")
    else:
        assert len(result.messages) == 1
