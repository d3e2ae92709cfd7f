"""The agent tools (DESIGN §10) through the SDK's in-memory `mcp.Client`, on SQLite and PostgreSQL:
roles on add_note, claim_task, release_task and update_tasks, releasing without a claim_id, the
size of a get_task with notes, update_tasks' dry run, and a claim that finds nothing."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from task_mcp.server import TaskMcp
from tests.helpers import Caller, connect, text

pytestmark = pytest.mark.anyio

ACME = {"id": "org-acme", "slug": "acme", "name": "Acme Inc."}


@asynccontextmanager
async def team(app: TaskMcp, mint: Callable[..., str], **roles: str) -> AsyncIterator[dict[str, Caller]]:
    """One `Caller` per keyword, with that role in Acme, all on one MCP session."""
    async with connect(app) as client:
        yield {name: Caller(client, mint(name, organizations=[{**ACME, "role": role}])) for name, role in roles.items()}


def size(answer: Any) -> int:
    """Bytes a model reads of one result: structured content plus its text."""
    return len(json.dumps(answer.structured_content, separators=(",", ":")).encode()) + len(text(answer).encode())


async def test_every_agent_tool_works_end_to_end_for_a_member(app, mint):
    async with team(app, mint, bob="member") as p:
        bob = p["bob"]
        first = await bob.ok("create_task", title="Write the plan", workspace="acme")
        await bob.ok("create_task", title="Do the plan", workspace="acme", blocked_by=[first["task"]["id"]])
        ready = await bob.ok("list_tasks", workspace="acme", ready=True)
        assert [t["id"] for t in ready["tasks"]] == [1]
        claimed = await bob.ok("claim_task", workspace="acme")
        assert claimed["task"]["id"] == 1 and claimed["change_id"] is not None
        assert claimed["claim"]["claim_id"] and claimed["claim"]["holder"]["user_id"] == "bob"
        noted = await bob.ok("add_note", workspace="acme", task_id=1, text="Outline drafted.")
        assert noted["task_id"] == 1 and noted["note"]["text"] == "Outline drafted." and noted["change_id"]
        released = await bob.ok(
            "release_task", workspace="acme", task_id=1, claim_id=claimed["claim"]["claim_id"], outcome="completed"
        )
        assert released["task"]["status"] == "completed" and released["task"]["claim"] is None
        updated = await bob.ok("update_tasks", workspace="acme", updates=[{"task_id": 2, "priority": "high"}])
        assert [(t["id"], t["priority"]) for t in updated["tasks"]] == [(2, "high")] and updated["dry_run"] is False
        assert [t["id"] for t in (await bob.ok("list_tasks", workspace="acme", ready=True))["tasks"]] == [2]


async def test_a_viewer_is_forbidden_on_every_agent_write(app, mint):
    async with team(app, mint, alice="owner", vic="viewer") as p:
        await p["alice"].ok("create_task", title="Shared", workspace="acme")
        vic = p["vic"]
        calls: list[tuple[str, dict[str, Any]]] = [
            ("add_note", {"task_id": 1, "text": "seen it"}),
            ("claim_task", {"task_id": 1}),
            ("claim_task", {}),
            ("release_task", {"task_id": 1}),
            ("update_tasks", {"updates": [{"task_id": 1, "title": "Mine now"}]}),
            ("update_tasks", {"updates": [{"task_id": 1, "title": "Mine now"}], "dry_run": True}),
        ]
        for tool, arguments in calls:
            await vic.fails(tool, "forbidden", {**arguments, "workspace": "acme"})
        task = (await p["alice"].ok("get_task", task_id=1, workspace="acme"))["task"]
        assert task["title"] == "Shared" and task["claim"] is None and task["notes_total"] == 0


async def test_release_without_claim_id_by_the_holders_user_or_an_admin_but_not_another_member(app, mint):
    async with team(app, mint, alice="admin", bob="member", carol="member") as p:
        alice, bob, carol = p["alice"], p["bob"], p["carol"]
        for title in ("One", "Two"):
            await alice.ok("create_task", title=title, workspace="acme")
        for task_id in (1, 2):
            await bob.ok("claim_task", task_id=task_id, workspace="acme")

        refused = await carol.fails("release_task", "forbidden", task_id=1, workspace="acme")
        assert "claim_id" in refused
        assert (await carol.ok("get_task", task_id=1, workspace="acme"))["task"]["claim"]["holder"]["user_id"] == "bob"

        # The holder's own user, even from another session that lost the claim_id.
        again = Caller(bob.client, mint("bob", organizations=[{**ACME, "role": "member"}]))
        assert (await again.ok("release_task", task_id=1, workspace="acme"))["task"]["claim"] is None
        # An admin may release anyone's claim, completing the task and leaving a note in one change.
        released = await alice.ok(
            "release_task", task_id=2, outcome="completed", note="Done by hand.", workspace="acme"
        )
        assert released["task"]["status"] == "completed" and released["task"]["claim"] is None
        task = (await alice.ok("get_task", task_id=2, workspace="acme"))["task"]
        assert [n["text"] for n in task["notes"]] == ["Done by hand."]
        await carol.fails("release_task", "conflict", task_id=1, workspace="acme")  # nothing left to release


async def test_get_task_with_twenty_notes_fits_the_budget_and_a_long_note_is_clipped(app, mint):
    async with team(app, mint, bob="member") as p:
        bob = p["bob"]
        # DESIGN §4's fixture: a title of 30-60 characters, 3 tags, a description and notes of 200.
        await bob.ok(
            "create_task",
            title="Reconcile the ledger export with the bank statement",
            description="Numbers from the ledger export; ask Sam for the Q3 comparison. " * 3 + "x" * 11,
            tags=["work", "finance", "planning"],
            due="2026-12-01T16:00:00Z",
            priority="high",
        )
        for i in range(25):
            note = f"Step {i:02d}: " + "checked the totals against the statement and found them in line. " * 3
            await bob.ok("add_note", task_id=1, text=note[:200])
        answer = await bob.call("get_task", task_id=1)
        task = answer.structured_content["task"]
        assert len(task["notes"]) == 20 and task["notes_total"] == 25
        assert task["notes"][0]["text"].startswith("Step 24")  # newest first
        assert task["notes"][0]["by"]["user_id"] == "bob" and all("by" not in n for n in task["notes"][1:])
        assert size(answer) <= 6_000, size(answer)

        await bob.ok("add_note", task_id=1, text="y" * 600)
        newest = (await bob.task(1))["notes"][0]
        assert newest["text"] == "y" * 500 and newest["truncated"] is True
        assert "truncated" not in (await bob.task(1))["notes"][1]


async def test_a_dry_run_answers_what_the_real_update_tasks_answers_refusals_included(app, mint):
    async with team(app, mint, bob="member") as p:
        bob = p["bob"]
        await bob.add_many("Design", "Build", "Ship")
        updates = [
            {"task_id": 2, "blocked_by": [1], "priority": "high", "tags": ["release"]},
            {"task_id": 3, "blocked_by": [2], "expected_version": 1, "due": "2026-12-01"},
        ]
        dry = await bob.ok("update_tasks", updates=updates, dry_run=True)
        assert dry["change_id"] is None and dry["dry_run"] is True
        assert [(await bob.task(n))["version"] for n in (2, 3)] == [1, 1]  # nothing changed
        real = await bob.ok("update_tasks", updates=updates)
        assert real["change_id"] is not None and real["dry_run"] is False

        def same(answer: dict[str, Any]) -> dict[str, Any]:
            return {k: v for k, v in answer.items() if k not in ("change_id", "dry_run")}

        assert same(dry) == same(real)
        assert [t["blocked_by"] for t in real["tasks"]] == [[1], [2]] and real["tasks"][1]["version"] == 2

        # A refusal is the same refusal either way, naming the item, and changes nothing.
        bad = [{"task_id": 1, "title": "Design v2"}, {"task_id": 1 + 1, "expected_version": 1}]
        refused_dry = await bob.fails("update_tasks", "conflict", updates=bad, dry_run=True)
        refused = await bob.fails("update_tasks", "conflict", updates=bad)
        assert refused_dry == refused and "updates[1]" in refused
        cycle = [{"task_id": 1, "blocked_by": [3]}]
        assert await bob.fails("update_tasks", "invalid_argument", updates=cycle, dry_run=True) == await bob.fails(
            "update_tasks", "invalid_argument", updates=cycle
        )
        assert (await bob.task(1))["title"] == "Design"


async def test_item_arguments_are_checked_and_named_though_the_schema_describes_them_in_words(app, mint):
    async with team(app, mint, bob="member") as p:
        bob = p["bob"]
        await bob.add("Only")
        wrong_field = await bob.fails("update_tasks", "invalid_argument", updates=[{"task_id": 1, "titel": "x"}])
        assert wrong_field.startswith("invalid_argument: updates[0].titel: is not a field these items take")
        blank = await bob.fails(
            "update_tasks", "invalid_argument", updates=[{"task_id": 1}, {"task_id": 1, "title": " "}]
        )
        assert blank.startswith("invalid_argument: updates[1].title")
        not_an_object = await bob.fails("update_tasks", "invalid_argument", updates=["1"])
        assert not_an_object.startswith("invalid_argument: updates[0]")
        missing = await bob.fails("create_tasks", "invalid_argument", tasks=[{"title": "ok"}, {"due": "2026-12-01"}])
        assert missing.startswith("invalid_argument: tasks[1].title")
        assert (await bob.task(1))["title"] == "Only"


async def test_claim_task_without_a_task_id_answers_nulls_when_none_is_ready(app, mint):
    async with team(app, mint, bob="member") as p:
        bob = p["bob"]
        empty = await bob.call("claim_task", {})
        assert not empty.is_error
        assert empty.structured_content == {"workspace": "personal", "change_id": None, "task": None, "claim": None}
        assert "no ready task" in text(empty)
        await bob.add("Blocker")
        await bob.add("Blocked", blocked_by=[1])
        await bob.complete(1)
        await bob.ok("claim_task", task_id=2)  # the only open task, now claimed
        again = await bob.ok("claim_task", {})
        assert again["task"] is None and again["claim"] is None and again["change_id"] is None
