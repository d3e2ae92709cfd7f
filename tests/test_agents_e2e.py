"""Agents working through one list (DESIGN §10), with real parts.

- Two agents, each a real `task-mcp serve` subprocess driven over stdio by the SDK's client under
  its own `clientInfo.name`, share an organization's workspace and work through a small plan with
  dependencies: each loops claim_task (no task id) → add_note → release_task (completed, with a
  note). The journal must then say who (user and client) did what, in order.
- Dependencies and the ready queue, a cycle refused by update_tasks, update_tasks all or nothing,
  and a dry run that answers exactly what the real call answers, refusals included, through the
  in-memory client on SQLite and PostgreSQL.
"""

from __future__ import annotations

import re
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from mcp import Client, StdioServerParameters
from mcp.types import Implementation

from task_mcp.server import TaskMcp
from task_mcp.testing import JwksServer
from tests.helpers import Caller, connect, ok, text

pytestmark = pytest.mark.anyio

ACME = {"id": "org-acme", "slug": "acme", "name": "Acme"}


# --- two agents over stdio ------------------------------------------------------------------------


@asynccontextmanager
async def stdio_agent(database_url: str, jwks: JwksServer, token: str, name: str) -> AsyncIterator[Client]:
    """A real `task-mcp serve` subprocess with `token` as its launch credential, driven as `name`."""
    env = {
        "TASK_MCP_DATABASE_URL": database_url,
        "TASK_MCP_BETTER_AUTH_URL": jwks.base_url,
        "TASK_MCP_TOKEN": token,
        "TASK_MCP_LOG_LEVEL": "WARNING",
    }
    params = StdioServerParameters(command=sys.executable, args=["-m", "task_mcp", "serve"], env=env)
    info = Implementation(name=name, version="1.0.0")
    async with Client(params, client_info=info, read_timeout_seconds=30) as client:  # type: ignore[arg-type]
        yield client


Entry = tuple[int, str, str, str, list[int]]  # (change_id, tool, user_id, client, task_ids)


@dataclass
class Agent:
    """One agent's loop, a step at a time; every write it makes is written down in `journal`."""

    client: Client
    user: str
    name: str
    journal: list[Entry]
    holding: int | None = None
    claim_id: str | None = None
    done: list[int] = field(default_factory=list)

    async def ok(self, tool: str, **arguments: Any) -> dict[str, Any]:
        answer = ok(await self.client.call_tool(tool, {"workspace": "acme", **arguments}))
        assert answer["workspace"] == "acme"
        return answer

    async def write(self, tool: str, task_ids: list[int], **arguments: Any) -> dict[str, Any]:
        answer = await self.ok(tool, **arguments)
        if answer["change_id"] is not None:
            self.journal.append((answer["change_id"], tool, self.user, self.name, task_ids))
        return answer

    async def step(self) -> bool:
        """Claim the next ready task, or note and complete the one held; False when nothing was ready."""
        if self.holding is None:
            answer = await self.ok("claim_task")
            if answer["task"] is None:
                assert (answer["claim"], answer["change_id"]) == (None, None)
                return False
            task_id = answer["task"]["id"]
            holder = answer["claim"]["holder"]
            assert (holder["user_id"], holder.get("client")) == (self.user, self.name)
            self.journal.append((answer["change_id"], "claim_task", self.user, self.name, [task_id]))
            self.holding, self.claim_id = task_id, answer["claim"]["claim_id"]
            return True
        task_id, self.holding = self.holding, None
        await self.write("add_note", [task_id], task_id=task_id, text=f"{self.name} started #{task_id}")
        released = await self.write(
            "release_task",
            [task_id],
            task_id=task_id,
            claim_id=self.claim_id,
            outcome="completed",
            note=f"{self.name} finished #{task_id}",
        )
        assert released["task"]["status"] == "completed" and released["task"].get("claim") is None
        self.done.append(task_id)
        return True


