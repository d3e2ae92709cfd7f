"""The top-level mcp.json, as a user copies it into their IDE, launches a working server."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, StdioServerParameters

from task_mcp.testing import JwksServer

MCP_JSON = Path(__file__).parent.parent / "mcp.json"


@pytest.mark.anyio
async def test_the_mcp_json_entry_launches_a_server_that_manages_the_users_tasks(
    jwks: JwksServer, mint: Callable[..., str], tmp_path: Path
) -> None:
    entry = json.loads(MCP_JSON.read_text())["mcpServers"]["tasks"]
    token_file = tmp_path / "token"
    token_file.write_text(mint("alice") + "\n")
    # The user's own values in place of the examples; nothing else is added but a home directory,
    # so the database lands where a user's would: the default data directory.
    env = dict(entry["env"])
    env["TASK_MCP_BETTER_AUTH_URL"] = jwks.base_url
    env["TASK_MCP_TOKEN_FILE"] = str(token_file)
    env["HOME"] = str(tmp_path / "home")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    command = shutil.which(entry["command"], path=env["PATH"])
    assert command, f"{entry['command']} is not installed next to {sys.executable}"

    params = StdioServerParameters(command=command, args=entry["args"], env=env)
    async with Client(params, read_timeout_seconds=20) as client:  # type: ignore[arg-type]

        async def call(name: str, **arguments: Any) -> dict[str, Any]:
            result = await client.call_tool(name, arguments)
            assert not result.is_error, result.content
            assert result.structured_content is not None
            return result.structured_content

        task = (await call("create_task", title="Renew the passport", due="2026-12-20"))["task"]
        await call("update_task", task_id=task["id"], priority="high")
        assert (await call("complete_task", task_id=task["id"]))["task"]["status"] == "completed"
        await call("delete_task", task_id=task["id"])
        assert (await call("list_tasks", status="all"))["total"] == 0
        restored = (await call("restore_task", task_id=task["id"]))["task"]
        listed = await call("list_tasks", status="all")
    assert restored["priority"] == "high" and restored["version"] == 5
    assert [t["title"] for t in listed["tasks"]] == ["Renew the passport"]
    assert list((tmp_path / "home").rglob("tasks.db")), "the default SQLite file is in the user's data directory"
