"""TASK_MCP_TOOLSETS and TASK_MCP_READ_ONLY decide which tools are offered (DESIGN §4)."""

from __future__ import annotations

import pytest

from task_mcp.config import load_settings
from task_mcp.errors import ConfigError
from tests.helpers import Caller, connect

pytestmark = pytest.mark.anyio


async def test_only_the_tasks_toolset_is_offered_and_a_call_to_another_says_why(make_app, mint):
    app = make_app(toolsets=("tasks",))
    async with connect(app) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert "list_workspaces" not in names and "list_tasks" in names
        text = await Caller(client, mint("alice")).fails("list_workspaces", "forbidden")
        assert "toolset 'workspaces'" in text and "TASK_MCP_TOOLSETS" in text


async def test_read_only_removes_the_write_tools_from_whatever_toolsets_are_offered(make_app, mint):
    app = make_app(toolsets=("workspaces", "history", "agents"), read_only=True)
    async with connect(app) as client:
        assert [t.name for t in (await client.list_tools()).tools] == ["list_workspaces", "list_changes"]
        text = await Caller(client, mint("alice")).fails("create_task", "forbidden", title="x")
        assert "toolset 'tasks'" in text


def test_toolsets_read_from_the_environment_as_a_comma_list(monkeypatch):
    monkeypatch.setenv("TASK_MCP_TOOLSETS", "workspaces, tasks")
    assert load_settings().offered_toolsets == ("tasks", "workspaces")
    monkeypatch.setenv("TASK_MCP_TOOLSETS", "tasks,history,agents")
    assert load_settings().offered_toolsets == ("tasks", "history", "agents")
    monkeypatch.delenv("TASK_MCP_TOOLSETS")
    assert load_settings().offered_toolsets == ("tasks", "workspaces", "history", "agents")


def test_an_unknown_toolset_fails_at_start_up_naming_the_valid_ones(monkeypatch):
    monkeypatch.setenv("TASK_MCP_TOOLSETS", "tasks,calendar")
    with pytest.raises(ConfigError) as failure:
        load_settings()
    message = str(failure.value)
    assert message.startswith("TASK_MCP_TOOLSETS")
    assert all(name in message for name in ("'tasks'", "'workspaces'", "'history'", "'agents'"))
