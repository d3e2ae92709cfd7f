"""`task-mcp serve` as a real stdio subprocess, driven by the MCP SDK's client or by raw JSON-RPC.

Each test starts its own server on a fresh SQLite file, trusting the conftest JWKS on loopback.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, StdioServerParameters

from task_mcp.credentials import META_KEY
from task_mcp.testing import JwksServer
from tests.helpers import SERVE, error, ok, server_env

TOOLS = {
    "list_tasks", "get_task", "create_task", "create_tasks",
    "update_task", "complete_task", "delete_task", "restore_task", "list_workspaces",
    "list_changes", "undo_change", "update_tasks", "add_note", "claim_task", "release_task",
}  # fmt: skip
# One well-formed call per tool: without a usable token, each must answer `unauthenticated`.
CALLS: list[tuple[str, dict[str, Any]]] = [
    ("list_tasks", {}),
    ("get_task", {"task_id": 1}),
    ("create_task", {"title": "x"}),
    ("create_tasks", {"tasks": [{"title": "x"}]}),
    ("update_task", {"task_id": 1, "title": "y"}),
    ("complete_task", {"task_id": 1}),
    ("delete_task", {"task_id": 1}),
    ("restore_task", {"task_id": 1}),
    ("list_workspaces", {}),
    ("list_changes", {}),
    ("undo_change", {"change_id": 1}),
    ("update_tasks", {"updates": [{"task_id": 1, "title": "y"}]}),
    ("add_note", {"task_id": 1, "text": "x"}),
    ("claim_task", {}),
    ("release_task", {"task_id": 1}),
]
# What the SDK's stdio client passes on; raw subprocesses here get the same, never TASK_MCP_* from the shell.
SAFE_ENV = ("HOME", "LOGNAME", "PATH", "SHELL", "TERM", "USER")


def raw_env(env: dict[str, str]) -> dict[str, str]:
    return {k: os.environ[k] for k in SAFE_ENV if k in os.environ} | env


@asynccontextmanager
async def stdio(env: dict[str, str], mode: str = "auto") -> AsyncIterator[Client]:
    params = StdioServerParameters(command=SERVE[0], args=SERVE[1:], env=env)
    async with Client(params, mode=mode, read_timeout_seconds=20) as client:  # type: ignore[arg-type]
        yield client


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_launch_token_drives_every_tool(
    jwks: JwksServer, mint: Callable[..., str], tmp_path: Path, mode: str
) -> None:
    async with stdio(server_env(jwks, tmp_path, TASK_MCP_TOKEN=mint("user-alice")), mode) as client:
        assert {tool.name for tool in (await client.list_tools()).tools} == TOOLS

        args = {"title": "Plan the offsite", "priority": "high", "due": "2030-01-15", "tags": ["Work"]}
        parent = ok(await client.call_tool("create_task", args))["task"]
        assert (parent["id"], parent["priority"], parent["due"], parent["tags"]) == (1, "high", "2030-01-15", ["work"])
        child = ok(await client.call_tool("create_task", {"title": "Book a venue", "parent_id": 1}))["task"]
        assert (child["id"], child["parent_id"]) == (2, 1)
        many = ok(await client.call_tool("create_tasks", {"tasks": [{"title": "Milk"}, {"title": "Bread"}]}))
        assert [t["id"] for t in many["tasks"]] == [3, 4]
        assert ok(await client.call_tool("list_tasks", {}))["total"] == 4

        updated = ok(await client.call_tool("update_task", {"task_id": 2, "title": "Book it", "expected_version": 1}))
        assert (updated["task"]["title"], updated["task"]["version"]) == ("Book it", 2)
        assert ok(await client.call_tool("complete_task", {"task_id": 2}))["task"]["status"] == "completed"

        assert ok(await client.call_tool("delete_task", {"task_id": 1})) == {
            "workspace": "personal",
            "change_id": 6,
            "task_id": 1,
            "deleted": True,
        }
        remaining = ok(await client.call_tool("list_tasks", {"status": "all"}))["tasks"]
        assert sorted(t["id"] for t in remaining) == [3, 4]  # the subtask went with its parent
        error(await client.call_tool("get_task", {"task_id": 2}), "not_found")

        assert ok(await client.call_tool("restore_task", {"task_id": 1}))["task"]["id"] == 1
        everything = ok(await client.call_tool("list_tasks", {"status": "all"}))["tasks"]
        assert sorted(t["id"] for t in everything) == [1, 2, 3, 4]
        assert ok(await client.call_tool("get_task", {"task_id": 2}))["task"]["status"] == "completed"


@pytest.mark.anyio
async def test_meta_token_of_another_user_sees_none_of_the_launch_users_tasks(
    jwks: JwksServer, mint: Callable[..., str], tmp_path: Path
) -> None:
    bob = {META_KEY: f"Bearer {mint('user-bob')}"}
    async with stdio(server_env(jwks, tmp_path, TASK_MCP_TOKEN=mint("user-alice"))) as client:
        ok(await client.call_tool("create_task", {"title": "Alice's secret"}))

        listed = await client.call_tool("list_tasks", {"status": "all"}, meta=bob)
        assert (ok(listed)["total"], ok(listed)["tasks"]) == (0, [])
        for name, args in CALLS[1:3] + CALLS[4:8]:  # the task tools
            if name != "create_task":
                answer = error(await client.call_tool(name, args, meta=bob), "not_found")
                assert "secret" not in answer
        assert ok(await client.call_tool("create_task", {"title": "Bob's own"}, meta=bob))["task"]["id"] == 1

        mine = ok(await client.call_tool("list_tasks", {"status": "all"}))["tasks"]
        assert [(t["id"], t["title"], t["status"]) for t in mine] == [(1, "Alice's secret", "open")]
        bobs = ok(await client.call_tool("list_tasks", {"status": "all"}, meta=bob))["tasks"]
        assert [t["title"] for t in bobs] == ["Bob's own"]


@pytest.mark.anyio
async def test_without_a_token_the_server_starts_and_every_call_is_unauthenticated(
    jwks: JwksServer, mint: Callable[..., str], tmp_path: Path
) -> None:
    async with stdio(server_env(jwks, tmp_path)) as client:
        assert {tool.name for tool in (await client.list_tools()).tools} == TOOLS
        for name, args in CALLS:
            assert "TASK_MCP_TOKEN" in error(await client.call_tool(name, args), "unauthenticated")
        # Nothing was written, and a request that brings its own token is served.
        alice = {META_KEY: mint("user-alice")}
        assert ok(await client.call_tool("list_tasks", {"status": "all"}, meta=alice))["total"] == 0


@pytest.mark.anyio
async def test_token_file_is_reread_when_it_changes(jwks: JwksServer, mint: Callable[..., str], tmp_path: Path) -> None:
    token_file = tmp_path / "token"

    def replace(content: str) -> None:  # how a refresher should write it: atomically
        staged = tmp_path / "token.new"
        staged.write_text(content)
        os.replace(staged, token_file)

    # An empty TASK_MCP_TOKEN, as in the sample mcp.json, counts as unset.
    env = server_env(jwks, tmp_path, TASK_MCP_TOKEN="", TASK_MCP_TOKEN_FILE=str(token_file))
    async with stdio(env) as client:
        error(await client.call_tool("list_tasks", {}), "unauthenticated")  # no file yet
        replace(mint("user-alice", lifetime=-3600) + "\n")
        assert "expired" in error(await client.call_tool("list_tasks", {}), "unauthenticated")
        replace(mint("user-alice") + "\n")
        ok(await client.call_tool("create_task", {"title": "Alice's"}))
        token_file.write_text(mint("user-bob"))  # rewritten in place this time
        assert ok(await client.call_tool("list_tasks", {}))["total"] == 0
        replace(f"Bearer {mint('user-alice')}\n")
        assert [t["title"] for t in ok(await client.call_tool("list_tasks", {}))["tasks"]] == ["Alice's"]


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("TASK_MCP_ALGORITHMS", "HS256"),
        ("TASK_MCP_LOG_LEVEL", "LOUD"),
        ("TASK_MCP_BETTER_AUTH_URL", "auth.example.com"),
    ],
)
def test_bad_configuration_exits_2_with_one_line(jwks: JwksServer, tmp_path: Path, variable: str, value: str) -> None:
    env = raw_env(server_env(jwks, tmp_path) | {variable: value})
    done = subprocess.run(SERVE, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"task-mcp: error: {variable}: ")
    assert not (tmp_path / "tasks.db").exists()  # refused before touching anything


def json_rpc(line: str) -> dict[str, Any]:
    try:
        message = json.loads(line)
    except ValueError:
        message = None
    assert isinstance(message, dict) and message.get("jsonrpc") == "2.0", f"not JSON-RPC on stdout: {line!r}"
    return message


def test_stdout_carries_only_json_rpc_and_logs_go_to_stderr(
    jwks: JwksServer, mint: Callable[..., str], tmp_path: Path
) -> None:
    env = raw_env(server_env(jwks, tmp_path, TASK_MCP_TOKEN=mint("user-alice"), TASK_MCP_LOG_LEVEL="DEBUG"))

    def call(id: int, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        return {"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": tool, "arguments": arguments}}

    hello = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}
    requests = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": hello},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
        call(3, "create_task", {"title": "x"}),
        call(4, "get_task", {"task_id": 9}),
    ]
    with subprocess.Popen(
        SERVE, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        try:
            assert proc.stdin and proc.stdout and proc.stderr
            answers = []
            for request in requests:  # one at a time, so every answer is in before stdin closes
                proc.stdin.write(json.dumps(request) + "\n")
                proc.stdin.flush()
                if "id" in request:
                    answers.append(json_rpc(proc.stdout.readline()))
            proc.stdin.close()
            rest, stderr = proc.stdout.read(), proc.stderr.read()
            assert proc.wait(timeout=10) == 0
        finally:
            proc.kill()

    assert rest == ""  # nothing else on stdout, not even after the session
    assert [a["id"] for a in answers] == [1, 2, 3, 4]
    assert all("result" in a for a in answers), answers
    assert answers[0]["result"]["serverInfo"]["name"] == "task-mcp"
    assert {tool["name"] for tool in answers[1]["result"]["tools"]} == TOOLS
    assert answers[2]["result"]["structuredContent"]["task"]["id"] == 1
    assert answers[3]["result"]["isError"] is True
    assert " DEBUG task_mcp." in stderr  # the logs are there, on stderr
    assert "Traceback" not in stderr
