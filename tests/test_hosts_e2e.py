"""Prompts and resources over the real transports: `task-mcp serve` on stdio and on Streamable
HTTP, driven by the Python SDK's clients and by the TypeScript SDK (`tests/board/client_check.mjs`).

Each test starts its own server on a fresh SQLite file, trusting the conftest JWKS on loopback.
The TypeScript checks need `npm ci --prefix tests/board` (CI installs it).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client, MCPError, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

import task_mcp
from task_mcp.testing import JwksServer
from tests.helpers import SERVE, bearer, ok, server_env, text

BOARD_DIR = Path(__file__).parent / "board"
CHECK = BOARD_DIR / "client_check.mjs"
PACKAGED_BOARD = Path(task_mcp.__file__).parent / "ui" / "board.html"
needs_node = pytest.mark.skipif(
    not (BOARD_DIR / "node_modules" / "@modelcontextprotocol" / "sdk").is_dir() or shutil.which("node") is None,
    reason="the TypeScript SDK is not installed: run `npm ci --prefix tests/board` (needs Node)",
)


def clean_env(env: dict[str, str]) -> dict[str, str]:
    """This process's environment without any TASK_MCP_* of the shell, plus `env`."""
    return {k: v for k, v in os.environ.items() if not k.startswith("TASK_MCP_")} | env


