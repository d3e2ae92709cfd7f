"""The change journal (DESIGN §9) through a real MCP client on both databases: change ids in write
results, list_changes (filters, cursor, summaries, attribution, its context budget), the trash, and
the history purge."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from mcp import Client
from mcp.types import Implementation

from task_mcp.server import TaskMcp
from task_mcp.service import TaskService
from tests.helpers import Caller, Clock, connect, rows

pytestmark = pytest.mark.anyio


async def latest(who: Caller, **query: Any) -> dict[str, Any]:
    return (await who.ok("list_changes", {"limit": 1, **query}))["changes"][0]


async def test_every_write_answers_its_change_id_and_a_call_that_changed_nothing_answers_null(app, mint):
    async with connect(app) as client:
        alice = Caller(client, mint("alice"))
        ids = [
            (await alice.ok("create_task", title="A"))["change_id"],
            (await alice.ok("create_tasks", tasks=[{"title": "B"}, {"title": "C"}]))["change_id"],
            (await alice.ok("update_task", task_id=1, priority="high"))["change_id"],
            (await alice.ok("complete_task", task_id=1))["change_id"],
            (await alice.ok("delete_task", task_id=2))["change_id"],
            (await alice.ok("restore_task", task_id=2))["change_id"],
        ]
        assert ids == [1, 2, 3, 4, 5, 6]
        assert (await alice.ok("update_task", task_id=1, priority="high"))["change_id"] is None
        assert (await alice.ok("complete_task", task_id=1))["change_id"] is None
        assert (await alice.ok("restore_task", task_id=2))["change_id"] is None
        await alice.delete(3)
        assert (await alice.ok("delete_task", task_id=3))["change_id"] is None
        assert [c["change_id"] for c in (await alice.ok("list_changes"))["changes"]] == [7, 6, 5, 4, 3, 2, 1]


async def test_an_idempotency_replay_answers_the_change_id_of_the_call_it_replays(app, mint):
    async with connect(app) as client:
        alice = Caller(client, mint("alice"))
        first = await alice.ok("create_task", title="Once", idempotency_key="k1")
        await alice.add("Other")
        again = await alice.ok("create_task", title="Once", idempotency_key="k1")
        assert again["created"] is False and again["change_id"] == first["change_id"] == 1


async def test_change_ids_are_per_workspace(app, mint):
    orgs = [{"id": "org-acme", "slug": "acme", "role": "member"}]
    async with connect(app) as client:
        alice = Caller(client, mint("alice", organizations=orgs))
        await alice.add("Mine")
        assert (await alice.ok("create_task", title="Shared", workspace="acme"))["change_id"] == 1
        assert (await alice.ok("create_task", title="Mine too"))["change_id"] == 2


SUBJECT = {
    "title": "Subject",
    "description": "Words",
    "priority": "high",
    "due": "2026-12-01",
    "tags": ["home", "work"],
    "parent_id": 1,
}
SUMMARIES = [
    ({"title": "Renamed"}, '#3 title "Subject" → "Renamed"'),
    ({"description": "New words"}, "#3 description changed"),
    ({"clear": ["description"]}, "#3 description cleared"),
    ({"priority": "urgent"}, "#3 priority high → urgent"),
    ({"due": "2027-01-02"}, "#3 due 2026-12-01 → 2027-01-02"),
    ({"due": "2027-01-02T09:30:00+02:00"}, "#3 due 2026-12-01 → 2027-01-02T07:30:00Z"),
    ({"clear": ["due"]}, "#3 due cleared"),
    ({"tags": ["office", "home"]}, "#3 tags +office \u2212work"),
    ({"status": "completed"}, "completed #3"),
    ({"parent_id": 2}, "#3 parent #1 → #2"),
    ({"clear": ["parent_id"]}, "#3 parent cleared"),
    ({"assignee": "me"}, "#3 assignee → alice"),
    ({"priority": "urgent", "clear": ["due"]}, "#3 priority high → urgent; due cleared"),
    ({"title": "x" * 200}, '#3 title "Subject" → "' + "x" * 29 + '…"'),
]


@pytest.mark.parametrize(("changes", "summary"), SUMMARIES, ids=[s for _, s in SUMMARIES])
async def test_the_summary_of_an_update_reads_right_for_each_field_kind(app, mint, changes, summary):
    async with connect(app) as client:
        alice = Caller(client, mint("alice"))
        await alice.add_many("Parent", "Other")
        await alice.add(**SUBJECT)
        await alice.ok("update_task", {"task_id": 3, **changes})
        change = await latest(alice)
        assert change["summary"] == summary
        assert change["tool"] == "update_task" and change["task_ids"] == [3]


async def test_summaries_of_creates_deletes_restores_reopens_and_undos(app, mint):
    async with connect(app) as client:
        alice = Caller(client, mint("alice"))
        await alice.add("Buy milk")
        assert (await latest(alice))["summary"] == 'created #1 "Buy milk"'
        await alice.add_many(*[f"Step {i}" for i in range(50)])
        assert (await latest(alice))["summary"] == "created 50 tasks #2\u2013#51"
        for child in (2, 3, 4):
            await alice.update(child, parent_id=1)
        await alice.delete(1)
        assert (await latest(alice))["summary"] == "deleted #1 and 3 subtasks"
        await alice.ok("restore_task", task_id=1)
        assert (await latest(alice))["summary"] == "restored #1 and 3 subtasks"
        await alice.complete(5)
        await alice.update(5, status="open")
        assert (await latest(alice))["summary"] == "reopened #5"
        change = await latest(alice)
        await alice.ok("undo_change", change_id=change["change_id"])
        assert (await latest(alice))["summary"] == f"undo of change {change['change_id']}: completed #5"
        long = await alice.add("y" * 200)
        assert len((await latest(alice, task_id=long["id"]))["summary"]) <= 160


async def test_list_changes_filters_by_task_and_by_author_and_pages_with_a_cursor(app, mint):
    orgs = [{"id": "org-acme", "slug": "acme", "role": "member"}]
    async with connect(app) as client:
        alice = Caller(client, mint("alice", organizations=orgs))
        bob = Caller(client, mint("bob", organizations=orgs))
        await alice.ok("create_task", title="A", workspace="acme")
        await bob.ok("create_task", title="B", workspace="acme")
        for priority in ("low", "medium", "high"):
            await alice.ok("update_task", task_id=1, priority=priority, workspace="acme")
        await bob.ok("update_task", task_id=2, priority="low", workspace="acme")
        on_one = await alice.ok("list_changes", task_id=1, workspace="acme")
        assert [c["change_id"] for c in on_one["changes"]] == [5, 4, 3, 1]
        mine = await alice.ok("list_changes", by="me", workspace="acme")
        assert [c["change_id"] for c in mine["changes"]] == [5, 4, 3, 1]
        theirs = await alice.ok("list_changes", by="bob", workspace="acme")
        assert [c["change_id"] for c in theirs["changes"]] == [6, 2]
        seen: list[int] = []
        cursor = None
        while True:
            page = await alice.ok(
                "list_changes", {"limit": 4, "workspace": "acme"} | ({"cursor": cursor} if cursor else {})
            )
            seen += [c["change_id"] for c in page["changes"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == [6, 5, 4, 3, 2, 1]
        text = await alice.fails(
            "list_changes",
            "invalid_argument",
            task_id=2,
            cursor=on_one["next_cursor"] or "eyJ4IjoxfQ",
            workspace="acme",
        )
        assert "cursor" in text
        # Personal changes are nobody else's.
        assert (await bob.ok("list_changes"))["changes"] == []


async def test_by_names_the_user_and_the_client_from_the_token_or_else_from_client_info(app: TaskMcp, mint):
    async with connect(app) as client:
        alice = Caller(client, mint("alice", name="Alice", azp="cursor-agent"))
        await alice.add("From an OAuth client")
        assert (await latest(alice))["by"] == {"user_id": "alice", "name": "Alice", "client": "cursor-agent"}
    for mode in ("auto", "legacy"):
        info = Implementation(name="claude-code", version="1.0")
        async with Client(app.build_server(), mode=mode, client_info=info) as client:  # type: ignore[arg-type]
            alice = Caller(client, mint("alice"))
            await alice.add(f"From {mode}")
            by = (await latest(alice))["by"]
            assert (by["user_id"], by["client"]) == ("alice", "claude-code"), mode


async def test_a_page_of_twenty_changes_fits_the_context_budget_one_line_per_change(app, mint):
    # DESIGN §4's fixture: changes touching one task, titles of 30-60 characters, 3 tags.
    async with connect(app) as client:
        alice = Caller(client, mint("alice", name="Alice Example", azp="claude-desktop"))
        await alice.add("Draft the quarterly finance report for reviews", tags=["work", "finance", "plan"])
        for i in range(25):
            changes = [
                {"title": f"Draft section {i:02d} of the quarterly finance report for reviews"},
                {"priority": ["low", "high", "urgent"][i % 3], "due": f"2026-12-{i + 1:02d}"},
                {"tags": ["work", "finance", f"q{i}"]},
            ][i % 3]
            await alice.ok("update_task", {"task_id": 1, **changes})
        page = await alice.call("list_changes", limit=20)
    assert page.structured_content is not None
    changes = page.structured_content["changes"]
    text = page.content[0].text  # type: ignore[union-attr]
    assert len(changes) == 20 and page.structured_content["next_cursor"]
    size = len(json.dumps(page.structured_content, separators=(",", ":")).encode()) + len(text.encode())
    assert size <= 6_000
    lines = text.splitlines()
    assert lines[0].startswith("Alice Example via claude-desktop, 20")  # one heading for the run
    change_lines = lines[1:-1]  # then a line per change, and the cursor
    assert [line.split()[0] for line in change_lines] == [str(c["change_id"]) for c in changes]
    assert all(c["summary"] in line for c, line in zip(changes, change_lines, strict=True))


async def test_the_trash_lists_deleted_tasks_newest_deletion_first_and_all_never_includes_them(make_app, mint):
    clock = Clock(dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC))
    app = make_app()
    app.service = TaskService(app.database, retention_days=30, clock=clock)
    async with connect(app) as client:
        alice = Caller(client, mint("alice"))
        await alice.add_many("One", "Two", "Three", "Four")
        for task_id in (2, 1, 3):
            clock.advance(minutes=1)
            await alice.delete(task_id)
        trash = await alice.page(status="deleted", limit=2)
        assert [t["id"] for t in trash["tasks"]] == [3, 1] and trash["total"] == 3
        assert trash["tasks"][0]["deleted_at"] == "2026-03-01T12:03:00Z"
        rest = await alice.page(status="deleted", limit=2, cursor=trash["next_cursor"])
        assert [t["id"] for t in rest["tasks"]] == [2]
        by_id = await alice.page(status="deleted", sort="created")
        assert [t["id"] for t in by_id["tasks"]] == [3, 2, 1]
        assert await alice.ids(status="all") == [4]
        assert "deleted_at" not in await alice.task(4)
        clock.advance(days=31)  # past retention: no longer restorable, so not in the trash
        assert (await alice.page(status="deleted"))["tasks"] == []


async def test_history_is_purged_after_history_days_and_with_purged_tasks(make_app, mint, database_url):
    clock = Clock(dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC))
    app = make_app()
    app.service = TaskService(app.database, retention_days=30, history_days=90, clock=clock, purge_every=None)
    async with connect(app) as client:
        alice = Caller(client, mint("alice"))
        old = await alice.ok("create_task", title="Old")
        await alice.add("Deleted")
        await alice.delete(2)
        clock.advance(days=60)
        recent = await alice.ok("update_task", task_id=1, title="Recent")
        app.service.purge_deleted()  # task 2 is purged (30 days), and every change that touched it
        assert [c["change_id"] for c in (await alice.ok("list_changes"))["changes"]] == [recent["change_id"], 1]
        clock.advance(days=40)  # change 1 is now older than 90 days
        await alice.fails("undo_change", "not_found", change_id=old["change_id"])
        app.service.purge_deleted()
        assert [c["change_id"] for c in (await alice.ok("list_changes"))["changes"]] == [recent["change_id"]]
    assert rows(database_url, "SELECT change_id FROM change_tasks ORDER BY 1") == [(recent["change_id"],)]
