"""undo_change (DESIGN §9): every write tool's change undone and redone through a real MCP client,
on both databases; conflicts, re-checked rules and roles."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers import Caller, connect

pytestmark = pytest.mark.anyio

ORGS = [{"id": "org-acme", "slug": "acme", "role": "member"}]


def state(task: dict[str, Any]) -> dict[str, Any]:
    """Every field but version and updated_at."""
    return {k: v for k, v in task.items() if k not in ("version", "updated_at")}


async def snapshot(who: Caller) -> dict[int, dict[str, Any]]:
    """Every live task, whole; deleted ones are absent."""
    page = await who.ok("list_tasks", status="all", limit=100, include_description=True)
    return {t["id"]: state(t) for t in page["tasks"]}


async def undo(who: Caller, change_id: int) -> int:
    answer = await who.ok("undo_change", change_id=change_id)
    assert answer["undoes"] == change_id and answer["change_id"] > change_id
    return int(answer["change_id"])


async def round_trip(alice: Caller, tool: str, arguments: dict[str, Any]) -> None:
    """Do it, undo it (state as before), undo the undo (state as after)."""
    before = await snapshot(alice)
    done = await alice.ok(tool, arguments)
    assert isinstance(done["change_id"], int)
    after = await snapshot(alice)
    assert after != before
    undo_id = await undo(alice, done["change_id"])
    assert await snapshot(alice) == before
    await undo(alice, undo_id)
    assert await snapshot(alice) == after


UPDATES = [
    {"title": "Renamed"},
    {"description": "New words"},
    {"clear": ["description"]},
    {"priority": "urgent"},
    {"due": "2027-01-02"},
    {"due": "2027-01-02T09:30:00Z"},
    {"clear": ["due"]},
    {"tags": ["office", "home"]},
    {"tags": []},
    {"status": "completed"},
    {"parent_id": 2},
    {"clear": ["parent_id"]},
    {"clear": ["assignee"]},
    {"title": "Both", "priority": "low", "tags": ["x"], "due": "2026-05-05"},
]


@pytest.mark.parametrize("changes", UPDATES, ids=lambda c: "+".join(sorted(c)) + str(next(iter(c.values())))[:12])
async def test_undoing_an_update_of_each_field_kind_restores_it_and_redo_reapplies_it(app, mint, changes):
    async with connect(app) as client:
        alice = Caller(client, mint("alice"))
        await alice.add("Parent")
        await alice.add("Other")
        await alice.add(
            "Subject",
            description="Words",
            priority="high",
            due="2026-12-01",
            tags=["home", "work"],
            parent_id=1,
            assignee="me",
        )
        await round_trip(alice, "update_task", {"task_id": 3, **changes})


async def test_each_write_tool_can_be_undone_and_redone(app, mint):
    async with connect(app) as client:
        alice = Caller(client, mint("alice"))
        await round_trip(alice, "create_task", {"title": "One", "tags": ["a"]})
        await round_trip(alice, "create_tasks", {"tasks": [{"title": "Two"}, {"title": "Three", "parent_id": 1}]})
        await alice.add("Four")
        await round_trip(alice, "complete_task", {"task_id": 4})
        await round_trip(alice, "update_task", {"task_id": 4, "assignee": "me"})
        await alice.add("Child", parent_id=4)
        await round_trip(alice, "delete_task", {"task_id": 4})
        await alice.delete(4)
        await round_trip(alice, "restore_task", {"task_id": 4})


async def test_reopening_a_task_is_undone_to_completed_with_its_old_completion_time(app, mint):
    async with connect(app) as client:
        alice = Caller(client, mint("alice"))
        await alice.add("Done once")
        await alice.complete(1)
        await round_trip(alice, "update_task", {"task_id": 1, "status": "open"})


async def test_undoing_a_subtree_delete_restores_exactly_that_subtree(app, mint):
    async with connect(app) as client:
        alice = Caller(client, mint("alice"))
        await alice.add("Root")
        await alice.add("A", parent_id=1)
        await alice.add("B", parent_id=2)
        await alice.add("Gone before", parent_id=1)
        await alice.delete(4)
        deleted = await alice.ok("delete_task", task_id=1)
        await undo(alice, deleted["change_id"])
        assert await alice.all_ids() == [1, 2, 3]
        trash = await alice.page(status="deleted")
        assert [t["id"] for t in trash["tasks"]] == [4]


async def test_undoing_a_create_tasks_of_fifty_deletes_all_fifty_and_redo_restores_them(app, mint):
    async with connect(app) as client:
        alice = Caller(client, mint("alice"))
        await alice.add("Keep")
        made = await alice.ok("create_tasks", {"tasks": [{"title": f"Step {i}"} for i in range(50)]})
        undo_id = await undo(alice, made["change_id"])
        assert await alice.all_ids() == [1]
        assert (await alice.page(status="deleted"))["total"] == 50
        change = (await alice.ok("list_changes", limit=1))["changes"][0]
        assert change["change_id"] == undo_id and change["task_count"] == 50 and len(change["task_ids"]) == 20
        await undo(alice, undo_id)
        assert await alice.all_ids() == list(range(1, 52))


async def test_undoing_a_create_deletes_subtasks_added_under_it_since_and_redo_restores_them(app, mint):
    async with connect(app) as client:
        alice = Caller(client, mint("alice"))
        made = await alice.ok("create_task", title="Plan")
        await alice.add("Added later", parent_id=1)
        undo_id = await undo(alice, made["task"]["id"] and made["change_id"])
        assert await alice.all_ids() == []
        change = (await alice.ok("list_changes", limit=1))["changes"][0]
        assert change["task_ids"] == [1, 2]
        await undo(alice, undo_id)
        assert await alice.all_ids() == [1, 2]


async def test_a_later_edit_blocks_the_undo_and_the_message_names_the_later_changes(app, mint):
    async with connect(app) as client:
        alice = Caller(client, mint("alice"))
        await alice.add("Task")
        first = await alice.ok("update_task", task_id=1, priority="high")
        second = await alice.ok("update_task", task_id=1, title="Edited")
        third = await alice.ok("update_task", task_id=1, tags=["x"])
        text = await alice.fails("undo_change", "conflict", change_id=first["change_id"])
        assert f"{third['change_id']}, {second['change_id']}" in text
        assert (await alice.task(1))["priority"] == "high"  # nothing was changed
        await undo(alice, third["change_id"])
        await undo(alice, second["change_id"])
        await undo(alice, first["change_id"])
        assert (await alice.task(1))["priority"] == "none"


async def test_undoing_a_change_already_undone_is_a_conflict_naming_the_undo(app, mint):
    async with connect(app) as client:
        alice = Caller(client, mint("alice"))
        made = await alice.ok("create_task", title="Task")
        undo_id = await undo(alice, made["change_id"])
        text = await alice.fails("undo_change", "conflict", change_id=made["change_id"])
        assert f"already undone by change {undo_id}" in text
        listed = (await alice.ok("list_changes"))["changes"]
        assert listed[0]["undoes"] == made["change_id"] and listed[1]["undone_by"] == undo_id


async def test_undo_re_checks_that_a_revived_subtask_has_a_live_parent(app, mint):
    async with connect(app) as client:
        alice = Caller(client, mint("alice"))
        await alice.add("Parent")
        await alice.add("Child", parent_id=1)
        child_delete = await alice.ok("delete_task", task_id=2)
        await alice.delete(1)
        text = await alice.fails("undo_change", "conflict", change_id=child_delete["change_id"])
        assert "task 2" in text and "deleted parent" in text and "restore_task" in text


async def test_undo_re_checks_that_a_move_back_makes_no_parent_cycle(app, mint):
    async with connect(app) as client:
        alice = Caller(client, mint("alice"))
        await alice.add("A")
        await alice.add("B", parent_id=1)
        moved = await alice.ok("update_task", task_id=2, clear=["parent_id"])
        await alice.update(1, parent_id=2)
        text = await alice.fails("undo_change", "conflict", change_id=moved["change_id"])
        assert "parent cycle" in text and "task 2" in text
        assert (await alice.task(2))["parent_id"] is None


async def test_an_unknown_or_foreign_change_is_not_found(app, mint):
    async with connect(app) as client:
        alice, bob = Caller(client, mint("alice")), Caller(client, mint("bob"))
        made = await alice.ok("create_task", title="Mine")
        await bob.fails("undo_change", "not_found", change_id=made["change_id"])
        await alice.fails("undo_change", "not_found", change_id=99)
        assert await alice.all_ids() == [1]


async def test_roles_members_undo_their_own_changes_admins_any_viewers_none(app, mint):
    owner_orgs = [{"id": "org-acme", "slug": "acme", "role": "owner"}]
    viewer_orgs = [{"id": "org-acme", "slug": "acme", "role": "viewer"}]
    async with connect(app) as client:
        member = Caller(client, mint("mia", organizations=ORGS))
        other = Caller(client, mint("max", organizations=ORGS))
        owner = Caller(client, mint("olga", organizations=owner_orgs))
        viewer = Caller(client, mint("vic", organizations=viewer_orgs))
        mine = await member.ok("create_task", title="By mia", workspace="acme")
        theirs = await other.ok("create_task", title="By max", workspace="acme")
        text = await member.fails("undo_change", "forbidden", change_id=theirs["change_id"], workspace="acme")
        assert "'member'" in text and "acme" in text and "admins and owners" in text
        text = await viewer.fails("undo_change", "forbidden", change_id=mine["change_id"], workspace="acme")
        assert "'viewer'" in text and "undo changes" in text
        await member.ok("undo_change", change_id=mine["change_id"], workspace="acme")
        await owner.ok("undo_change", change_id=theirs["change_id"], workspace="acme")
        assert (await owner.page(workspace="acme"))["total"] == 0


async def test_undoing_an_assignment_to_a_member_no_longer_known_is_a_conflict(app, mint):
    async with connect(app) as client:
        mia = Caller(client, mint("mia", organizations=ORGS))
        max_ = Caller(client, mint("max", organizations=ORGS))
        await max_.ok("list_workspaces")  # max becomes a known member
        await mia.ok("create_task", title="Shared", workspace="acme", assignee="max")
        cleared = await mia.ok("update_task", task_id=1, clear=["assignee"], workspace="acme")
        await Caller(client, mint("max", organizations=[])).ok("list_workspaces")  # max left acme
        text = await mia.fails("undo_change", "conflict", change_id=cleared["change_id"], workspace="acme")
        assert "max" in text and "known member" in text
