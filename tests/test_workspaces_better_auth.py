"""Workspaces end to end: a real Better Auth with the organization plugin, its JWTs, task-mcp over stdio and HTTP.

One organization ("Acme") holds an owner, an admin, a member and a viewer (the custom role of
tests/better_auth/server.mjs); an outsider owns another organization ("Globex"). Their JWTs come
from `/api/auth/token`, where the JWT plugin's `definePayload` lists each user's memberships in the
`organizations` claim. The users and tokens are made once per module; every test gets a fresh
SQLite database and a fresh task-mcp: a `task-mcp serve` subprocess (tokens in `_meta`) or the
Streamable HTTP app under uvicorn (tokens in `Authorization: Bearer`).
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import httpx2
import jwt
import pytest
from mcp import Client, StdioServerParameters

from task_mcp.config import Settings
from task_mcp.http import create_http_app
from tests.helpers import Caller
from tests.test_http import MCP_HEADERS, call_body, serve_asgi
from tests.test_http import connect as connect_http

if TYPE_CHECKING:  # imported by pytest_plugins below, so that pytest rewrites its asserts
    from tests.better_auth_fixture import BetterAuth, BetterAuthUser, Organization

pytest_plugins = ["tests.better_auth_fixture"]  # better_auth, short_lived_better_auth

ROLES = ("owner", "admin", "member", "viewer")
WRITERS = ("owner", "admin", "member")


@dataclass(frozen=True)
class Served:
    connect: Callable[[str], Awaitable[Caller]]  # a caller with this token
    http_url: str | None  # the /mcp endpoint over HTTP; None over stdio


@dataclass(frozen=True)
class Team:
    acme: Organization
    users: dict[str, BetterAuthUser]  # by role, plus "multi" (viewer and member) and "outsider" (owns globex)
    tokens: dict[str, str]  # JWTs from /api/auth/token, by the same keys
    globex: Organization


@pytest.fixture(scope="module")
def team(better_auth: BetterAuth) -> Team:
    users = {role: better_auth.sign_up(role.title()) for role in (*ROLES, "multi", "outsider")}
    acme = better_auth.create_organization(users["owner"], "Acme")
    for role in ("admin", "member", "viewer"):
        better_auth.add_member(acme, users[role], role)
    better_auth.add_member(acme, users["multi"], ["viewer", "member"])  # stored as "viewer,member"
    globex = better_auth.create_organization(users["outsider"], "Globex")
    tokens = {key: better_auth.jwt(user.session_token) for key, user in users.items()}  # 15 minutes
    return Team(acme, users, tokens, globex)


async def serve(stack: AsyncExitStack, transport: str, ba: BetterAuth, database_url: str, **env: str) -> Served:
    """A fresh task-mcp trusting `ba`, kept running until `stack` closes."""
    if transport == "stdio":
        environment = {
            "TASK_MCP_DATABASE_URL": database_url,
            "TASK_MCP_BETTER_AUTH_URL": ba.url,
            "TASK_MCP_LOG_LEVEL": "WARNING",
            **env,
        }
        params = StdioServerParameters(command=sys.executable, args=["-m", "task_mcp", "serve"], env=environment)
        client = await stack.enter_async_context(Client(params, read_timeout_seconds=20))  # type: ignore[arg-type]

        async def over_stdio(token: str) -> Caller:
            return Caller(client, token)  # one process, the token in each call's _meta

        return Served(over_stdio, None)

    overrides = {key.removeprefix("TASK_MCP_").lower(): value for key, value in env.items()}
    settings = Settings(_env_file=None, database_url=database_url, better_auth_url=ba.url, **overrides)
    url = stack.enter_context(serve_asgi(lambda port: create_http_app(settings, host="127.0.0.1", port=port)))
    url += "/mcp"
    sessions: dict[str, Caller] = {}

    async def over_http(token: str) -> Caller:
        if token not in sessions:  # one SDK session per token, its Authorization header on every request
            sessions[token] = Caller(await stack.enter_async_context(connect_http(url, token)), token)
        return sessions[token]

    return Served(over_http, url)


@pytest.fixture(params=["stdio", "http"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database_file(tmp_path: Path, _sqlite_template: Path) -> str:
    path = tmp_path / "tasks.db"
    path.write_bytes(_sqlite_template.read_bytes())
    return f"sqlite:///{path}"


@pytest.fixture
async def stack() -> AsyncIterator[AsyncExitStack]:
    async with AsyncExitStack() as stack:
        yield stack


@pytest.fixture
async def people(
    stack: AsyncExitStack, transport: str, better_auth: BetterAuth, database_file: str, team: Team
) -> dict[str, Caller]:
    """Each of the team, connected to one fresh task-mcp, by role (and "outsider")."""
    served = await serve(stack, transport, better_auth, database_file)
    return {key: await served.connect(token) for key, token in team.tokens.items()}


def in_org(team: Team, **arguments: Any) -> dict[str, Any]:
    return {"workspace": team.acme.slug, **arguments}


def names_task(message: str, task_id: int) -> bool:
    return re.search(rf"(task(_id)?|#)\W{{0,3}}{task_id}\b", message, re.IGNORECASE) is not None


# --- what each caller sees ---------------------------------------------------------------------


@pytest.mark.anyio
async def test_list_workspaces_shows_personal_first_then_the_organization_with_the_callers_role(
    people: dict[str, Caller], team: Team
) -> None:
    for role in ROLES:
        answer = await people[role].ok("list_workspaces")
        assert "workspace" not in answer  # several workspaces: no top-level one
        personal, acme = answer["workspaces"]
        assert (personal["workspace"], personal["id"], personal["role"]) == ("personal", team.users[role].id, "owner")
        assert (acme["workspace"], acme["id"], acme["name"], acme["role"]) == (
            team.acme.slug,
            team.acme.id,
            "Acme",
            role,
        )
        assert "members" not in acme  # members only when one workspace is asked for
    outsider = (await people["outsider"].ok("list_workspaces"))["workspaces"]
    assert [w["workspace"] for w in outsider] == ["personal", team.globex.slug]


@pytest.mark.anyio
async def test_list_workspaces_for_the_organization_lists_the_members_who_have_used_the_server(
    people: dict[str, Caller], team: Team
) -> None:
    owner, member, viewer = people["owner"], people["member"], people["viewer"]
    await member.ok("list_tasks", in_org(team))
    answer = await owner.ok("list_workspaces", workspace=team.acme.slug)
    [acme] = answer["workspaces"]
    assert (acme["workspace"], acme["id"], acme["role"]) == (team.acme.slug, team.acme.id, "owner")
    # The admin and the viewer never called: the server knows only the tokens it has seen.
    by_id = {m["user_id"]: m for m in acme["members"]}
    assert acme["members"][0]["user_id"] == team.users["owner"].id  # the caller first
    assert set(by_id) == {team.users["owner"].id, team.users["member"].id}
    assert acme["members_total"] == 2
    assert by_id[team.users["member"].id] == {
        "user_id": team.users["member"].id,
        "name": "Member",
        "email": team.users["member"].email,
        "role": "member",
    }

    await viewer.ok("list_tasks", in_org(team))
    [acme] = (await member.ok("list_workspaces", workspace=team.acme.id))["workspaces"]  # by id too
    assert acme["workspace"] == team.acme.slug
    assert acme["members"][0]["user_id"] == team.users["member"].id
    assert {m["user_id"]: m["role"] for m in acme["members"]} == {
        team.users["owner"].id: "owner",
        team.users["member"].id: "member",
        team.users["viewer"].id: "viewer",
    }
    assert acme["members_total"] == 3


@pytest.mark.anyio
async def test_every_role_reads_the_organizations_tasks_by_slug_or_id(people: dict[str, Caller], team: Team) -> None:
    owner = people["owner"]
    first = await owner.ok("create_task", in_org(team, title="Ship the release"))
    assert first["workspace"] == team.acme.slug
    assert (first["task"]["id"], first["task"]["created_by"]) == (1, team.users["owner"].id)
    await owner.ok("create_task", in_org(team, title="Write the notes", parent_id=1))

    for role in ROLES:
        caller = people[role]
        for workspace in (team.acme.slug, team.acme.id):
            page = await caller.ok("list_tasks", {"workspace": workspace, "status": "all"})
            assert page["workspace"] == team.acme.slug
            assert page["total"] == 2
            assert sorted(t["title"] for t in page["tasks"]) == ["Ship the release", "Write the notes"]
            got = await caller.ok("get_task", {"workspace": workspace, "task_id": 2})
            assert got["workspace"] == team.acme.slug
            assert (got["task"]["title"], got["task"]["parent_id"]) == ("Write the notes", 1)
        assert (await caller.page())["total"] == 0  # their personal list is another list


# --- what each role may write ------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_viewer_may_write_nothing_and_is_refused_before_the_task_is_read(
    people: dict[str, Caller], team: Team
) -> None:
    owner, viewer = people["owner"], people["viewer"]
    await owner.ok("create_task", in_org(team, title="Kept"))
    await owner.ok("create_task", in_org(team, title="In the trash"))
    await owner.ok("delete_task", in_org(team, task_id=2))

    attempts: list[tuple[str, dict[str, Any], str]] = [
        ("create_task", {"title": "Mine now"}, "create"),
        ("create_tasks", {"tasks": [{"title": "One"}, {"title": "Two"}]}, "create"),
        ("update_task", {"task_id": 1, "title": "Renamed"}, "update|change"),
        ("complete_task", {"task_id": 1}, "complete|change"),
        ("delete_task", {"task_id": 1}, "delete"),
        ("restore_task", {"task_id": 2}, "restore"),
        # A task that does not exist is refused the same way: the role is checked first.
        ("update_task", {"task_id": 999, "title": "Renamed"}, "update|change"),
        ("delete_task", {"task_id": 999}, "delete"),
    ]
    for tool, arguments, action in attempts:
        message = await viewer.fails(tool, "forbidden", in_org(team, **arguments))
        assert "viewer" in message and team.acme.slug in message, (tool, message)
        assert re.search(action, message, re.IGNORECASE), (tool, message)  # the action, in words
        assert "member" in message, (tool, message)  # who may

    page = await owner.ok("list_tasks", in_org(team, status="all"))
    assert [(t["id"], t["title"], t["status"]) for t in page["tasks"]] == [(1, "Kept", "open")]
    assert (await owner.ok("get_task", in_org(team, task_id=1)))["task"]["version"] == 1
    await owner.fails("get_task", "not_found", in_org(team, task_id=2))  # still in the trash
    # Nothing the viewer tried used up a number.
    assert (await owner.ok("create_task", in_org(team, title="Next")))["task"]["id"] == 3


@pytest.mark.anyio
@pytest.mark.parametrize("role", WRITERS)
async def test_members_admins_and_owners_create_update_and_complete_anyones_tasks(
    people: dict[str, Caller], team: Team, role: str
) -> None:
    caller, me = people[role], team.users[role]
    someone_else = people["admin" if role != "admin" else "member"]
    theirs = (await someone_else.ok("create_task", in_org(team, title="Theirs")))["task"]

    created = await caller.ok("create_task", in_org(team, title="Mine"))
    assert created["workspace"] == team.acme.slug and created["created"] is True
    assert (created["task"]["id"], created["task"]["created_by"]) == (2, me.id)
    batch = await caller.ok("create_tasks", in_org(team, tasks=[{"title": "Step 1"}, {"title": "Step 2"}]))
    assert batch["workspace"] == team.acme.slug
    assert [(t["id"], t["created_by"]) for t in batch["tasks"]] == [(3, me.id), (4, me.id)]

    updated = await caller.ok("update_task", in_org(team, task_id=theirs["id"], title="Theirs, edited"))
    assert updated["workspace"] == team.acme.slug
    assert (updated["task"]["title"], updated["task"]["version"]) == ("Theirs, edited", 2)
    assert updated["task"]["created_by"] == theirs["created_by"] != me.id  # editing is not taking over
    completed = await caller.ok("complete_task", in_org(team, task_id=theirs["id"]))
    assert completed["workspace"] == team.acme.slug and completed["task"]["status"] == "completed"

    viewer_sees = await people["viewer"].ok("list_tasks", in_org(team, status="all"))
    assert viewer_sees["total"] == 4


@pytest.mark.anyio
async def test_roles_held_together_add_up(people: dict[str, Caller], team: Team) -> None:
    multi = people["multi"]
    [_, acme] = (await multi.ok("list_workspaces"))["workspaces"]
    assert acme["role"].lower().replace(" ", "").split(",") == ["viewer", "member"]
    task = (await multi.ok("create_task", in_org(team, title="Viewer and member")))["task"]  # member's right
    await multi.ok("complete_task", in_org(team, task_id=task["id"]))
    await multi.ok("delete_task", in_org(team, task_id=task["id"]))  # their own
    await people["owner"].ok("create_task", in_org(team, title="The owner's"))
    await multi.fails("delete_task", "forbidden", in_org(team, task_id=2))


@pytest.mark.anyio
async def test_a_member_deletes_and_restores_only_what_they_created_subtree_included(
    people: dict[str, Caller], team: Team
) -> None:
    owner, admin, member = people["owner"], people["admin"], people["member"]
    await owner.ok("create_task", in_org(team, title="Owner's"))  # 1
    await member.ok("create_task", in_org(team, title="Member's"))  # 2
    await member.ok("create_task", in_org(team, title="Member's step", parent_id=2))  # 3
    await member.ok("create_task", in_org(team, title="Member's other"))  # 4
    await admin.ok("create_task", in_org(team, title="Admin's step under it", parent_id=4))  # 5

    message = await member.fails("delete_task", "forbidden", in_org(team, task_id=1))
    assert "member" in message and team.acme.slug in message and "delete" in message.lower()
    assert "admin" in message or "owner" in message  # who may
    assert names_task(message, 1), message
    # Task 4 is the member's, but its subtree holds the admin's task 5: nothing is deleted.
    message = await member.fails("delete_task", "forbidden", in_org(team, task_id=4))
    assert names_task(message, 5), message
    for task_id in (4, 5):
        assert (await member.ok("get_task", in_org(team, task_id=task_id)))["task"]["version"] == 1
    # A task that does not exist: the role may delete, so the task is looked up.
    await member.fails("delete_task", "not_found", in_org(team, task_id=999))

    deleted = await member.ok("delete_task", in_org(team, task_id=2))  # 2 and its step 3, both the member's
    assert deleted["workspace"] == team.acme.slug and deleted["deleted"] is True
    await owner.fails("get_task", "not_found", in_org(team, task_id=3))
    restored = await member.ok("restore_task", in_org(team, task_id=2))
    assert restored["workspace"] == team.acme.slug
    assert (await owner.ok("get_task", in_org(team, task_id=3)))["task"]["title"] == "Member's step"

    # Admins and owners delete and restore any task; a member may not restore what holds others' work.
    await admin.ok("delete_task", in_org(team, task_id=4))  # 4 with the admin's 5
    message = await member.fails("restore_task", "forbidden", in_org(team, task_id=4))
    assert names_task(message, 5), message
    await owner.fails("get_task", "not_found", in_org(team, task_id=4))
    await owner.ok("restore_task", in_org(team, task_id=4))
    assert (await member.ok("get_task", in_org(team, task_id=5)))["task"]["title"] == "Admin's step under it"

    await admin.ok("delete_task", in_org(team, task_id=1))  # the owner's
    await member.fails("restore_task", "forbidden", in_org(team, task_id=1))
    await admin.ok("restore_task", in_org(team, task_id=1))
    await owner.ok("delete_task", in_org(team, task_id=2))  # the member's
    await owner.ok("restore_task", in_org(team, task_id=2))
    assert (await owner.ok("list_tasks", in_org(team, status="all")))["total"] == 5


@pytest.mark.anyio
async def test_an_assignee_is_a_label_that_grants_nothing(people: dict[str, Caller], team: Team) -> None:
    member, viewer = people["member"], people["viewer"]
    await viewer.ok("list_tasks", in_org(team))  # now a known member of the workspace
    viewer_id = team.users["viewer"].id

    task = (await member.ok("create_task", in_org(team, title="Review", assignee=team.users["viewer"].email)))["task"]
    assert (task["assignee"], task["created_by"]) == (viewer_id, team.users["member"].id)
    mine = await viewer.ok("list_tasks", in_org(team, assignee="me"))
    assert [t["id"] for t in mine["tasks"]] == [task["id"]]
    # Assigned, and still a viewer: may not complete it.
    message = await viewer.fails("complete_task", "forbidden", in_org(team, task_id=task["id"]))
    assert "viewer" in message

    taken = (await member.ok("update_task", in_org(team, task_id=task["id"], assignee="me")))["task"]
    assert taken["assignee"] == team.users["member"].id
    cleared = (await member.ok("update_task", in_org(team, task_id=task["id"], clear=["assignee"])))["task"]
    assert cleared.get("assignee") is None
    assert [t["id"] for t in (await member.ok("list_tasks", in_org(team, assignee="none")))["tasks"]] == [task["id"]]
    # Someone this workspace has never seen (the outsider is not in Acme) cannot be assigned.
    await member.fails("create_task", "not_found", in_org(team, title="Nope", assignee=team.users["outsider"].email))


# --- who sees what -----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_another_organizations_tasks_are_not_found_like_a_workspace_that_does_not_exist(
    people: dict[str, Caller], team: Team
) -> None:
    outsider, member = people["outsider"], people["member"]
    globex = await outsider.ok("create_task", {"workspace": team.globex.slug, "title": "Globex secret"})
    assert (globex["workspace"], globex["task"]["id"]) == (team.globex.slug, 1)
    await member.ok("create_task", in_org(team, title="Acme plan"))

    missing = await member.fails("list_tasks", "not_found", {"workspace": "no-such-org"})
    assert "list_workspaces" in missing
    for workspace in (team.globex.slug, team.globex.id):
        for tool, arguments in (
            ("list_tasks", {}),
            ("get_task", {"task_id": 1}),
            ("create_task", {"title": "Intrusion"}),
            ("delete_task", {"task_id": 1}),
            ("list_workspaces", {}),
        ):
            message = await member.fails(tool, "not_found", {"workspace": workspace, **arguments})
            assert "Globex secret" not in message and "list_workspaces" in message, (tool, message)
        # Word for word what a workspace that does not exist gets: its existence does not leak.
        refused = await member.fails("list_tasks", "not_found", {"workspace": workspace})
        assert refused.replace(workspace, "X") == missing.replace("no-such-org", "X")
    await outsider.fails("get_task", "not_found", in_org(team, task_id=1))

    page = await outsider.ok("list_tasks", {"workspace": team.globex.slug, "status": "all"})
    assert [t["title"] for t in page["tasks"]] == ["Globex secret"]


@pytest.mark.anyio
async def test_personal_lists_stay_private_and_numbered_on_their_own(people: dict[str, Caller], team: Team) -> None:
    for role in ROLES:
        caller = people[role]
        personal = await caller.ok("create_task", {"title": f"{role}'s own"})
        assert (personal["workspace"], personal["task"]["id"]) == ("personal", 1)
        assert personal["task"]["created_by"] == team.users[role].id
        if role != "viewer":
            await caller.ok("create_task", in_org(team, title=f"{role}'s shared"))

    for role in ROLES:
        caller = people[role]
        for arguments in ({}, {"workspace": "personal"}):
            page = await caller.ok("list_tasks", {**arguments, "status": "all"})
            assert page["workspace"] == "personal"
            assert [t["title"] for t in page["tasks"]] == [f"{role}'s own"]
        assert (await caller.ok("get_task", task_id=1))["task"]["title"] == f"{role}'s own"
        await caller.fails("get_task", "not_found", task_id=2)
        shared = await caller.ok("list_tasks", in_org(team, status="all", sort="created"))
        assert [t["id"] for t in shared["tasks"]] == [3, 2, 1]  # the organization numbers on its own


# --- leaving an organization -------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_removed_member_keeps_access_until_the_old_token_expires_and_a_new_token_is_refused(
    stack: AsyncExitStack, transport: str, short_lived_better_auth: BetterAuth, database_file: str
) -> None:
    ba = short_lived_better_auth  # JWTs live 3 s, so each is fetched just before it is used
    owner, leaver = ba.sign_up("Olive"), ba.sign_up("Leo")
    org = ba.create_organization(owner, "Initech")
    ba.add_member(org, leaver, "member")
    served = await serve(stack, transport, ba, database_file, TASK_MCP_LEEWAY_SECONDS="0")

    old_token = ba.jwt(leaver.session_token)
    old = await served.connect(old_token)
    await old.ok("create_task", {"workspace": org.slug, "title": "Hand over"})
    ba.remove_member(org, owner, leaver)
    # Better Auth removed him, but this token still lists the organization: honoured until it expires.
    assert (await old.ok("list_tasks", {"workspace": org.slug}))["total"] == 1

    new = await served.connect(ba.jwt(leaver.session_token))
    message = await new.fails("list_tasks", "not_found", {"workspace": org.slug})
    assert "list_workspaces" in message
    await new.fails("get_task", "not_found", {"workspace": org.slug, "task_id": 1})
    await new.fails("create_task", "not_found", {"workspace": org.slug, "title": "Sneaky"})
    assert [w["workspace"] for w in (await new.ok("list_workspaces"))["workspaces"]] == ["personal"]
    assert (await new.ok("create_task", {"title": "My own"}))["workspace"] == "personal"

    # The call whose token no longer listed the organization took him off its known members.
    boss = await served.connect(ba.jwt(owner.session_token))
    [initech] = (await boss.ok("list_workspaces", workspace=org.slug))["workspaces"]
    assert [m["user_id"] for m in initech["members"]] == [owner.id]
    assert (await boss.ok("get_task", {"workspace": org.slug, "task_id": 1}))["task"]["created_by"] == leaver.id

    expires = jwt.decode(old_token, options={"verify_signature": False})["exp"]
    await anyio.sleep(max(0.0, expires + 1 - time.time()))
    if served.http_url is None:
        await old.fails("list_tasks", "unauthenticated", {"workspace": org.slug})
    else:  # over HTTP the SDK's bearer check refuses it before any tool runs
        async with httpx2.AsyncClient(timeout=10) as http:
            headers = {"Authorization": f"Bearer {old_token}", **MCP_HEADERS}
            body = call_body("list_tasks", {"workspace": org.slug})
            assert (await http.post(served.http_url, json=body, headers=headers)).status_code == 401
