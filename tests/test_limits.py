"""Inputs at the edges answer `invalid_argument`, never `internal` (DESIGN §11, §12), the text search
agrees on both databases, an in-memory SQLite database survives concurrent calls, and a database
error never logs the SQL parameters. SQLite and PostgreSQL; service calls and a real MCP client.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from mcp import Client
from pydantic import ValidationError
from sqlalchemy import text

from task_mcp.db import Database, migrate
from task_mcp.models import TaskCreate, TaskQuery, TaskUpdate
from task_mcp.server import TaskMcp
from task_mcp.service import TaskService
from tests.helpers import connect

AUTH = "task-mcp/authorization"

OUT_OF_RANGE_DUES = [
    "0001-01-01T00:00:00+01:00",  # year 0 in UTC
    "9999-12-31T23:59:59-01:00",  # year 10000 in UTC
    "0001-01-01",  # its start in Asia/Tokyo is in year 0
    "9999-12-31",  # its end in Pacific/Kiritimati is in year 10000
]


class Caller:
    def __init__(self, client: Client, token: str) -> None:
        self.client, self.token = client, token

    async def answer(self, tool: str, **arguments: Any) -> tuple[bool, str, dict[str, Any] | None]:
        result = await self.client.call_tool(tool, arguments, meta={AUTH: f"Bearer {self.token}"})
        return result.is_error, result.content[0].text, result.structured_content

    async def ok(self, tool: str, **arguments: Any) -> dict[str, Any]:
        error, text, structured = await self.answer(tool, **arguments)
        assert not error and structured is not None, text
        return structured

    async def fails(self, tool: str, code: str, **arguments: Any) -> str:
        error, text, _ = await self.answer(tool, **arguments)
        assert error and text.startswith(f"{code}: "), text
        return text


@pytest.fixture
def alice(app: TaskMcp, mint: Callable[..., str]) -> Callable[[], Any]:
    @asynccontextmanager
    async def open_alice() -> AsyncIterator[Caller]:
        async with connect(app) as client:
            yield Caller(client, mint("alice"))

    return open_alice


@pytest.fixture
def service(database_url: str) -> Any:
    database = Database(database_url)
    yield TaskService(database, purge_every=None)
    database.dispose()


def no_errors_logged(caplog: pytest.LogCaptureFixture) -> None:
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


# --- dates (D9) -----------------------------------------------------------------------------------


@pytest.mark.parametrize("due", OUT_OF_RANGE_DUES)
def test_a_due_outside_what_every_zone_can_convert_is_refused_by_the_input_shapes(due: str) -> None:
    for build in (lambda: TaskCreate(title="x", due=due), lambda: TaskUpdate(due=due)):
        with pytest.raises(ValidationError, match="outside the dates"):
            build()
    with pytest.raises(ValidationError, match="outside the dates"):
        TaskQuery(due_before=due)


@pytest.mark.anyio
async def test_out_of_range_dates_and_zone_directories_are_invalid_argument_through_mcp(
    alice: Any, caplog: pytest.LogCaptureFixture
) -> None:
    async with alice() as user:
        await user.ok("create_task", title="Dated", due="2030-01-01")
        for due in OUT_OF_RANGE_DUES:
            await user.fails("create_task", "invalid_argument", title="Far", due=due)
            await user.fails("update_task", "invalid_argument", task_id=1, due=due)
            await user.fails("create_tasks", "invalid_argument", tasks=[{"title": "Far", "due": due}])
        for bound in ("due_before", "due_after"):
            await user.fails("list_tasks", "invalid_argument", **{bound: "9999-12-31"})
            page = await user.ok("list_tasks", **{bound: "9999-12-30"}, timezone="Pacific/Kiritimati")
            assert page["total"] == (1 if bound == "due_before" else 0)
        for zone in ("America", "Europe", "Etc", "right", "posix/Europe", "../zoneinfo/UTC", "/etc/localtime", "."):
            message = await user.fails("list_tasks", "invalid_argument", timezone=zone)
            assert "timezone" in message and "IANA" in message
        # The edges that every zone can convert still work.
        await user.ok("create_task", title="Early", due="0001-01-02")
        await user.ok("create_task", title="Late", due="9999-12-30T23:59:59Z")
    no_errors_logged(caplog)


@pytest.mark.anyio
async def test_an_edited_due_cursor_out_of_range_is_invalid_argument(
    alice: Any, caplog: pytest.LogCaptureFixture
) -> None:
    async with alice() as user:
        await user.ok("create_tasks", tasks=[{"title": "a", "due": "2030-01-01"}, {"title": "b", "due": "2030-01-02"}])
        for sort in ("due", "created", "updated"):
            cursor = (await user.ok("list_tasks", sort=sort, limit=1))["next_cursor"]
            data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
            for key in ("9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00"):
                data["k"] = key
                edited = base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")
                message = await user.fails("list_tasks", "invalid_argument", sort=sort, limit=1, cursor=edited)
                assert "cursor" in message
    no_errors_logged(caplog)


@pytest.mark.parametrize("stored", ["0001-01-01", "9999-12-31"])
def test_a_stored_due_at_the_calendars_ends_does_not_break_sorting_by_due_in_any_zone(
    service: TaskService, stored: str
) -> None:
    # Older versions accepted these dues: a list must still work, whatever the zone.
    service.create_tasks("alice", [TaskCreate(title="Edge"), TaskCreate(title="Soon", due="2030-01-01")])
    day = f"DATE '{stored}'" if service._db.dialect == "postgresql" else f"'{stored}'"
    service._db.run(lambda c: c.execute(text(f"UPDATE tasks SET due_date = {day} WHERE number = 1")), write=True)
    for zone in ("Asia/Tokyo", "Pacific/Kiritimati", "Pacific/Pago_Pago", "UTC"):
        query: dict[str, Any] = {"sort": "due", "limit": 1, "timezone": zone}
        seen, cursor = [], None
        for _ in range(5):
            page = service.list_tasks("alice", TaskQuery(**query, cursor=cursor))
            seen += [t.id for t in page.tasks]
            if (cursor := page.next_cursor) is None:
                break
        assert seen == ([1, 2] if stored.startswith("0001") else [2, 1]), zone
        assert service.get_task("alice", 1).due == stored


# --- tags (D10) -----------------------------------------------------------------------------------


def test_a_tag_counts_its_40_characters_after_lower_casing(service: TaskService) -> None:
    with pytest.raises(ValidationError, match="40 characters once lower-cased"):
        TaskCreate(title="x", tags=["İ" * 40])  # 80 characters once lower-cased
    with pytest.raises(ValidationError, match="40 characters once lower-cased"):
        TaskUpdate(tags=["İ" * 21])
    task, _ = service.create_task("alice", TaskCreate(title="x", tags=["İ" * 20, "É" * 40]))
    assert task.tags == ["i̇" * 20, "é" * 40]  # exactly 40 each: stored on PostgreSQL's varchar(40) too
    assert service.list_tasks("alice", TaskQuery(tags=["İ" * 20])).total == 1


@pytest.mark.anyio
async def test_an_overlong_lower_cased_tag_is_invalid_argument_through_mcp(
    alice: Any, caplog: pytest.LogCaptureFixture
) -> None:
    async with alice() as user:
        await user.fails("create_task", "invalid_argument", title="x", tags=["İ" * 40])
        await user.ok("create_task", title="x")
        message = await user.fails("update_task", "invalid_argument", task_id=1, tags=["İ" * 40])
        assert "tags" in message
        assert (await user.ok("get_task", task_id=1))["task"]["tags"] == []
    no_errors_logged(caplog)


# --- text search on both databases ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("search", "expected"),
    [
        ("istanbul", [1]),
        ("İSTANBUL", [1]),
        ("İstanbul", [1]),
        ("école", [2, 3]),
        ("ÉCOLE", [2, 3]),
        ("strasse", [4]),
        ("STRAẞE", [4]),
        ("ΣΟΦΊΑ", [5]),
        ("100%", [6]),
        ("a_b", [6]),
        ("ecole", []),  # case-insensitive, not accent-insensitive
    ],
)
def test_text_search_folds_case_the_same_way_on_every_database(
    service: TaskService, search: str, expected: list[int]
) -> None:
    service.create_tasks(
        "alice",
        [
            TaskCreate(title="Trip to İstanbul"),
            TaskCreate(title="École maternelle"),
            TaskCreate(title="Pick up", description="from the ÉCOLE at four"),
            TaskCreate(title="Hauptstraße 5"),
            TaskCreate(title="Call σοφία"),
            TaskCreate(title="Discount 100% on a_b"),
            TaskCreate(title="Nothing special", description="100 percent, ab"),
        ],
    )
    found = service.list_tasks("alice", TaskQuery(text=search, sort="created"))
    assert sorted(t.id for t in found.tasks) == expected


def test_text_search_follows_edits_of_title_and_description(service: TaskService) -> None:
    service.create_task("alice", TaskCreate(title="Old title", description="Old notes"))
    service.update_task("alice", 1, TaskUpdate(title="Fête", description="Ärger"))
    assert service.list_tasks("alice", TaskQuery(text="FÊTE")).total == 1
    assert service.list_tasks("alice", TaskQuery(text="ärger")).total == 1
    assert service.list_tasks("alice", TaskQuery(text="old")).total == 0
    service.update_task("alice", 1, TaskUpdate(clear=["description"]))
    assert service.list_tasks("alice", TaskQuery(text="ärger")).total == 0


# --- in-memory SQLite under concurrency (D3) ------------------------------------------------------


def test_an_in_memory_database_serves_30_concurrent_callers_without_losing_anything() -> None:
    database = Database("sqlite:///:memory:")
    migrate(database)
    service = TaskService(database, purge_every=None)
    failures: list[BaseException] = []
    start = threading.Barrier(30)

    def caller(n: int) -> None:
        try:
            start.wait()
            for i in range(10):
                service.create_task(f"user-{n % 3}", TaskCreate(title=f"Task {n}-{i}", tags=["load"]))
                service.list_tasks(f"user-{n % 3}", TaskQuery(tags=["load"], limit=5))
            service.update_task(f"user-{n % 3}", 1, TaskUpdate(title=f"Renamed by caller {n}"))
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=caller, args=(n,)) for n in range(30)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert failures == []
        for user in ("user-0", "user-1", "user-2"):
            page = service.list_tasks(user, TaskQuery(status="all", limit=100))
            assert page.total == 100
            assert len({t.id for t in page.tasks}) == 100 and max(t.id for t in page.tasks) == 100
            assert service.get_task(user, 1).version == 11  # ten updates, each counted once
    finally:
        database.dispose()


# --- database errors keep their parameters out of the log (D11) -----------------------------------


@pytest.mark.anyio
async def test_an_unexpected_database_error_logs_no_sql_parameters(
    app: TaskMcp, alice: Any, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    if database_url.startswith("sqlite"):
        trigger = [
            "CREATE TRIGGER refuse BEFORE INSERT ON task_tags BEGIN SELECT RAISE(ABORT, 'refused by trigger'); END"
        ]
        drop = "DROP TRIGGER refuse"
    else:
        trigger = [
            "CREATE OR REPLACE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'refused by trigger'; END $$",
            "CREATE TRIGGER refuse BEFORE INSERT ON task_tags FOR EACH ROW EXECUTE FUNCTION refuse()",
        ]
        drop = "DROP FUNCTION refuse() CASCADE"

    def install(conn: Any) -> None:
        for statement in trigger:
            conn.execute(text(statement))

    app.database.run(install, write=True)
    try:
        with caplog.at_level(logging.DEBUG):
            async with alice() as user:
                message = await user.fails(
                    "create_task", "internal", title="Secret title 7731", tags=["secret-tag-7731"]
                )
        assert "nothing was changed" in message
        logged = caplog.text
        assert "refused by trigger" in logged  # the error itself is logged, with its traceback
        assert "INSERT INTO task_tags" in logged
        for secret in ("Secret title 7731", "secret-tag-7731", "alice"):
            assert secret not in logged
            assert secret not in message
    finally:
        app.database.run(lambda conn: conn.execute(text(drop)), write=True)
