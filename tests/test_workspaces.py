"""Workspaces (DESIGN §8): organizations from the token, roles, numbering, assignees, known members.

Every test drives the real server through the SDK's in-memory client with tokens minted by the
Better Auth stand-in, carrying an `organizations` claim, on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from task_mcp.server import TaskMcp
from tests.helpers import Caller, connect

pytestmark = pytest.mark.anyio

ACME = {"id": "org-acme", "slug": "acme", "name": "Acme Inc."}
GLOBEX = {"id": "org-globex", "slug": "globex", "name": "Globex"}


def member_of(org: dict[str, str], role: str) -> dict[str, Any]:
    return {**org, "role": role}


@asynccontextmanager
async def people(
    app: TaskMcp, mint: Callable[..., str], **roles: str | list[dict[str, Any]] | None
) -> AsyncIterator[dict[str, Caller]]:
    """One `Caller` per keyword: `alice="owner"` is alice with that role in Acme; a list is her
    whole organizations claim; None leaves the claim out."""
    async with connect(app) as client:
        found = {}
        for name, role in roles.items():
            orgs = [member_of(ACME, role)] if isinstance(role, str) else role
            found[name] = Caller(client, mint(name, organizations=orgs))
        yield found


def retoken(person: Caller, mint: Callable[..., str], name: str, orgs: list[dict[str, Any]] | None) -> Caller:
    """The same user on the same session with a new token (a new membership list)."""
    return Caller(person.client, mint(name, organizations=orgs))


# --- which workspace ------------------------------------------------------------------------------


async def test_an_organizations_tasks_are_numbered_from_one_and_named_by_slug_or_id(app, mint):
    async with people(app, mint, alice="owner") as p:
        alice = p["alice"]
        await alice.add("Personal one")
        await alice.add("Personal two")
        made = await alice.ok("create_task", title="Shared", workspace="acme")
        assert made["workspace"] == "acme" and made["task"]["id"] == 1
        assert made["task"]["created_by"] == "alice" and made["task"]["assignee"] is None
        by_id = await alice.ok("get_task", task_id=1, workspace="org-acme")
        assert by_id["workspace"] == "acme" and by_id["task"]["title"] == "Shared"
        personal = await alice.ok("get_task", task_id=1)
        assert personal["workspace"] == "personal" and personal["task"]["title"] == "Personal one"
        assert (await alice.ok("get_task", task_id=1, workspace="personal"))["task"]["title"] == "Personal one"
        assert [t["title"] for t in (await alice.page(workspace="acme"))["tasks"]] == ["Shared"]


async def test_a_workspace_the_token_does_not_list_is_not_found_and_says_what_to_do(app, mint):
    async with people(app, mint, alice="owner", gina=[member_of(GLOBEX, "owner")]) as p:
        await p["gina"].ok("create_task", title="Globex secret", workspace="globex")
        for workspace in ("globex", "org-globex", "nowhere"):
            text = await p["alice"].fails("get_task", "not_found", task_id=1, workspace=workspace)
            assert text == (f"not_found: No workspace '{workspace}' in your token. Call list_workspaces to see yours.")
            await p["alice"].fails("create_task", "not_found", title="x", workspace=workspace)
            assert "secret" not in text


async def test_personal_lists_stay_private_between_members_of_one_organization(app, mint):
    async with people(app, mint, alice="owner", bob="member") as p:
        await p["alice"].add("Alice's own")
        assert await p["bob"].all_ids() == []
        text = await p["bob"].fails("get_task", "not_found", task_id=1)
        assert "Alice" not in text
        await p["bob"].fails("get_task", "not_found", task_id=1, workspace="personal")


async def test_an_organization_whose_slug_is_personal_is_reached_by_its_id(app, mint):
    odd = {"id": "org-odd", "slug": "personal", "role": "owner"}
    async with people(app, mint, alice=[odd]) as p:
        alice = p["alice"]
        await alice.add("Mine")
        made = await alice.ok("create_task", title="Odd org's", workspace="org-odd")
        assert made["workspace"] == "org-odd" and made["task"]["id"] == 1
        assert (await alice.task(1))["title"] == "Mine"  # "personal" stays the caller's own list
        listed = (await alice.ok("list_workspaces"))["workspaces"]
        assert [w["workspace"] for w in listed] == ["personal", "org-odd"]


async def test_a_token_that_drops_an_organization_loses_it_at_once_and_leaves_its_members(app, mint):
    async with people(app, mint, alice="owner", bob="member") as p:
        bob = p["bob"]
        await bob.ok("create_task", title="Bob's shared", workspace="acme")
        acme = (await p["alice"].ok("list_workspaces", workspace="acme"))["workspaces"][0]
        assert acme["members_total"] == 2
        assert [m["user_id"] for m in acme["members"]] == ["alice", "bob"]

        removed = retoken(bob, mint, "bob", [])
        await removed.fails("get_task", "not_found", task_id=1, workspace="acme")
        await removed.fails("list_tasks", "not_found", workspace="acme")
        acme = (await p["alice"].ok("list_workspaces", workspace="acme"))["workspaces"][0]
        assert acme["members_total"] == 1 and [m["user_id"] for m in acme["members"]] == ["alice"]
        shared = await p["alice"].ok("get_task", task_id=1, workspace="acme")
        assert shared["task"]["title"] == "Bob's shared"  # the tasks stay


# --- roles ----------------------------------------------------------------------------------------

WRITES = ["create_task", "create_tasks", "update_task", "complete_task", "delete_task", "restore_task"]
# What each role may do to a task it did not create (DESIGN §8's table).
MAY = {
    "viewer": set(),
    "member": {"create_task", "create_tasks", "update_task", "complete_task"},
    "admin": set(WRITES),
    "owner": set(WRITES),
}


def arguments(tool: str, live: int, deleted: int) -> dict[str, Any]:
    return {
        "create_task": {"title": "New"},
        "create_tasks": {"tasks": [{"title": "New"}]},
        "update_task": {"task_id": live, "title": "Changed"},
        "complete_task": {"task_id": live},
        "delete_task": {"task_id": live},
        "restore_task": {"task_id": deleted},
    }[tool]


@pytest.mark.parametrize("role", ["viewer", "member", "admin", "owner", "VIEWER", "Member", "guest"])
async def test_each_role_does_exactly_what_the_table_allows_on_every_write_tool(app, mint, role):
    expected = MAY.get(role.lower(), set())
    async with people(app, mint, olga="owner", who=role) as p:
        olga, who = p["olga"], p["who"]
        for tool in WRITES:
            made = await olga.ok("create_tasks", tasks=[{"title": "Open"}, {"title": "Trash"}], workspace="acme")
            live, deleted = (t["id"] for t in made["tasks"])
            await olga.ok("delete_task", task_id=deleted, workspace="acme")
            before = (await olga.page(workspace="acme", status="all", limit=100))["tasks"]
            result = await who.call(tool, {**arguments(tool, live, deleted), "workspace": "acme"})
            if tool in expected:
                assert not result.is_error, (role, tool, result.content)
            else:
                text = result.content[0].text
                assert text.startswith("forbidden: "), (role, tool, text)
                assert "acme" in text and "Nothing was changed" in text, text
                assert (await olga.page(workspace="acme", status="all", limit=100))["tasks"] == before
            # A clean workspace for the next tool: the owner deletes what there is.
            for task in (await olga.page(workspace="acme", status="all", limit=100))["tasks"]:
                await olga.ok("delete_task", task_id=task["id"], workspace="acme")
        # Reading is every role's right.
        assert (await who.page(workspace="acme"))["workspace"] == "acme"


async def test_a_viewers_refusal_names_the_role_the_workspace_the_action_and_who_may(app, mint):
    async with people(app, mint, vera="viewer") as p:
        text = await p["vera"].fails("create_task", "forbidden", title="x", workspace="acme")
        assert text == (
            "forbidden: Your role in workspace 'acme' is 'viewer', which may not create or change tasks; "
            "only member, admin and owner may. Nothing was changed. Ask an owner or admin of the organization "
            "for another role."
        )
        # A task that does not exist is not looked at: the role answers first.
        await p["vera"].fails("delete_task", "forbidden", task_id=999, workspace="acme")


async def test_several_comma_separated_roles_add_up(app, mint):
    async with people(app, mint, olga="owner", mia="viewer, member", ada="member,ADMIN") as p:
        await p["olga"].ok("create_task", title="Olga's", workspace="acme")
        await p["mia"].ok("update_task", task_id=1, priority="high", workspace="acme")
        await p["mia"].fails("delete_task", "forbidden", task_id=1, workspace="acme")
        await p["ada"].ok("delete_task", task_id=1, workspace="acme")


async def test_a_member_deletes_and_restores_their_own_tasks_but_not_a_subtree_holding_anothers(app, mint):
    async with people(app, mint, olga="owner", max="member") as p:
        olga, mx = p["olga"], p["max"]
        await mx.ok("create_task", title="Max's plan", workspace="acme")  # 1
        await mx.ok("create_task", title="Max's step", parent_id=1, workspace="acme")  # 2
        await olga.ok("create_task", title="Olga's step", parent_id=2, workspace="acme")  # 3
        await mx.ok("create_task", title="Max's alone", workspace="acme")  # 4

        text = await mx.fails("delete_task", "forbidden", task_id=1, workspace="acme")
        assert "Task 3" in text and "'member'" in text and "admins and owners" in text
        assert (await mx.page(workspace="acme", status="all"))["total"] == 4  # nothing was deleted
        await mx.fails("delete_task", "forbidden", task_id=3, workspace="acme")

        await mx.ok("delete_task", task_id=4, workspace="acme")
        await mx.ok("restore_task", task_id=4, workspace="acme")
        await olga.ok("delete_task", task_id=1, workspace="acme")  # the owner may delete any subtree
        restore = await mx.fails("restore_task", "forbidden", task_id=1, workspace="acme")
        assert "Task 3" in restore
        await olga.ok("restore_task", task_id=1, workspace="acme")
        assert (await mx.page(workspace="acme", status="all"))["total"] == 4


async def test_scopes_apply_on_top_of_the_role_after_the_workspace_is_found(app, mint):
    async with connect(app) as client:
        reader = Caller(client, mint("olga", organizations=[member_of(ACME, "owner")], scope="tasks:read"))
        text = await reader.fails("create_task", "forbidden", title="x", workspace="acme")
        assert "tasks:write" in text
        await reader.fails("create_task", "not_found", title="x", workspace="globex")
        await reader.ok("list_tasks", workspace="acme")


# --- numbering and keys per workspace -------------------------------------------------------------


async def test_idempotency_keys_are_per_workspace_and_caller(app, mint):
    async with people(app, mint, olga="owner", max="member") as p:
        olga, mx = p["olga"], p["max"]
        first = await olga.ok("create_task", title="Weekly", idempotency_key="k1", workspace="acme")
        again = await olga.ok("create_task", title="Weekly", idempotency_key="k1", workspace="acme")
        assert (again["created"], again["task"]["id"]) == (False, first["task"]["id"])
        other = await mx.ok("create_task", title="Weekly", idempotency_key="k1", workspace="acme")
        assert (other["created"], other["task"]["id"]) == (True, 2)
        personal = await olga.ok("create_task", title="Weekly", idempotency_key="k1")
        assert (personal["created"], personal["task"]["id"], personal["workspace"]) == (True, 1, "personal")


async def test_complete_task_checks_expected_version(app, mint):
    async with people(app, mint, olga="owner") as p:
        await p["olga"].ok("create_task", title="T", workspace="acme")
        text = await p["olga"].fails("complete_task", "conflict", task_id=1, expected_version=7, workspace="acme")
        assert "version 1" in text and "workspace 'acme'" in text
        done = await p["olga"].ok("complete_task", task_id=1, expected_version=1, workspace="acme")
        assert done["task"]["status"] == "completed"


# --- assignees ------------------------------------------------------------------------------------


async def test_assignee_accepts_me_a_member_id_or_email_and_filters_by_them(app, mint):
    async with people(app, mint, olga="owner", max="member") as p:
        olga, mx = p["olga"], p["max"]
        await mx.ok("list_tasks", workspace="acme")  # max has used the server: a known member
        a = await olga.ok("create_task", title="For max", assignee="MAX@example.com", workspace="acme")
        assert a["task"]["assignee"] == "max"
        await olga.ok("create_task", title="For me", assignee="me", workspace="acme")
        await olga.ok("create_task", title="Nobody's", workspace="acme")
        assert (await olga.ok("update_task", task_id=3, assignee="max", workspace="acme"))["task"]["assignee"] == "max"
        cleared = await olga.ok("update_task", task_id=3, clear=["assignee"], workspace="acme")
        assert cleared["task"]["assignee"] is None and cleared["task"]["version"] == 3

        def titles(page: dict[str, Any]) -> list[str]:
            return [t["title"] for t in page["tasks"]]

        assert titles(await mx.page(workspace="acme", assignee="me")) == ["For max"]
        assert titles(await olga.page(workspace="acme", assignee="max@example.com")) == ["For max"]
        assert titles(await olga.page(workspace="acme", assignee="olga")) == ["For me"]
        assert titles(await olga.page(workspace="acme", assignee="none")) == ["Nobody's"]
        compact = (await olga.page(workspace="acme", assignee="max"))["tasks"][0]
        assert compact["assignee"] == "max" and "created_by" not in compact


async def test_an_assignee_who_is_not_a_known_member_is_not_found_with_how_to_find_members(app, mint):
    async with people(app, mint, olga="owner", gina=[member_of(GLOBEX, "owner")]) as p:
        await p["gina"].ok("list_tasks", workspace="globex")  # known in Globex only
        for who in ("gina", "gina@example.com", "stranger@example.com"):
            text = await p["olga"].fails("create_task", "not_found", title="x", assignee=who, workspace="acme")
            assert "list_workspaces with workspace 'acme'" in text
        assert (await p["olga"].page(workspace="acme", status="all"))["total"] == 0
        await p["olga"].fails("list_tasks", "not_found", assignee="stranger@example.com", workspace="acme")


async def test_in_personal_only_the_user_may_be_assignee(app, mint):
    async with people(app, mint, olga="owner", max="member") as p:
        olga = p["olga"]
        for me in ("me", "olga", "OLGA@example.com"):
            assert (await olga.ok("create_task", title="Mine", assignee=me))["task"]["assignee"] == "olga"
        for other in ("max", "max@example.com"):
            await olga.fails("create_task", "not_found", title="x", assignee=other)
        assert await olga.total() == 3


# --- list_workspaces ------------------------------------------------------------------------------


async def test_list_workspaces_lists_personal_first_then_each_organization_with_the_role(app, mint):
    orgs = [member_of(ACME, "member"), {"id": "org-globex", "slug": "globex", "role": "admin"}]
    async with people(app, mint, olga="owner", max=orgs) as p:
        await p["olga"].ok("list_tasks", workspace="acme")
        answer = await p["max"].ok("list_workspaces")
        assert "workspace" not in answer
        assert answer["workspaces"] == [
            {"workspace": "personal", "id": "max", "name": "Personal", "role": "owner", "members_total": 1},
            {"workspace": "acme", "id": "org-acme", "name": "Acme Inc.", "role": "member", "members_total": 2},
            {"workspace": "globex", "id": "org-globex", "name": "globex", "role": "admin", "members_total": 1},
        ]


async def test_list_workspaces_with_a_workspace_adds_its_members_the_caller_first(app, mint):
    async with people(app, mint, olga="owner", max="member", vera="viewer") as p:
        await p["max"].ok("list_tasks", workspace="acme")
        await p["olga"].ok("list_tasks", workspace="acme")
        answer = await p["vera"].ok("list_workspaces", workspace="acme")
        [acme] = answer["workspaces"]
        assert acme["members_total"] == 3
        assert acme["members"] == [
            {"user_id": "vera", "name": "Vera", "email": "vera@example.com", "role": "viewer"},
            {"user_id": "olga", "name": "Olga", "email": "olga@example.com", "role": "owner"},
            {"user_id": "max", "name": "Max", "email": "max@example.com", "role": "member"},
        ]
        personal = (await p["vera"].ok("list_workspaces", workspace="personal"))["workspaces"]
        assert [m["user_id"] for m in personal[0]["members"]] == ["vera"]
        await p["vera"].fails("list_workspaces", "not_found", workspace="globex")


async def test_a_changed_role_is_recorded_at_the_next_call(app, mint):
    async with people(app, mint, olga="owner", max="member") as p:
        await p["max"].ok("list_tasks", workspace="acme")
        promoted = retoken(p["max"], mint, "max", [member_of(ACME, "admin")])
        await promoted.ok("list_tasks", workspace="acme")
        [acme] = (await p["olga"].ok("list_workspaces", workspace="acme"))["workspaces"]
        assert {m["user_id"]: m["role"] for m in acme["members"]} == {"olga": "owner", "max": "admin"}


# --- malformed claims -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "claim",
    [
        "acme",
        {"id": "org-acme", "slug": "acme", "role": "owner"},
        [{"id": "org-acme", "slug": "acme"}],
        [{"id": 7, "slug": "acme", "role": "owner"}],
        [{"id": "org-acme", "slug": "", "role": "owner"}],
        [{"id": "org-acme", "slug": "acme", "role": ["owner"]}],
        [{"id": "org-acme", "slug": "acme", "role": "owner", "name": 5}],
        ["org-acme"],
        [{"id": f"org-{i}", "slug": f"s{i}", "role": "member"} for i in range(101)],
    ],
)
async def test_a_malformed_organizations_claim_is_unauthenticated(app, mint, claim):
    async with connect(app) as client:
        caller = Caller(client, mint("olga", organizations=claim))
        text = await caller.fails("list_tasks", "unauthenticated")
        assert "'organizations' claim" in text and "definePayload" in text


async def test_the_organizations_claim_name_comes_from_settings(make_app, mint):
    app = make_app(organizations_claim="https://example.com/orgs")
    async with connect(app) as client:
        caller = Caller(client, mint("olga", **{"https://example.com/orgs": [member_of(ACME, "owner")]}))
        assert (await caller.ok("create_task", title="x", workspace="acme"))["workspace"] == "acme"
