"""The write tools and get_task, driven through the SDK's in-memory MCP client as a user would.

Every test talks to a real `TaskMcp` over a real MCP session, authenticated per call by a real
Better Auth-style JWT in `_meta`, on SQLite and (when configured) PostgreSQL. Assertions are about
what a user notices: the structured result, `isError`, and the code that starts an error's text.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from task_mcp.server import TaskMcp
from task_mcp.service import TaskService
from tests.helpers import Caller, Clock, connect, new_task

pytestmark = pytest.mark.anyio

WRITE_TOOLS = ("create_task", "create_tasks", "update_task", "complete_task", "delete_task", "restore_task")


# --- helpers --------------------------------------------------------------------------------------


@asynccontextmanager
async def users(app: TaskMcp, mint: Callable[..., str], *names: str) -> AsyncIterator[list[Caller]]:
    async with connect(app) as client:
        yield [Caller(client, mint(name)) for name in names]


# --- create_task ----------------------------------------------------------------------------------


async def test_each_user_numbers_their_own_tasks_from_one(app, mint):
    async with users(app, mint, "alice", "bob") as (alice, bob):
        first = await alice.ok("create_task", title="Buy milk")
        second = await alice.ok("create_task", title="Call mum")
        bobs = await bob.ok("create_task", title="Fix bike")
    assert first["created"] is True
    assert [first["task"]["id"], second["task"]["id"], bobs["task"]["id"]] == [1, 2, 1]
    task = first["task"]
    assert task["title"] == "Buy milk"
    assert (task["status"], task["priority"], task["version"]) == ("open", "none", 1)
    assert (task["description"], task["due"], task["parent_id"], task["completed_at"]) == (None, None, None, None)
    assert task["tags"] == []
    assert task["created_at"].endswith("Z") and task["created_at"] == task["updated_at"]


async def test_tags_are_trimmed_lower_cased_and_de_duplicated(app, mint):
    async with users(app, mint, "alice") as (alice,):
        task = await alice.create(1, tags=[" Home ", "HOME", "Work", "home", "errands "])
        assert task["tags"] == ["home", "work", "errands"]
        assert await alice.fields(1) == task


async def test_due_is_kept_as_a_date_or_as_a_utc_instant(app, mint):
    cases = [
        ("2026-12-01", "2026-12-01"),
        ("2026-12-01T18:00:00+02:00", "2026-12-01T16:00:00Z"),
        ("2026-12-01T16:00:00Z", "2026-12-01T16:00:00Z"),
        ("2026-12-01T09:30:00-05:00", "2026-12-01T14:30:00Z"),
    ]
    async with users(app, mint, "alice") as (alice,):
        for n, (due, stored) in enumerate(cases, start=1):
            assert (await alice.create(n, due=due))["due"] == stored, due
            assert (await alice.fields(n))["due"] == stored, due


async def test_a_due_is_kept_to_the_second_it_is_shown_with(app, mint):
    async with users(app, mint, "alice") as (alice,):
        task = await alice.create(1, due="2026-12-01T16:00:00.900Z")
        assert task["due"] == "2026-12-01T16:00:00Z"
        page = await alice.ok("list_tasks", due_before="2026-12-01T16:00:00Z", due_after="2026-12-01T16:00:00Z")
        assert [t["id"] for t in page["tasks"]] == [1]  # the inclusive bounds match what the task shows
        assert (await alice.ok("update_task", task_id=1, due="2026-12-01T16:00:00Z"))["task"] == task


async def test_a_due_without_an_offset_is_rejected_with_advice_to_add_one(app, mint):
    async with users(app, mint, "alice") as (alice,):
        text = await alice.fails("create_task", "invalid_argument", **new_task(1, due="2026-12-01T18:00:00"))
        assert "due" in text and "offset" in text and "add one" in text
        assert await alice.total() == 0


BAD_CREATE_ARGUMENTS = [
    ("title", {"title": "   "}),
    ("title", {"title": "x" * 201}),
    ("title", {"title": "milk\x00"}),
    ("description", {"description": "a\x00b"}),
    ("description", {"description": "d" * 8001}),
    ("tags", {"tags": [f"t{i}" for i in range(21)]}),
    ("tags", {"tags": ["x" * 41]}),
    ("tags", {"tags": ["ok", "  "]}),
    ("tags", {"tags": ["nul\x00"]}),
    ("priority", {"priority": "critical"}),
    ("due", {"due": "next tuesday"}),
    ("parent_id", {"parent_id": 0}),
    ("idempotency_key", {"idempotency_key": "  "}),
    ("idempotency_key", {"idempotency_key": "k" * 101}),
    ("idempotency_key", {"idempotency_key": "k\x00"}),
    ("colour", {"colour": "red"}),
]


async def test_arguments_that_break_the_contract_are_invalid_and_create_nothing(app, mint):
    async with users(app, mint, "alice") as (alice,):
        await alice.create(1)
        for argument, fields in BAD_CREATE_ARGUMENTS:
            text = await alice.fails("create_task", "invalid_argument", **{**new_task(2), **fields})
            assert text.startswith(f"invalid_argument: {argument}"), (fields, text)
            assert "Nothing was changed" in text
        assert await alice.total() == 1
        assert (await alice.create(3))["id"] == 2  # the failed calls used up no number


async def test_the_largest_values_within_the_limits_are_accepted(app, mint):
    async with users(app, mint, "alice") as (alice,):
        tags = [f"{i:02d}" + "t" * 38 for i in range(20)]
        task = await alice.create(1, title="T" * 200, description="d" * 8000, tags=tags, idempotency_key="k" * 100)
    assert (len(task["title"]), len(task["description"]), task["tags"]) == (200, 8000, tags)


async def test_titles_and_tags_are_trimmed_and_counted_after_trimming(app, mint):
    cases = [("  Buy milk  ", "Buy milk"), ("\tBuy milk\n", "Buy milk"), (f" {'x' * 200}  ", "x" * 200)]
    async with users(app, mint, "alice") as (alice,):
        for n, (title, stored) in enumerate(cases, start=1):
            task = await alice.create(n, title=title, tags=[f" {'T' * 40} "])
            assert (task["title"], task["tags"]) == (stored, ["t" * 40])


async def test_a_parent_that_is_missing_deleted_or_another_users_is_not_found(app, mint):
    async with users(app, mint, "alice", "bob") as (alice, bob):
        await alice.create(1)
        await alice.create(2)
        await alice.ok("delete_task", task_id=2)
        await bob.create(1)
        await bob.create(2)
        await bob.create(3)
        assert "restore_task" in await alice.fails("create_task", "not_found", **new_task(9, parent_id=2))
        await alice.fails("create_task", "not_found", **new_task(9, parent_id=3))  # bob has a task 3
        await alice.fails("create_task", "not_found", **new_task(9, parent_id=2**31 - 1))
        await alice.fails("create_tasks", "not_found", tasks=[new_task(9, parent_id=3)])
        assert await alice.all_ids() == [1]
        assert (await alice.create(3, parent_id=1))["id"] == 3


# --- idempotency ----------------------------------------------------------------------------------


async def test_the_same_key_with_the_same_arguments_returns_the_first_task_without_creating_again(app, mint):
    async with users(app, mint, "alice") as (alice,):
        args = new_task(1, tags=["home"], due="2026-12-01", idempotency_key="buy-milk-1")
        first = await alice.ok("create_task", **args)
        again = await alice.ok("create_task", **args)
        assert first["created"] is True and again["created"] is False
        assert again["task"] == first["task"]
        assert await alice.total() == 1
        assert (await alice.create(2))["id"] == 2


async def test_the_same_key_replays_create_tasks_too(app, mint):
    async with users(app, mint, "alice") as (alice,):
        items = [new_task(1), new_task(2)]
        first = await alice.ok("create_tasks", tasks=items, idempotency_key="plan")
        again = await alice.ok("create_tasks", tasks=items, idempotency_key="plan")
        assert (first["created"], again["created"]) == (True, False)
        assert again["tasks"] == first["tasks"]
        assert await alice.total() == 2


async def test_the_same_key_with_other_arguments_is_a_conflict(app, mint):
    others = [{"title": "Task 2"}, {"title": "Task 1", "priority": "high"}, {"title": "Task 1", "tags": ["new"]}]
    async with users(app, mint, "alice") as (alice,):
        first = await alice.ok("create_task", **new_task(1), idempotency_key="k1")
        for other in others:
            text = await alice.fails("create_task", "conflict", **other, idempotency_key="k1")
            assert "k1" in text
        assert await alice.all_ids() == [1]
        assert await alice.fields(1) == first["task"]


async def test_the_same_key_on_the_other_create_tool_counts_as_other_arguments(app, mint):
    async with users(app, mint, "alice") as (alice,):
        await alice.ok("create_task", **new_task(1), idempotency_key="single")
        await alice.fails("create_tasks", "conflict", tasks=[new_task(1)], idempotency_key="single")
        await alice.ok("create_tasks", tasks=[new_task(2)], idempotency_key="many")
        await alice.fails("create_task", "conflict", **new_task(2), idempotency_key="many")
        assert await alice.all_ids() == [1, 2]


async def test_idempotency_keys_belong_to_one_user(app, mint):
    async with users(app, mint, "alice", "bob") as (alice, bob):
        await alice.create(1)
        mine = await alice.ok("create_task", **new_task(2), idempotency_key="shared-key")
        theirs = await bob.ok("create_task", **new_task(7), idempotency_key="shared-key")
        assert (mine["created"], theirs["created"]) == (True, True)
        assert (mine["task"]["id"], theirs["task"]["id"]) == (2, 1)
        assert theirs["task"]["title"] == "Task 7"
        assert await alice.all_ids() == [1, 2]
        assert await bob.all_ids() == [1]


async def test_replaying_a_key_after_its_task_was_deleted_is_a_conflict_naming_the_task_and_restore_task(app, mint):
    async with users(app, mint, "alice") as (alice,):
        await alice.create(1)
        await alice.ok("create_task", **new_task(2), idempotency_key="k")
        await alice.ok("delete_task", task_id=2)
        text = await alice.fails("create_task", "conflict", **new_task(2), idempotency_key="k")
        assert "task 2" in text and "restore_task" in text
        assert await alice.all_ids() == [1]
        await alice.ok("restore_task", task_id=2)
        assert (await alice.ok("create_task", **new_task(2), idempotency_key="k"))["created"] is False


async def test_a_replay_returns_the_tasks_current_state(app, mint):
    async with users(app, mint, "alice") as (alice,):
        await alice.ok("create_task", **new_task(1), idempotency_key="k")
        await alice.ok("update_task", task_id=1, title="Renamed", priority="high")
        await alice.ok("complete_task", task_id=1)
        replay = await alice.ok("create_task", **new_task(1), idempotency_key="k")
        assert replay["created"] is False
        task = replay["task"]
        assert (task["id"], task["title"], task["priority"], task["status"], task["version"]) == (
            1,
            "Renamed",
            "high",
            "completed",
            3,
        )


# --- create_tasks ---------------------------------------------------------------------------------


async def test_create_tasks_numbers_its_tasks_consecutively_in_order(app, mint):
    async with users(app, mint, "alice") as (alice,):
        await alice.create(1)
        result = await alice.ok("create_tasks", tasks=[new_task(n, tags=[f"step{n}"]) for n in (2, 3, 4)])
        assert result["created"] is True
        assert [(t["id"], t["title"], t["tags"]) for t in result["tasks"]] == [
            (2, "Task 2", ["step2"]),
            (3, "Task 3", ["step3"]),
            (4, "Task 4", ["step4"]),
        ]
        assert await alice.all_ids() == [1, 2, 3, 4]


async def test_create_tasks_takes_up_to_one_hundred_tasks(app, mint):
    async with users(app, mint, "alice") as (alice,):
        result = await alice.ok("create_tasks", tasks=[new_task(n) for n in range(1, 101)])
        assert [t["id"] for t in result["tasks"]] == list(range(1, 101))
        assert await alice.total() == 100


async def test_create_tasks_with_no_task_or_more_than_one_hundred_is_invalid(app, mint):
    async with users(app, mint, "alice") as (alice,):
        for count in (0, 101):
            text = await alice.fails("create_tasks", "invalid_argument", tasks=[new_task(n) for n in range(count)])
            assert text.startswith("invalid_argument: tasks"), text
        assert await alice.total() == 0


async def test_one_bad_item_creates_nothing_and_uses_up_no_task_number(app, mint):
    cases = [
        ("invalid_argument", {"title": "   "}),
        ("invalid_argument", {"title": "T", "tags": ["ok", " "]}),
        ("invalid_argument", {"title": "T", "due": "2026-12-01T09:00:00"}),
        ("invalid_argument", {"title": "T", "tags": ["x" * 41]}),
        ("not_found", {"title": "T", "parent_id": 99}),
    ]
    async with users(app, mint, "alice") as (alice,):
        await alice.create(1)
        for code, bad in cases:
            text = await alice.fails("create_tasks", code, tasks=[new_task(2), bad, new_task(4)])
            assert code == "not_found" or text.startswith("invalid_argument: tasks[1]"), text
        assert await alice.all_ids() == [1]
        again = await alice.ok("create_tasks", tasks=[new_task(2), new_task(3)])
        assert [t["id"] for t in again["tasks"]] == [2, 3]
        assert (await alice.create(4))["id"] == 4


# --- update_task ----------------------------------------------------------------------------------


async def test_an_update_changes_only_the_fields_it_names(app, mint):
    async with users(app, mint, "alice") as (alice,):
        await alice.create(1)
        before = await alice.create(2, description="Details", due="2026-12-01", tags=["a"], priority="low", parent_id=1)
        after = (await alice.ok("update_task", task_id=2, title="New title"))["task"]
        assert after["title"] == "New title"
        assert after["version"] == before["version"] + 1
        unchanged = ("description", "due", "tags", "priority", "parent_id", "status", "created_at", "completed_at")
        assert {k: after[k] for k in unchanged} == {k: before[k] for k in unchanged}
        assert await alice.fields(2) == after


async def test_an_update_sets_every_field_in_one_version(app, mint):
    async with users(app, mint, "alice") as (alice,):
        await alice.create(1)
        await alice.create(2)
        task = (
            await alice.ok(
                "update_task",
                task_id=2,
                title="All",
                description="D",
                priority="urgent",
                due="2027-01-02T03:04:05+01:00",
                tags=["X", "y"],
                status="completed",
                parent_id=1,
            )
        )["task"]
    assert (task["title"], task["description"], task["priority"], task["due"]) == (
        "All",
        "D",
        "urgent",
        "2027-01-02T02:04:05Z",
    )
    assert (task["tags"], task["status"], task["parent_id"], task["version"]) == (["x", "y"], "completed", 1, 2)
    assert task["completed_at"] is not None


async def test_clear_empties_description_due_and_parent(app, mint):
    async with users(app, mint, "alice") as (alice,):
        await alice.create(1)
        await alice.create(2, description="Details", due="2026-12-01T10:00:00Z", parent_id=1)
        task = (await alice.ok("update_task", task_id=2, clear=["description", "due", "parent_id"]))["task"]
        assert (task["description"], task["due"], task["parent_id"], task["version"]) == (None, None, None, 2)
        assert await alice.fields(2) == task
        again = (await alice.ok("update_task", task_id=2, clear=["due"]))["task"]
        assert again["version"] == 2  # clearing an empty field changes nothing


async def test_setting_and_clearing_the_same_field_is_invalid(app, mint):
    async with users(app, mint, "alice") as (alice,):
        await alice.create(1)
        before = await alice.create(2, description="Old", due="2026-11-01", parent_id=1)
        for field, value in [("description", "New"), ("due", "2026-12-01"), ("parent_id", 1)]:
            text = await alice.fails("update_task", "invalid_argument", task_id=2, **{field: value}, clear=[field])
            assert field in text
        assert await alice.fields(2) == before


async def test_update_arguments_that_break_the_contract_are_invalid_and_change_nothing(app, mint):
    cases = [
        {"task_id": 0},
        {"task_id": 2**31},
        {"priority": "soon"},
        {"clear": ["title"]},
        {"status": "deleted"},
        {"expected_version": 0},
        {"title": ""},
        {"title": "   "},
        {"tags": [" "]},
        {"description": "\x00"},
        {"due": "2026-12-01T09:00"},
        {"colour": "red"},
    ]
    async with users(app, mint, "alice") as (alice,):
        before = await alice.create(1)
        for fields in cases:
            text = await alice.fails("update_task", "invalid_argument", **{"task_id": 1, **fields})
            assert text.startswith(f"invalid_argument: {next(iter(fields))}"), text
        assert await alice.fields(1) == before


async def test_a_stale_expected_version_is_a_conflict_stating_the_current_version_and_changes_nothing(app, mint):
    async with users(app, mint, "alice") as (alice,):
        await alice.create(1)
        current = (await alice.ok("update_task", task_id=1, title="Second", expected_version=1))["task"]
        assert current["version"] == 2
        text = await alice.fails("update_task", "conflict", task_id=1, title="Third", expected_version=1)
        assert "version 2" in text
        assert await alice.fields(1) == current
        assert (await alice.ok("update_task", task_id=1, title="Third", expected_version=2))["task"]["version"] == 3


async def test_each_change_adds_one_to_the_version_and_a_no_op_keeps_it(app, mint):
    async with users(app, mint, "alice") as (alice,):
        await alice.create(1, due="2026-12-01T16:00:00Z", tags=["a", "b"])
        versions = []
        for change in ({"title": "B"}, {"priority": "high"}, {"tags": ["c"]}, {"description": "x"}):
            versions.append((await alice.ok("update_task", task_id=1, **change))["task"]["version"])
        assert versions == [2, 3, 4, 5]
        current = await alice.fields(1)
        for same in (
            {},
            {"title": "B"},
            {"title": "  B "},
            {"priority": "high", "tags": ["C"]},
            {"due": "2026-12-01T18:00:00+02:00"},
            {"status": "open"},
            {"expected_version": 5},
        ):
            assert (await alice.ok("update_task", task_id=1, **same))["task"] == current, same
        assert await alice.fields(1) == current


async def test_status_open_reopens_a_completed_task(app, mint):
    async with users(app, mint, "alice") as (alice,):
        await alice.create(1)
        done = (await alice.ok("update_task", task_id=1, status="completed"))["task"]
        assert (done["status"], done["version"]) == ("completed", 2)
        assert done["completed_at"] is not None
        reopened = (await alice.ok("update_task", task_id=1, status="open"))["task"]
        assert (reopened["status"], reopened["completed_at"], reopened["version"]) == ("open", None, 3)
        assert await alice.fields(1) == reopened


async def test_a_parent_that_would_make_a_cycle_is_invalid(app, mint):
    async with users(app, mint, "alice") as (alice,):
        await alice.create(1)  # A
        await alice.create(2, parent_id=1)  # B under A
        await alice.create(3, parent_id=2)  # C under B
        before = [await alice.fields(n) for n in (1, 2, 3)]
        assert "cycle" in await alice.fails("update_task", "invalid_argument", task_id=1, parent_id=3)
        await alice.fails("update_task", "invalid_argument", task_id=1, parent_id=2)
        await alice.fails("update_task", "invalid_argument", task_id=2, parent_id=3)
        assert "own parent" in await alice.fails("update_task", "invalid_argument", task_id=2, parent_id=2)
        assert [await alice.fields(n) for n in (1, 2, 3)] == before
        moved = (await alice.ok("update_task", task_id=3, parent_id=1))["task"]  # not a cycle
        assert (moved["parent_id"], moved["version"]) == (1, 2)


async def test_adding_a_subtask_does_not_change_its_parent(app, mint):
    async with users(app, mint, "alice") as (alice,):
        parent = await alice.create(1)
        await alice.create(2, parent_id=1)
        await alice.ok("create_tasks", tasks=[new_task(3, parent_id=1)])
        await alice.create(4)
        await alice.ok("update_task", task_id=4, parent_id=1)
        assert await alice.fields(1) == parent


async def test_an_update_to_a_missing_or_deleted_task_is_not_found(app, mint):
    async with users(app, mint, "alice") as (alice,):
        await alice.create(1)
        await alice.create(2)
        await alice.ok("delete_task", task_id=1)
        await alice.fails("update_task", "not_found", task_id=1, title="x")
        await alice.fails("update_task", "not_found", task_id=3, title="x")
        await alice.fails("update_task", "not_found", task_id=2, parent_id=1)
        assert (await alice.fields(2))["version"] == 1


# --- complete_task --------------------------------------------------------------------------------


async def test_complete_sets_completed_at_and_a_repeat_keeps_the_version(app, mint):
    async with users(app, mint, "alice") as (alice,):
        await alice.create(1)
        done = (await alice.ok("complete_task", task_id=1))["task"]
        assert (done["status"], done["version"]) == ("completed", 2)
        assert done["completed_at"] is not None and done["completed_at"].endswith("Z")
        assert (await alice.ok("complete_task", task_id=1))["task"] == done
        assert await alice.fields(1) == done
        assert (await alice.ok("list_tasks"))["total"] == 0  # the default list shows open tasks
        await alice.fails("complete_task", "not_found", task_id=2)


# --- delete_task and restore_task -----------------------------------------------------------------


async def test_a_deleted_task_disappears_from_list_and_get(app, mint):
    async with users(app, mint, "alice") as (alice,):
        await alice.create(1)
        await alice.create(2)
        deleted = await alice.ok("delete_task", task_id=1)
        assert deleted == {"workspace": "personal", "change_id": 3, "task_id": 1, "deleted": True}
        assert await alice.all_ids() == [2]
        assert "restore_task" in await alice.fails("get_task", "not_found", task_id=1)
        await alice.fails("complete_task", "not_found", task_id=1)
        restored = (await alice.ok("restore_task", task_id=1))["task"]
        assert (restored["id"], restored["title"], restored["version"]) == (1, "Task 1", 3)
        assert await alice.all_ids() == [1, 2]


async def test_delete_takes_the_live_subtree_and_restore_brings_back_the_same_set(app, mint):
    async with users(app, mint, "alice") as (alice,):
        await alice.create(1)  # root
        await alice.create(2, parent_id=1)
        await alice.create(3, parent_id=2)
        await alice.create(4, parent_id=1)
        await alice.create(5, parent_id=1)  # deleted on its own first: stays deleted
        await alice.create(6)  # outside the tree
        await alice.ok("delete_task", task_id=5)
        before = {n: await alice.fields(n) for n in (1, 2, 3, 4, 6)}

        await alice.ok("delete_task", task_id=1)
        assert await alice.all_ids() == [6]
        for n in (1, 2, 3, 4, 5):
            await alice.fails("get_task", "not_found", task_id=n)

        restored = (await alice.ok("restore_task", task_id=1))["task"]
        assert restored["version"] == before[1]["version"] + 2
        assert await alice.all_ids() == [1, 2, 3, 4, 6]
        for n in (1, 2, 3, 4):
            task = await alice.fields(n)
            assert task["version"] == before[n]["version"] + 2, n  # one for delete, one for restore
            assert {**task, "version": 0, "updated_at": ""} == {**before[n], "version": 0, "updated_at": ""}
        assert await alice.fields(6) == before[6]
        await alice.fails("get_task", "not_found", task_id=5)


async def test_restoring_a_subtask_whose_parent_is_still_deleted_is_a_conflict(app, mint):
    async with users(app, mint, "alice") as (alice,):
        await alice.create(1)
        await alice.create(2, parent_id=1)
        await alice.ok("delete_task", task_id=1)
        text = await alice.fails("restore_task", "conflict", task_id=2)
        assert "task 1" in text and "first" in text and "restore_task" in text
        await alice.fails("get_task", "not_found", task_id=2)
        await alice.ok("restore_task", task_id=1)
        assert await alice.all_ids() == [1, 2]


async def test_a_subtask_deleted_before_its_parent_needs_its_own_restore_after_the_parents(app, mint):
    async with users(app, mint, "alice") as (alice,):
        await alice.create(1)
        await alice.create(2, parent_id=1)
        await alice.ok("delete_task", task_id=2)
        await alice.ok("delete_task", task_id=1)
        text = await alice.fails("restore_task", "conflict", task_id=2)
        assert "task_id 1 first" in text
        assert "restores its subtasks" not in text  # it would not: task 2 was not deleted with task 1
        await alice.ok("restore_task", task_id=1)
        assert await alice.all_ids() == [1]
        await alice.ok("restore_task", task_id=2)
        assert await alice.all_ids() == [1, 2]


async def test_deleting_or_restoring_again_succeeds_without_a_new_version(app, mint):
    async with users(app, mint, "alice") as (alice,):
        await alice.create(1)
        await alice.create(2, parent_id=1)
        await alice.ok("delete_task", task_id=1)
        # Repeats change nothing, so they name no journal entry.
        again = {"workspace": "personal", "change_id": None, "task_id": 1, "deleted": True}
        assert await alice.ok("delete_task", task_id=1) == again
        assert await alice.ok("delete_task", task_id=2) == again | {"task_id": 2}
        first = (await alice.ok("restore_task", task_id=1))["task"]
        assert first["version"] == 3
        assert (await alice.ok("restore_task", task_id=1))["task"] == first
        assert (await alice.ok("restore_task", task_id=2))["task"]["version"] == 3
        assert await alice.all_ids() == [1, 2]


async def test_deleting_or_restoring_a_task_that_does_not_exist_is_not_found(app, mint):
    async with users(app, mint, "alice") as (alice,):
        await alice.fails("delete_task", "not_found", task_id=1)
        await alice.fails("restore_task", "not_found", task_id=1)
        await alice.fails("get_task", "not_found", task_id=2**31 - 1)
        await alice.fails("get_task", "invalid_argument", task_id=2**31)


async def test_a_task_deleted_longer_than_the_retention_period_is_gone_for_good(app, mint):
    clock = Clock(dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC))
    app.service = TaskService(app.database, retention_days=30, clock=clock)
    async with users(app, mint, "alice") as (alice,):
        for n in (1, 2, 3):
            await alice.create(n)
        await alice.ok("delete_task", task_id=1)
        clock.advance(days=29)
        await alice.ok("delete_task", task_id=2)
        clock.advance(days=2)  # task 1 was deleted 31 days ago, task 2 two days ago

        assert app.service.purge_deleted() == 1

        await alice.fails("restore_task", "not_found", task_id=1)
        await alice.fails("get_task", "not_found", task_id=1)
        assert (await alice.ok("restore_task", task_id=2))["task"]["title"] == "Task 2"
        assert await alice.all_ids() == [2, 3]
        assert (await alice.create(4))["id"] == 4  # a purged number is never reused


async def test_writes_purge_expired_deleted_tasks_without_a_scheduler(app, mint):
    clock = Clock(dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC))
    app.service = TaskService(app.database, retention_days=7, clock=clock)
    async with users(app, mint, "alice") as (alice,):
        await alice.create(1)
        await alice.create(2)
        await alice.ok("delete_task", task_id=1)
        clock.advance(days=7, seconds=1)
        app.service = TaskService(app.database, retention_days=7, clock=clock)  # a restarted server
        await alice.ok("delete_task", task_id=2)  # this write starts a purge of task 1, deleted over 7 days ago
        app.database.wait_for_background()  # the purge runs on a thread of its own, after the answer
        await alice.fails("restore_task", "not_found", task_id=1)
        await alice.ok("restore_task", task_id=2)


# --- two users ------------------------------------------------------------------------------------


BOB_ON_ALICES_TASKS = [
    ("get_task", {"task_id": 2}),
    ("list_tasks", {"parent_id": 1}),
    ("create_task", {"title": "Sneaky", "parent_id": 1}),
    ("create_tasks", {"tasks": [{"title": "Sneaky", "parent_id": 2}]}),
    ("update_task", {"task_id": 2, "title": "Hijacked"}),
    ("update_task", {"task_id": 2, "status": "completed", "expected_version": 1}),
    ("complete_task", {"task_id": 2}),
    ("delete_task", {"task_id": 1}),
    ("restore_task", {"task_id": 3}),
    ("get_task", {"task_id": 3}),
]


async def test_another_users_task_numbers_are_not_found_on_every_tool_and_their_tasks_stay_unchanged(app, mint):
    async with users(app, mint, "alice", "bob") as (alice, bob):
        await alice.ok("create_task", title="Alice's plan", description="Secret details")
        await alice.ok("create_task", title="Alice's step", parent_id=1, tags=["private"])
        await alice.ok("create_task", title="Alice's old idea")
        await alice.ok("delete_task", task_id=3)
        before = [await alice.fields(n) for n in (1, 2)]

        for tool, arguments in BOB_ON_ALICES_TASKS:
            text = await bob.fails(tool, "not_found", **arguments)
            assert "Alice" not in text and "Secret" not in text and "private" not in text, text
            assert "deleted" not in text and "restore" not in text, text  # not even that the number exists

        assert [await alice.fields(n) for n in (1, 2)] == before
        await alice.fails("get_task", "not_found", task_id=3)
        assert await alice.all_ids() == [1, 2]
        assert await bob.total() == 0
        assert (await bob.create(1))["id"] == 1  # bob's own numbering is untouched by alice's


async def test_a_users_list_never_shows_another_users_tasks(app, mint):
    async with users(app, mint, "alice", "bob") as (alice, bob):
        await alice.create(1, tags=["shared"])
        await bob.create(1, tags=["shared"])
        page = await bob.ok("list_tasks", status="all", tags=["shared"], text="Task")
        assert (page["total"], [t["title"] for t in page["tasks"]]) == (1, ["Task 1"])
        assert (await bob.ok("update_task", task_id=1, title="Bob's"))["task"]["version"] == 2
        assert (await alice.fields(1))["title"] == "Task 1"


# --- errors ---------------------------------------------------------------------------------------


async def test_an_unknown_tool_is_an_invalid_argument(app, mint):
    async with users(app, mint, "alice") as (alice,):
        text = await alice.fails("drop_all_tasks", "invalid_argument")
        assert "drop_all_tasks" in text and "tools/list" in text


async def test_an_unexpected_exception_is_internal_without_its_message_and_is_logged(app, mint, monkeypatch, caplog):
    cases = [  # (service method that breaks, tool called, arguments, whether the text may say nothing changed)
        ("get_task", "get_task", {"task_id": 1}, False),
        ("create_task", "create_task", {"title": "T"}, True),
        ("update_task", "complete_task", {"task_id": 1}, True),
    ]

    def explode(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret-detail: SELECT * FROM tasks")

    async with users(app, mint, "alice") as (alice,):
        before = await alice.create(1)
        for method, tool, arguments, nothing_changed in cases:
            caplog.clear()
            with monkeypatch.context() as patch, caplog.at_level(logging.ERROR):
                patch.setattr(TaskService, method, explode)
                text = await alice.fails(tool, "internal", **arguments)
            assert "secret-detail" not in text and "SELECT" not in text and "RuntimeError" not in text, text
            assert ("nothing was changed" in text) is nothing_changed, text
            logged = [r for r in caplog.records if r.exc_info and r.exc_info[0] is RuntimeError]
            assert len(logged) == 1 and tool in logged[0].getMessage(), tool
        assert await alice.all_ids() == [1]
        assert await alice.fields(1) == before


async def test_a_failure_inside_the_transaction_rolls_everything_back_and_uses_up_no_number(app, mint, monkeypatch):
    async with users(app, mint, "alice") as (alice,):
        await alice.create(1)
        real = TaskService._new_task
        made: list[int] = []

        def fail_on_third(self: TaskService, *args: Any, **kwargs: Any) -> Any:
            made.append(1)
            if len(made) == 3:
                raise RuntimeError("disk on fire")
            return real(self, *args, **kwargs)

        with monkeypatch.context() as patch:
            patch.setattr(TaskService, "_new_task", fail_on_third)
            text = await alice.fails("create_tasks", "internal", tasks=[new_task(n) for n in (2, 3, 4)])
        assert "nothing was changed" in text and "disk" not in text
        assert await alice.all_ids() == [1]
        result = await alice.ok("create_tasks", tasks=[new_task(n) for n in (2, 3)])
        assert [t["id"] for t in result["tasks"]] == [2, 3]


# --- read-only mode and scopes --------------------------------------------------------------------


async def test_read_only_mode_lists_only_the_read_tools_and_forbids_the_others(make_app, mint):
    writable, read_only = make_app(), make_app(read_only=True)
    async with users(writable, mint, "alice") as (alice,):
        await alice.create(1)
        await alice.create(2)
        await alice.ok("delete_task", task_id=2)
        before = await alice.fields(1)
    calls = {
        "create_task": {"title": "T"},
        "create_tasks": {"tasks": [{"title": "T"}]},
        "update_task": {"task_id": 1, "title": "x"},
        "complete_task": {"task_id": 1},
        "delete_task": {"task_id": 1},
        "restore_task": {"task_id": 2},
    }
    assert sorted(calls) == sorted(WRITE_TOOLS)
    async with users(read_only, mint, "alice") as (alice,):
        tools = (await alice.client.list_tools()).tools
        assert sorted(t.name for t in tools) == ["get_task", "list_changes", "list_tasks", "list_workspaces"]
        for tool, arguments in calls.items():
            text = await alice.fails(tool, "forbidden", **arguments)
            assert "read-only" in text, text
        assert await alice.fields(1) == before
        assert await alice.all_ids() == [1]


SCOPE_CASES = [  # (scope claim, may read, may write)
    ("tasks:read", True, False),
    ("tasks:write", False, True),
    ("tasks:read tasks:write", True, True),
    (["tasks:read", "tasks:write"], True, True),
    ("", False, False),
    ("openid profile", False, False),
    (None, True, True),  # a plain Better Auth JWT without a scope claim may do everything
]


async def test_scopes_decide_which_tools_a_token_may_call(app, mint):
    async with connect(app) as client:
        owner = Caller(client, mint("alice"))
        await owner.create(1)
        expected = [1]
        for scope, can_read, can_write in SCOPE_CASES:
            scoped = Caller(client, mint("alice", scope=scope))
            for tool, arguments, allowed in [
                ("list_tasks", {}, can_read),
                ("get_task", {"task_id": 1}, can_read),
                ("create_task", {"title": "T"}, can_write),
                ("update_task", {"task_id": 1, "title": f"by {scope!r}"}, can_write),
            ]:
                if allowed:
                    await scoped.ok(tool, **arguments)
                else:
                    text = await scoped.fails(tool, "forbidden", **arguments)
                    assert ("tasks:write" if tool in WRITE_TOOLS else "tasks:read") in text, (scope, text)
            if can_write:
                expected.append(len(expected) + 1)
            assert await owner.all_ids() == expected, scope