def with_authors(notes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """get_task's notes, newest first, each with its `by` (the server leaves out a `by` equal to the
    newer note's, to keep twenty notes of one author within the context budget)."""
    shown: list[dict[str, Any]] = []
    for note in notes:
        shown.append(note if "by" in note else {**note, "by": shown[-1]["by"]})
    return shown


async def test_two_agents_over_stdio_work_through_a_plan_with_dependencies_and_the_journal_says_who_did_what(
    database_url: str, jwks: JwksServer, mint: Callable[..., str]
) -> None:
    journal: list[Entry] = []
    tokens = {user: mint(user, organizations=[ACME | {"role": "member"}], lifetime=3600) for user in ("ann", "bob")}
    async with (
        stdio_agent(database_url, jwks, tokens["ann"], "agent-ann") as ann_client,
        stdio_agent(database_url, jwks, tokens["bob"], "agent-bob") as bob_client,
    ):
        ann = Agent(ann_client, "ann", "agent-ann", journal)
        bob = Agent(bob_client, "bob", "agent-bob", journal)

        # The plan: A first; B and C wait for A; D stands alone.
        await ann.write("create_task", [1], title="A: set up the repository")
        await ann.write(
            "create_tasks",
            [2, 3, 4],
            tasks=[
                {"title": "B: write the CI config", "blocked_by": [1]},
                {"title": "C: write the README", "blocked_by": [1]},
                {"title": "D: pick a licence"},
            ],
        )
        assert [t["id"] for t in (await bob.ok("list_tasks", ready=True))["tasks"]] == [1, 4]

        assert await ann.step() and ann.holding == 1
        assert await bob.step() and bob.holding == 4  # B and C are blocked, so bob takes D
        assert (await bob.ok("list_tasks", ready=True))["total"] == 0  # A and D claimed, B and C blocked
        b = (await bob.ok("get_task", task_id=2))["task"]
        assert b["blocked_by"] == [1] and b.get("blocked") is True
        refused = await bob.client.call_tool("claim_task", {"workspace": "acme", "task_id": 2})
        assert refused.is_error and text(refused).startswith("conflict: "), text(refused)
        assert re.search(r"\b1\b", text(refused)), text(refused)  # names the blocker

        assert await ann.step() and 1 in ann.done  # A noted and completed: B and C are ready now
        assert [t["id"] for t in (await bob.ok("list_tasks", ready=True))["tasks"]] == [2, 3]
        assert await bob.step() and 4 in bob.done
        while True:  # take turns until neither finds anything ready
            moved = [await ann.step(), await bob.step()]
            if not any(moved) and ann.holding is None and bob.holding is None:
                break

        assert sorted(ann.done + bob.done) == [1, 2, 3, 4]  # every task completed exactly once
        listed = await ann.ok("list_tasks", status="all", include_description=True)
        assert {t["id"]: t["status"] for t in listed["tasks"]} == dict.fromkeys([1, 2, 3, 4], "completed")
        assert all(t.get("claim") is None for t in listed["tasks"])  # completing ended each claim

        a = (await bob.ok("get_task", task_id=1))["task"]
        assert a["notes_total"] == 2
        assert [(n["text"], n["by"]["user_id"], n["by"].get("client")) for n in with_authors(a["notes"])] == [
            ("agent-ann finished #1", "ann", "agent-ann"),  # newest first
            ("agent-ann started #1", "ann", "agent-ann"),
        ]
        assert all("claim_id" not in n for n in a["notes"])

        changes = (await bob.ok("list_changes", limit=50))["changes"]

    shown = [
        (c["change_id"], c["tool"], c["by"]["user_id"], c["by"].get("client"), sorted(c["task_ids"]))
        for c in reversed(changes)
    ]
    assert shown == sorted(journal)  # every write, in order, with who (user and client) made it
    assert [e[1] for e in shown].count("release_task") == 4
    assert "complete_task" not in [e[1] for e in shown]
    completed_a = next(e[0] for e in shown if e[1] == "release_task" and e[4] == [1])
    for blocked in (2, 3):  # B and C were claimed only after A was completed
        claimed = next(e[0] for e in shown if e[1] == "claim_task" and e[4] == [blocked])
        assert claimed > completed_a
    assert all("claim_id" not in str(c) for c in changes)


# --- dependencies and the ready queue -------------------------------------------------------------


def blocked(task: dict[str, Any]) -> bool:
    return bool(task.get("blocked", False))


async def test_a_chain_is_ready_one_link_at_a_time_and_reopening_blocks_again(
    app: TaskMcp, mint: Callable[..., str]
) -> None:
    async with connect(app) as client:
        alice = Caller(client, mint("alice"))
        await alice.add("A")
        await alice.add("B", blocked_by=[1])
        await alice.add("C", blocked_by=[2])
        assert await alice.ids(ready=True) == [1]
        assert [(t["blocked_by"], blocked(t)) for t in [await alice.task(2), await alice.task(3)]] == [
            ([1], True),
            ([2], True),
        ]

        await alice.complete(1)
        assert await alice.ids(ready=True) == [2]
        b = await alice.task(2)
        assert (b["blocked_by"], blocked(b)) == ([1], False)  # a completed blocker is still shown
        assert blocked(await alice.task(3))

        await alice.update(1, status="open")  # reopened: B waits again
        assert await alice.ids(ready=True) == [1]
        assert blocked(await alice.task(2))


async def test_a_cycle_through_update_tasks_is_refused_naming_it_and_changes_nothing(
    app: TaskMcp, mint: Callable[..., str]
) -> None:
    async with connect(app) as client:
        alice = Caller(client, mint("alice"))
        await alice.add("A")
        await alice.add("B", blocked_by=[1])
        await alice.add("C", blocked_by=[2])
        before = [await alice.task(n) for n in (1, 2, 3)]

        message = await alice.fails("update_tasks", "invalid_argument", updates=[{"task_id": 1, "blocked_by": [3]}])
        for n in (1, 2, 3):
            assert re.search(rf"\b{n}\b", message), message  # the cycle 1 ← 3 ← 2 ← 1, every link named
        assert "cycle" in message.lower()
        assert [await alice.task(n) for n in (1, 2, 3)] == before

        self_loop = await alice.fails("update_tasks", "invalid_argument", updates=[{"task_id": 2, "blocked_by": [2]}])
        assert re.search(r"\b2\b", self_loop), self_loop
        assert [await alice.task(n) for n in (1, 2, 3)] == before


async def test_update_tasks_checks_links_on_the_final_state_of_the_whole_call(
    app: TaskMcp, mint: Callable[..., str]
) -> None:
    async with connect(app) as client:
        alice = Caller(client, mint("alice"))
        await alice.add("A")
        await alice.add("B", blocked_by=[1])
        await alice.add("C", blocked_by=[2])
        # Item by item the first link would close the loop 1 ← 3 ← 2 ← 1; the second item opens it.
        done = await alice.ok(
            "update_tasks", updates=[{"task_id": 1, "blocked_by": [3]}, {"task_id": 3, "clear": ["blocked_by"]}]
        )
        assert done["change_id"] is not None
        assert (await alice.task(1))["blocked_by"] == [3] and (await alice.task(3))["blocked_by"] == []
        assert await alice.ids(ready=True) == [3]


# --- update_tasks: all or nothing, and a dry run that answers like the real call -------------------


async def snapshot(alice: Caller, workspace: str = "personal") -> tuple[Any, ...]:
    """Everything a caller can see of a workspace: the tasks in full and the journal."""
    tasks = await alice.ok("list_tasks", status="all", include_description=True, limit=100, workspace=workspace)
    changes = await alice.ok("list_changes", limit=50, workspace=workspace)
    return tasks["tasks"], changes["changes"]


async def test_update_tasks_with_one_bad_item_changes_nothing(app: TaskMcp, mint: Callable[..., str]) -> None:
    async with connect(app) as client:
        alice = Caller(client, mint("alice"))
        await alice.add_many("Draft", "Review", "Publish")
        before = await snapshot(alice)
        good = [{"task_id": 1, "title": "Draft v2", "priority": "high"}, {"task_id": 2, "tags": ["editing"]}]
        bad_items: list[tuple[dict[str, Any], str]] = [
            ({"task_id": 3, "title": "Publish", "expected_version": 7}, "conflict"),
            ({"task_id": 99, "title": "Nowhere"}, "not_found"),
            ({"task_id": 3, "blocked_by": [3]}, "invalid_argument"),
            ({"task_id": 3, "due": "2026-12-01T10:00:00"}, "invalid_argument"),  # no offset
            ({"task_id": 1, "title": "twice"}, "invalid_argument"),  # the same task twice
        ]
        for bad, code in bad_items:
            for position in (0, len(good)):  # first or last, it stops the whole batch
                updates = [*good[:position], bad, *good[position:]]
                await alice.fails("update_tasks", code, updates=updates)
                assert await snapshot(alice) == before, (bad, position)

        applied = await alice.ok("update_tasks", updates=good)  # the good items alone: one change
        assert [t["id"] for t in applied["tasks"]] == [1, 2]
        changes = (await alice.ok("list_changes", limit=50))["changes"]
        assert len(changes) == len(before[1]) + 1 and sorted(changes[0]["task_ids"]) == [1, 2]


def comparable(answer: dict[str, Any]) -> dict[str, Any]:
    """An update_tasks answer without what a dry run cannot know: the change id, the dry_run flag, timestamps."""
    volatile = {"change_id", "dry_run"}
    stamps = {"updated_at", "created_at", "completed_at"}
    kept = {k: v for k, v in answer.items() if k not in volatile}
    kept["tasks"] = [{k: v for k, v in task.items() if k not in stamps} for task in answer["tasks"]]
    return kept


async def test_a_dry_run_changes_nothing_and_answers_what_the_real_run_answers(
    app: TaskMcp, mint: Callable[..., str]
) -> None:
    async with connect(app) as client:
        alice = Caller(client, mint("alice"))
        await alice.add_many("Draft", "Review", "Publish")
        await alice.add("Announce", blocked_by=[3])
        updates = [
            {"task_id": 4, "clear": ["blocked_by"], "priority": "urgent"},
            {"task_id": 1, "title": "Draft v2", "tags": ["writing"], "expected_version": 1},
            {"task_id": 3, "blocked_by": [1, 2], "due": "2026-12-24"},
            {"task_id": 2, "status": "completed"},
        ]
        before = await snapshot(alice)
        dry = await alice.ok("update_tasks", updates=updates, dry_run=True)
        assert (dry["dry_run"], dry["change_id"]) == (True, None)
        assert await snapshot(alice) == before  # nothing changed, nothing journaled

        real = await alice.ok("update_tasks", updates=updates)
        assert real["change_id"] is not None and real.get("dry_run", False) is False
        assert comparable(dry) == comparable(real)
        assert [t["id"] for t in real["tasks"]] == [4, 1, 3, 2]  # in the order given


async def test_a_dry_run_refuses_exactly_as_the_real_run_refuses(app: TaskMcp, mint: Callable[..., str]) -> None:
    acme = [ACME | {"role": "owner"}]
    async with connect(app) as client:
        alice = Caller(client, mint("alice", organizations=acme))
        viewer = Caller(client, mint("vic", organizations=[ACME | {"role": "viewer"}]))
        await alice.add_many("Draft", "Review", "Publish")
        await alice.add("Announce", blocked_by=[3])
        await alice.ok("create_task", title="Shared", workspace="acme")
        await alice.update(1, title="Draft, edited")  # now at version 2

        refusals: list[tuple[Caller, dict[str, Any], str]] = [
            (
                alice,
                {"updates": [{"task_id": 2, "title": "x"}, {"task_id": 1, "title": "y", "expected_version": 1}]},
                "conflict",
            ),
            (alice, {"updates": [{"task_id": 2, "title": "x"}, {"task_id": 42, "title": "y"}]}, "not_found"),
            (alice, {"updates": [{"task_id": 3, "blocked_by": [4]}]}, "invalid_argument"),  # 3 ← 4 ← 3
            (alice, {"updates": [{"task_id": 2, "title": "x"}, {"task_id": 2, "priority": "low"}]}, "invalid_argument"),
            (viewer, {"workspace": "acme", "updates": [{"task_id": 1, "title": "x"}]}, "forbidden"),
        ]
        for caller, arguments, code in refusals:
            before = [await snapshot(alice, workspace) for workspace in ("personal", "acme")]
            dry = await caller.call("update_tasks", {**arguments, "dry_run": True})
            real = await caller.call("update_tasks", arguments)
            assert dry.is_error and real.is_error, (arguments, text(dry), text(real))
            assert text(dry).startswith(f"{code}: "), text(dry)
            assert text(dry) == text(real)
            assert [await snapshot(alice, workspace) for workspace in ("personal", "acme")] == before