@contextmanager
def http_server(env: dict[str, str]) -> Iterator[str]:
    """`task-mcp serve --transport http` on a free loopback port; yields its /mcp URL once healthy."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [*SERVE, "--transport", "http", "--port", str(port)]
    proc = subprocess.Popen(command, env=clean_env(env), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(600):
            try:
                if httpx2.get(url + "/healthz", timeout=5).status_code == 200:
                    break
            except httpx2.TransportError:
                pass
            assert proc.poll() is None, proc.communicate()[1]
            time.sleep(0.05)
        yield url + "/mcp"
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=15)


@asynccontextmanager
async def http_client(url: str, token: str) -> AsyncIterator[Client]:
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=30) as http,
        Client(streamable_http_client(url, http_client=http), read_timeout_seconds=30) as client,  # type: ignore[arg-type]
    ):
        yield client


def run_check(env: dict[str, str]) -> dict[str, Any]:
    done = subprocess.run(
        ["node", str(CHECK)], env=clean_env(env), capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def assert_check(seen: dict[str, Any]) -> None:
    """What a TypeScript host sees: the same prompts, template, task and board as the Python client."""
    assert {"prompts", "resources", "tools"} <= set(seen["capabilities"])
    assert seen["prompts"] == [
        {"name": "plan_my_day", "arguments": ["timezone", "workspace"]},
        {"name": "weekly_review", "arguments": ["workspace"]},
        {"name": "triage", "arguments": ["workspace"]},
    ]
    ((message),) = seen["prompt"]
    assert message["role"] == "user" and "'Europe/Paris'" in message["text"]
    assert seen["templates"] == [{"uriTemplate": "task://{workspace}/{id}", "mimeType": "application/json"}]
    assert seen["resources"] == [{"uri": "ui://task-mcp/board.html", "mimeType": "text/html;profile=mcp-app"}]
    assert seen["listTasksMeta"]["ui"] == {"resourceUri": "ui://task-mcp/board.html"}
    task_id = seen["created"]["task"]["id"]
    ((read),) = seen["task"]
    assert (read["uri"], read["mimeType"]) == (f"task://personal/{task_id}", "application/json")
    assert read["json"]["workspace"] == "personal"
    assert read["json"]["task"]["title"] == "Read me as a resource"
    assert seen["missing"]["code"] == -32602
    assert seen["missing"]["message"].endswith(
        "not_found: No task 999 in your list. Call list_tasks to see your task ids."
    )
    assert seen["board"]["mimeType"] == "text/html;profile=mcp-app"
    assert seen["board"]["length"] == len(PACKAGED_BOARD.read_text(encoding="utf-8"))


@pytest.mark.anyio
async def test_stdio_serves_prompts_the_board_and_task_resources_with_the_launch_token(
    jwks: JwksServer, mint: Callable[..., str], tmp_path: Path
) -> None:
    env = server_env(jwks, tmp_path, TASK_MCP_TOKEN=mint("alice"))
    params = StdioServerParameters(command=SERVE[0], args=SERVE[1:], env=env)
    async with Client(params, read_timeout_seconds=20) as client:  # type: ignore[arg-type]
        assert [p.name for p in (await client.list_prompts()).prompts] == ["plan_my_day", "weekly_review", "triage"]
        assert "list_changes" in (await client.get_prompt("weekly_review")).messages[0].content.text  # type: ignore[union-attr]
        ok(await client.call_tool("create_task", {"title": "Launch-token task"}))
        (content,) = (await client.read_resource("task://personal/1")).contents
        assert json.loads(content.text)["task"]["title"] == "Launch-token task"  # type: ignore[union-attr]
        (board,) = (await client.read_resource("ui://task-mcp/board.html")).contents
        assert board.text.encode() == PACKAGED_BOARD.read_bytes()  # type: ignore[union-attr]
        # A request `_meta` token wins over the launch token, and a bad one never falls back to it.
        garbage = bearer("not-a-jwt")
        expected = text(await client.call_tool("get_task", {"task_id": 1}, meta=garbage))
        with pytest.raises(MCPError) as failed:
            await client.read_resource("task://personal/1", meta=garbage)
        assert failed.value.message == expected and expected.startswith("unauthenticated: ")


@pytest.mark.anyio
async def test_stdio_read_only_hides_triage_and_tells_the_board(
    jwks: JwksServer, mint: Callable[..., str], tmp_path: Path
) -> None:
    env = server_env(jwks, tmp_path, TASK_MCP_TOKEN=mint("alice"), TASK_MCP_READ_ONLY="true")
    params = StdioServerParameters(command=SERVE[0], args=SERVE[1:], env=env)
    async with Client(params, read_timeout_seconds=20) as client:  # type: ignore[arg-type]
        assert [p.name for p in (await client.list_prompts()).prompts] == ["plan_my_day", "weekly_review"]
        listed = await client.call_tool("list_tasks", {})
        assert (listed.meta or {})["task-mcp/tools"] == []


@pytest.mark.anyio
async def test_http_reads_task_resources_with_the_bearer_token_only(
    jwks: JwksServer, mint: Callable[..., str], tmp_path: Path
) -> None:
    alice, bob = mint("alice"), mint("bob")
    with http_server(server_env(jwks, tmp_path)) as url:
        async with http_client(url, alice) as client:
            ok(await client.call_tool("create_task", {"title": "Over HTTP"}))
            (content,) = (await client.read_resource("task://personal/1")).contents
            assert json.loads(content.text)["task"]["title"] == "Over HTTP"  # type: ignore[union-attr]
            assert len((await client.list_prompts()).prompts) == 3
        async with http_client(url, bob) as client:
            expected = text(await client.call_tool("get_task", {"task_id": 1}))
            with pytest.raises(MCPError) as failed:
                await client.read_resource("task://personal/1", meta=bearer(alice))  # _meta is ignored over HTTP
            assert failed.value.message == expected and expected.startswith("not_found: ")


@needs_node
def test_the_typescript_sdk_sees_prompts_and_resources_over_stdio(
    jwks: JwksServer, mint: Callable[..., str], tmp_path: Path
) -> None:
    env = server_env(jwks, tmp_path, TASK_MCP_CHECK_COMMAND=json.dumps(SERVE), TASK_MCP_CHECK_TOKEN=mint("alice"))
    assert_check(run_check(env))


@needs_node
def test_the_typescript_sdk_sees_prompts_and_resources_over_http(
    jwks: JwksServer, mint: Callable[..., str], tmp_path: Path
) -> None:
    with http_server(server_env(jwks, tmp_path)) as url:
        assert_check(run_check({"TASK_MCP_CHECK_URL": url, "TASK_MCP_CHECK_TOKEN": mint("alice")}))
