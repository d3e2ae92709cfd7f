"""The `task-mcp` command as a user runs it: a real process, a real SQLite file, a real MCP client."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from alembic import command
from mcp import Client, StdioServerParameters

from task_mcp.db import Database, alembic_config, head_revision
from task_mcp.testing import JwksServer
from tests.helpers import bearer, ok, rows

TASK_MCP = str(Path(sys.executable).with_name("task-mcp"))  # the console script `pip install` made
COMMANDS = {"task-mcp": [TASK_MCP], "python -m task_mcp": [sys.executable, "-m", "task_mcp"]}
# What the SDK's stdio client passes on; the processes here get the same, never TASK_MCP_* from the shell.
SAFE_ENV = ("LOGNAME", "PATH", "SHELL", "TERM", "USER")


def environment(tmp_path: Path, **variables: str) -> dict[str, str]:
    """A clean environment whose HOME is a temp folder, so no default data directory is touched."""
    return {k: os.environ[k] for k in SAFE_ENV if k in os.environ} | {"HOME": str(tmp_path / "home"), **variables}


def run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


def schema(path: Path) -> list[tuple[object, ...]]:
    return rows(f"sqlite:///{path}", "SELECT type, name, sql FROM sqlite_master ORDER BY type, name")


@pytest.mark.parametrize("launcher", COMMANDS)
def test_migrate_creates_the_schema_of_a_new_sqlite_file_and_says_where(tmp_path, launcher):
    path = tmp_path / "new" / "tasks.db"
    path.parent.mkdir()
    url = f"sqlite:///{path}"

    done = run([*COMMANDS[launcher], "migrate"], environment(tmp_path, TASK_MCP_DATABASE_URL=url))

    assert done.returncode == 0, done.stderr
    assert str(path) in done.stdout
    assert rows(url, "SELECT version_num FROM alembic_version") == [(head_revision(),)]
    tables = {name for kind, name, _ in schema(path) if kind == "table"}
    assert {"tasks", "task_tags", "task_counters", "idempotency_keys"} <= tables


def test_migrate_on_the_newest_schema_changes_nothing(tmp_path):
    path = tmp_path / "tasks.db"
    env = environment(tmp_path, TASK_MCP_DATABASE_URL=f"sqlite:///{path}")
    assert run([TASK_MCP, "migrate"], env).returncode == 0
    before = schema(path)
    rows_before = rows(f"sqlite:///{path}", "SELECT count(*) FROM alembic_version")

    again = run([TASK_MCP, "migrate"], env)

    assert again.returncode == 0, again.stderr
    assert str(path) in again.stdout
    assert schema(path) == before
    assert rows(f"sqlite:///{path}", "SELECT count(*) FROM alembic_version") == rows_before == [(1,)]


def test_migrate_upgrades_an_older_schema_to_the_newest(tmp_path):
    path = tmp_path / "tasks.db"
    url = f"sqlite:///{path}"
    database = Database(url)
    try:
        command.upgrade(alembic_config(database), "0001")
    finally:
        database.dispose()
    assert rows(url, "SELECT version_num FROM alembic_version") == [("0001",)]

    done = run([TASK_MCP, "migrate"], environment(tmp_path, TASK_MCP_DATABASE_URL=url))

    assert done.returncode == 0, done.stderr
    assert rows(url, "SELECT version_num FROM alembic_version") == [(head_revision(),)]


@pytest.mark.anyio
@pytest.mark.parametrize("launcher", COMMANDS)
async def test_the_command_without_a_subcommand_serves_mcp_over_stdio(
    tmp_path: Path, jwks: JwksServer, mint: Callable[..., str], launcher: str
) -> None:
    argv = COMMANDS[launcher]
    env = environment(
        tmp_path,
        TASK_MCP_DATABASE_URL=f"sqlite:///{tmp_path / 'tasks.db'}",
        TASK_MCP_BETTER_AUTH_URL=jwks.base_url,
        TASK_MCP_LOG_LEVEL="WARNING",
    )
    params = StdioServerParameters(command=argv[0], args=argv[1:], env=env)
    async with Client(params, read_timeout_seconds=30) as client:  # type: ignore[arg-type]
        names = {tool.name for tool in (await client.list_tools()).tools}
        created = ok(await client.call_tool("create_task", {"title": "Buy milk"}, meta=bearer(mint("alice"))))
        listed = ok(await client.call_tool("list_tasks", {}, meta=bearer(mint("alice"))))

    assert {"list_tasks", "create_task", "restore_task"} <= names
    assert created["task"]["title"] == "Buy milk"
    assert [task["title"] for task in listed["tasks"]] == ["Buy milk"]
    assert (tmp_path / "tasks.db").exists()  # it migrated the new file before serving
