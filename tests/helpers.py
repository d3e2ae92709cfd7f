"""What many test modules share: MCP clients, reading tool results, reading the database.

Fixtures live in conftest.py; plain functions and classes live here, so that test modules import
them from one place instead of from conftest or from each other. The Better Auth stand-in (keys,
JWKS, tokens) is `task_mcp.testing`.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mcp import Client
from mcp.types import CallToolResult
from sqlalchemy import text as sql_text

from task_mcp.credentials import META_KEY
from task_mcp.db import Database
from task_mcp.server import TaskMcp
from task_mcp.testing import JwksServer

POSTGRES_URL = os.environ.get("TASK_MCP_TEST_POSTGRES_URL")
TABLES = (
    "tasks, task_tags, task_counters, idempotency_keys, workspace_members, changes, change_tasks, task_links, "
    "task_notes, tag_counts"
)
READ_SCOPE, WRITE_SCOPE = "tasks:read", "tasks:write"
# What `repeat` accepts (DESIGN §11) and the RRULE each is stored and shown as.
REPEAT_PHRASES = [
    ("daily", "FREQ=DAILY"),
    ("every day", "FREQ=DAILY"),
    ("weekdays", "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR"),
    ("weekly", "FREQ=WEEKLY"),
    ("every week", "FREQ=WEEKLY"),
    ("monthly", "FREQ=MONTHLY"),
    ("every month", "FREQ=MONTHLY"),
    ("yearly", "FREQ=YEARLY"),
    ("every year", "FREQ=YEARLY"),
    ("every 3 days", "FREQ=DAILY;INTERVAL=3"),
    ("every 2 weeks", "FREQ=WEEKLY;INTERVAL=2"),
    ("every 6 months", "FREQ=MONTHLY;INTERVAL=6"),
    ("every 1 year", "FREQ=YEARLY"),
    ("every 999 years", "FREQ=YEARLY;INTERVAL=999"),
    ("every monday", "FREQ=WEEKLY;BYDAY=MO"),
    ("Every  SUNDAY", "FREQ=WEEKLY;BYDAY=SU"),
    ("every tue", "FREQ=WEEKLY;BYDAY=TU"),
    ("every thursday and monday", "FREQ=WEEKLY;BYDAY=MO,TH"),
    ("every mon, wed and fri", "FREQ=WEEKLY;BYDAY=MO,WE,FR"),
    ("every monday, wednesday, and saturday", "FREQ=WEEKLY;BYDAY=MO,WE,SA"),
    ("FREQ=WEEKLY;BYDAY=MO,TH", "FREQ=WEEKLY;BYDAY=MO,TH"),
    ("RRULE:freq=weekly;byday=th,mo;interval=02", "FREQ=WEEKLY;INTERVAL=2;BYDAY=MO,TH"),
    ("BYDAY=MO;FREQ=WEEKLY;INTERVAL=1", "FREQ=WEEKLY;BYDAY=MO"),
    ("FREQ=MONTHLY;BYDAY=-1FR", "FREQ=MONTHLY;BYDAY=-1FR"),
    ("FREQ=MONTHLY;COUNT=3;BYMONTHDAY=31", "FREQ=MONTHLY;COUNT=3;BYMONTHDAY=31"),
    ("FREQ=YEARLY;BYMONTH=12;UNTIL=20301231", "FREQ=YEARLY;UNTIL=20301231;BYMONTH=12"),
    ("FREQ=DAILY;UNTIL=20301231T170000Z", "FREQ=DAILY;UNTIL=20301231T170000Z"),
    ("Every Day", "FREQ=DAILY"),
    ("WEEKDAYS", "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR"),
    ("every Friday", "FREQ=WEEKLY;BYDAY=FR"),
    ("every tuesday and thursday", "FREQ=WEEKLY;BYDAY=TU,TH"),
    ("every monday, wednesday and friday", "FREQ=WEEKLY;BYDAY=MO,WE,FR"),
    ("freq=monthly;bymonthday=31", "FREQ=MONTHLY;BYMONTHDAY=31"),
    ("FREQ=DAILY;COUNT=3", "FREQ=DAILY;COUNT=3"),
    ("FREQ=YEARLY;UNTIL=20301231", "FREQ=YEARLY;UNTIL=20301231"),
]
SERVE = [sys.executable, "-m", "task_mcp", "serve"]  # the server as a subprocess, as mcp.json launches it


def server_env(jwks: JwksServer, tmp_path: Path, **extra: str) -> dict[str, str]:
    """What a `task-mcp serve` subprocess is given: a fresh SQLite file, the test JWKS, quiet logs."""
    return {
        "TASK_MCP_DATABASE_URL": f"sqlite:///{tmp_path / 'tasks.db'}",
        "TASK_MCP_BETTER_AUTH_URL": jwks.base_url,
        "TASK_MCP_LOG_LEVEL": "WARNING",
        **extra,
    }


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
