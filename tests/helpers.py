"""What many test modules share: MCP clients, reading tool results, reading the database.

Fixtures live in conftest.py; plain functions and classes live here, so that test modules import
them from one place instead of from conftest or from each other. The Better Auth stand-in (keys,
JWKS, tokens) is `task_mcp.testing`.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from mcp import Client
from mcp.types import CallToolResult
from sqlalchemy import text as sql_text

from task_mcp.credentials import META_KEY
from task_mcp.db import Database
from task_mcp.server import TaskMcp

POSTGRES_URL = os.environ.get("TASK_MCP_TEST_POSTGRES_URL")
TABLES = (
    "tasks, task_tags, task_counters, idempotency_keys, workspace_members, changes, change_tasks, task_links, "
    "task_notes, tag_counts"
)
READ_SCOPE, WRITE_SCOPE = "tasks:read", "tasks:write"


@asynccontextmanager
async def connect(app: TaskMcp, mode: str = "auto") -> AsyncIterator[Client]:
    """The SDK's in-memory client, connected to `app`'s MCP server."""
    async with Client(app.build_server(), mode=mode) as client:  # type: ignore[arg-type]
        yield client


def rows(url: str, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    """What a SQL query finds in the database at `url`, read on a connection of its own."""
    database = Database(url)
    try:
        with database.engine.connect() as conn:
            return [tuple(row) for row in conn.execute(sql_text(sql), params)]
    finally:
        database.dispose()


def bearer(token: str) -> dict[str, Any]:
    """The request `_meta` that carries `token` for one call."""
    return {META_KEY: f"Bearer {token}"}


def text(result: CallToolResult) -> str:
    """The text a model reads in a tool result."""
    return "\n".join(c.text for c in result.content if c.type == "text")


def ok(result: CallToolResult) -> dict[str, Any]:
    """The structured content of a successful tool result."""
    assert not result.is_error, text(result)
    assert result.structured_content is not None
    return result.structured_content


def error(result: CallToolResult, code: str) -> str:
    """The text of a tool error whose code is `code`."""
    assert result.is_error, result.structured_content
    assert text(result).startswith(f"{code}: "), text(result)
    return text(result)


@dataclass
class Caller:
    """One user on a shared MCP session: every call carries that user's token in `_meta`.

    Arguments go either as one dict (`alice.ok("list_tasks", {"status": "all"})`) or as keywords
    (`alice.ok("get_task", task_id=1)`).
    """

    client: Client
    token: str

    async def call(self, tool: str, arguments: dict[str, Any] | None = None, /, **more: Any) -> CallToolResult:
        return await self.client.call_tool(tool, {**(arguments or {}), **more}, meta=bearer(self.token))

    async def ok(self, tool: str, arguments: dict[str, Any] | None = None, /, **more: Any) -> dict[str, Any]:
        return ok(await self.call(tool, arguments, **more))

    async def fails(self, tool: str, code: str, arguments: dict[str, Any] | None = None, /, **more: Any) -> str:
        """The error text of a call that must fail with `code`."""
        return error(await self.call(tool, arguments, **more), code)

    async def error(self, tool: str, arguments: dict[str, Any] | None = None, /, **more: Any) -> str:
        """The error text of a call that must fail, whatever its code."""
        result = await self.call(tool, arguments, **more)
        assert result.is_error, result.structured_content
        return text(result)

    # --- one tool each ----------------------------------------------------------------------------

    async def task(self, task_id: int) -> dict[str, Any]:
        return (await self.ok("get_task", task_id=task_id))["task"]

    async def fields(self, task_id: int) -> dict[str, Any]:
        """get_task's task without `notes` and `notes_total`: the task as a write answers it."""
        task = await self.task(task_id)
        return {k: v for k, v in task.items() if k not in ("notes", "notes_total")}

    async def create(self, n: int, **fields: Any) -> dict[str, Any]:
        """Task number `n` made with deterministic arguments (`new_task`)."""
        return (await self.ok("create_task", new_task(n, **fields)))["task"]

    async def add(self, title: str, **fields: Any) -> dict[str, Any]:
        return (await self.ok("create_task", {"title": title, **fields}))["task"]

    async def add_many(self, *items: str | dict[str, Any]) -> list[dict[str, Any]]:
        tasks = [{"title": item} if isinstance(item, str) else item for item in items]
        return (await self.ok("create_tasks", {"tasks": tasks}))["tasks"]

    async def update(self, task_id: int, **changes: Any) -> dict[str, Any]:
        return (await self.ok("update_task", {"task_id": task_id, **changes}))["task"]

    async def complete(self, task_id: int) -> None:
        await self.ok("complete_task", {"task_id": task_id})

    async def delete(self, task_id: int) -> None:
        await self.ok("delete_task", {"task_id": task_id})

    async def page(self, **query: Any) -> dict[str, Any]:
        """One `list_tasks` answer."""
        return await self.ok("list_tasks", query)

    async def ids(self, **query: Any) -> list[int]:
        """The ids on one `list_tasks` page, in the order the server gives them."""
        return [task["id"] for task in (await self.page(**query))["tasks"]]

    async def all_ids(self) -> list[int]:
        """The ids of every live task (open or completed), sorted."""
        return sorted(await self.ids(status="all", limit=100))

    async def total(self) -> int:
        """How many live tasks (open or completed) the user has."""
        return int((await self.page(status="all"))["total"])

    async def list_error(self, **query: Any) -> str:
        return await self.error("list_tasks", query)


def new_task(n: int, **fields: Any) -> dict[str, Any]:
    """The arguments of a deterministic task number `n`."""
    return {"title": f"Task {n}", **fields}


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += dt.timedelta(**delta)
