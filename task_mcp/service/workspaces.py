"""Workspaces: who the caller is, which workspace a call names, what the caller's role there allows,
and the directory of known members.

A `Caller` is what the service knows of the verified caller: user id, `name`/`email` claims, the
organizations the token lists (with their role strings), the scopes, and the client. `resolve`
turns a `workspace` argument into a `Workspace` the caller may use ("personal", or an organization
of the token by slug or id) and `Workspace.allow` checks an action against the role, in the order
DESIGN §8 gives: the workspace (`not_found`), then scope and role (`forbidden`).

`MemberDirectory` records the caller in each organization of their token when that record
changes, and at most once an hour otherwise, so that a read stays a read.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import Connection, bindparam, delete, func, not_, select
from sqlalchemy.dialects import postgresql, sqlite

from task_mcp.db import Database
from task_mcp.errors import ForbiddenError, NotFoundError
from task_mcp.models import WORKSPACE_MEMBERS
from task_mcp.principal import Organization

PERSONAL = "personal"
ORG_PREFIX, USER_PREFIX = "org:", "user:"
READ_SCOPE, WRITE_SCOPE = "tasks:read", "tasks:write"
RECORD_EVERY_SECONDS = 3600.0
MAX_MEMBERS_SHOWN = 50

Action = Literal["read", "write", "delete", "undo"]
Level = Literal["viewer", "member", "admin"]
# What each action needs, and how the model is told who may do it.
_NEEDS: dict[Action, tuple[Level, str, str]] = {
    "read": ("viewer", "read tasks", "every role"),
    "write": ("member", "create or change tasks", "member, admin and owner"),
    "delete": ("member", "delete or restore tasks", "admin and owner (a member: tasks they created)"),
    "undo": ("member", "undo changes", "admin and owner (a member: changes they made)"),
}
_RANK: dict[Level, int] = {"viewer": 0, "member": 1, "admin": 2}


def personal_key(user_id: str) -> str:
    """The storage key of `user_id`'s personal workspace: the user id itself (as before workspaces),
    unless it starts like another kind of key, so that no user id can name an organization's rows."""
    return USER_PREFIX + user_id if user_id.startswith((ORG_PREFIX, USER_PREFIX)) else user_id


def role_level(role: str) -> Level:
    """Better Auth role strings: comma-separated roles add up, case-insensitively; unknown = viewer."""
    roles = {part.strip().lower() for part in role.split(",")}
    if roles & {"owner", "admin"}:
        return "admin"
    return "member" if "member" in roles else "viewer"


@dataclass(frozen=True)
class Caller:
    """The verified caller, as the service needs it. A plain user id string means that user, with
    no organizations and every scope (`Caller.of`)."""

    user_id: str
    name: str | None = None
    email: str | None = None
    organizations: tuple[Organization, ...] = ()
    scopes: frozenset[str] | None = None  # None: a token without a scope claim holds both
    client: str | None = None  # kept for the change journal

    @classmethod
    def of(cls, caller: Caller | str) -> Caller:
        return caller if isinstance(caller, Caller) else cls(caller)


@dataclass(frozen=True)
class Workspace:
    """A workspace the caller may use: its storage `key`, its `label` in results ("personal" or the
    organization's slug), and the caller's role there."""

    key: str
    label: str
    id: str
    name: str
    role: str
    personal: bool = False
    level: Level = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "level", "admin" if self.personal else role_level(self.role))

    @property
    def place(self) -> str:
        """How messages name it: "your list" in personal, else "workspace 'acme'"."""
        return "your list" if self.personal else f"workspace '{self.label}'"

    @property
    def hint(self) -> str:
        """The `workspace` argument to repeat in a suggested call ("" in personal)."""
        return "" if self.personal else f" with workspace '{self.label}'"

    def allow(self, caller: Caller, action: Action) -> None:
        """Scope, then role, for `action` here.

        Raises:
            ForbiddenError: the token lacks the scope, or the role may not do it.
        """
        scope = READ_SCOPE if action == "read" else WRITE_SCOPE
        if caller.scopes is not None and scope not in caller.scopes:
            raise ForbiddenError(
                f"Your token lacks the '{scope}' scope that this tool needs. Ask for a token with scope "
                f"'{scope}' from your Better Auth server, then call again."
            )
        needed, what, who = _NEEDS[action]
        if _RANK[self.level] < _RANK[needed]:
            raise ForbiddenError(
                f"Your role in workspace '{self.label}' is {self.role!r}, which may not {what}; only {who} may. "
                "Nothing was changed. Ask an owner or admin of the organization for another role."
            )

    def check_creator(self, caller: Caller, number: int | None, created_by: str | None, action: str) -> None:
        """A member deletes or restores only tasks they created; admins and owners any task.
        `number` is a task to check (its creator `created_by`), or the first that failed (None: none did).

        Raises:
            ForbiddenError: naming task `number`.
        """
        if number is None or self.level == "admin" or created_by == caller.user_id:
            return
        raise ForbiddenError(
            f"Task {number} in workspace '{self.label}' was created by someone else, and your role there is "
            f"{self.role!r}: a member may {action} only tasks they created (every task of the subtree), admins "
            f"and owners any task. Nothing was changed; ask an admin or owner of the organization."
        )


@dataclass(frozen=True)
class WorkspaceInfo:
    """One entry of `list_workspaces`; `members` only when one workspace was asked for."""

    workspace: str
    id: str
    name: str
    role: str
    members_total: int
    members: list[dict[str, Any]] | None = None


def resolve(caller: Caller, workspace: str | None) -> Workspace:
    """The workspace a `workspace` argument names for `caller`.

    Raises:
        NotFoundError: the token lists no organization with that slug or id.
    """
    if workspace is None or workspace == PERSONAL:
        return Workspace(personal_key(caller.user_id), PERSONAL, caller.user_id, "Personal", "owner", personal=True)
    org = next((o for o in caller.organizations if o.slug == workspace), None)
    org = org or next((o for o in caller.organizations if o.id == workspace), None)
    if org is None:
        raise NotFoundError(f"No workspace '{workspace}' in your token. Call list_workspaces to see yours.")
    return _of_organization(org)


def _of_organization(org: Organization) -> Workspace:
    # An organization whose slug is "personal" is reached by its id, and named by it in results.
    label = org.id if org.slug == PERSONAL else org.slug
    return Workspace(ORG_PREFIX + org.id, label, org.id, org.name or org.slug, org.role)


def workspaces_of(caller: Caller) -> list[Workspace]:
    """Every workspace of the caller: personal first, then the token's organizations in its order."""
    return [resolve(caller, None)] + [_of_organization(org) for org in caller.organizations]


# --- the directory of known members -------------------------------------------------------------

M = WORKSPACE_MEMBERS.c
MEMBER = select(M.user_id).where(
    M.workspace_id == bindparam("ws"),
    (M.user_id == bindparam("who")) | (func.lower(M.email) == func.lower(bindparam("who"))),
)
MEMBERS_TOTAL = (
    select(M.workspace_id, func.count())
    .where(M.workspace_id.in_(bindparam("keys", expanding=True)))
    .group_by(M.workspace_id)
)
MEMBERS = (
    select(M.user_id, M.name, M.email, M.role)
    .where(M.workspace_id == bindparam("ws"), M.user_id != bindparam("me"))
    .order_by(M.last_seen_at.desc(), M.user_id)
    .limit(MAX_MEMBERS_SHOWN - 1)
)
LEFT = delete(WORKSPACE_MEMBERS).where(
    M.user_id == bindparam("me"), not_(M.workspace_id.in_(bindparam("keys", expanding=True)))
)
LEFT_ALL = delete(WORKSPACE_MEMBERS).where(M.user_id == bindparam("me"))
PURGE_MEMBERS = delete(WORKSPACE_MEMBERS).where(M.last_seen_at < bindparam("cutoff", type_=M.last_seen_at.type))


def _upsert(insert: Callable[[Any], Any]) -> Any:
    stmt = insert(WORKSPACE_MEMBERS)
    return stmt.on_conflict_do_update(
        index_elements=[M.workspace_id, M.user_id],
        set_={name: stmt.excluded[name] for name in ("name", "email", "role", "last_seen_at")},
    )


_UPSERT = {"postgresql": _upsert(postgresql.insert), "sqlite": _upsert(sqlite.insert)}


def _record(caller: Caller) -> frozenset[tuple[str, str, str, str]]:
    """What `MemberDirectory` writes of a caller: each organization with their role, name and email."""
    return frozenset((o.id, o.role, caller.name or "", caller.email or "") for o in caller.organizations)


class MemberDirectory:
    """The known members of each organization, written from the callers' own tokens."""

    def __init__(self, database: Database, clock: Callable[[], dt.datetime]) -> None:
        self._db = database
        self._clock = clock
        self._written: dict[str, tuple[frozenset[tuple[str, ...]], float]] = {}
        self._lock = threading.Lock()

    def recorded(self, caller: Caller) -> bool:
        """Whether `record(caller)` has nothing to write now (then a read call writes nothing)."""
        with self._lock:
            known = self._written.get(caller.user_id)
        return known is not None and known[0] == _record(caller) and time.monotonic() - known[1] < RECORD_EVERY_SECONDS

    def record(self, caller: Caller) -> None:
        """Record the caller in each organization of their token, and remove them from the ones it
        no longer lists, when that changed since this process last wrote it or an hour has passed."""
        if self.recorded(caller):
            return
        orgs = caller.organizations
        record = _record(caller)
        now = self._clock()
        rows = [
            {
                "workspace_id": ORG_PREFIX + o.id,
                "user_id": caller.user_id,
                "name": caller.name,
                "email": caller.email,
                "role": o.role,
                "last_seen_at": now,
            }
            for o in orgs
        ]

        def write(conn: Connection) -> None:
            if rows:
                conn.execute(LEFT, {"me": caller.user_id, "keys": [r["workspace_id"] for r in rows]})
                conn.execute(_UPSERT[conn.dialect.name], rows)
            else:
                conn.execute(LEFT_ALL, {"me": caller.user_id})

        self._db.run(write, write=True)
        with self._lock:
            if len(self._written) > 100_000:  # a bound on memory: forgetting only costs a write
                self._written.clear()
            self._written[caller.user_id] = (record, time.monotonic())

    def assignee(self, conn: Connection, ws: Workspace, caller: Caller, who: str) -> str:
        """The user id that `who` ("me", a user id or an email) names among the workspace's members.

        Raises:
            NotFoundError: no known member (in personal: anyone but the caller), saying how to find them.
        """
        if who == "me":
            return caller.user_id
        if ws.personal:
            if who == caller.user_id or (caller.email is not None and who.lower() == caller.email.lower()):
                return caller.user_id
            raise NotFoundError(
                f"assignee: '{who}' is not you; in your personal list a task can be assigned only to you "
                "('me'). Use an organization's workspace to assign tasks to others."
            )
        found = conn.execute(MEMBER, {"ws": ws.key, "who": who}).scalars().first()
        if found is None:
            raise NotFoundError(
                f"assignee: no known member '{who}' in {ws.place}. Call list_workspaces{ws.hint} to see its "
                "members (people appear there once they have used this server)."
            )
        return str(found)

    def assignee_filter(self, conn: Connection, ws: Workspace, caller: Caller, who: str | None) -> str | None:
        """The `assignee` filter of `list_tasks`: "none", or the user id it names. A user id filters
        as given (a former member's tasks stay findable); "me" and emails are resolved.

        Raises:
            NotFoundError: an email that names no known member.
        """
        if who is None or who == "none" or (who != "me" and "@" not in who):
            return who
        return self.assignee(conn, ws, caller, who)

    def describe(self, conn: Connection, caller: Caller, named: Workspace | None) -> list[WorkspaceInfo]:
        """`list_workspaces`: every workspace of the caller, or `named` alone with its members."""
        chosen = [named] if named is not None else workspaces_of(caller)
        totals = self.totals(conn, [ws.key for ws in chosen if not ws.personal])
        return [
            WorkspaceInfo(
                workspace=ws.label,
                id=ws.id,
                name=ws.name,
                role=ws.role,
                members_total=1 if ws.personal else max(totals.get(ws.key, 0), 1),
                members=self.members(conn, ws, caller) if named is not None else None,
            )
            for ws in chosen
        ]

    def totals(self, conn: Connection, keys: Sequence[str]) -> dict[str, int]:
        if not keys:
            return {}
        return {key: int(count) for key, count in conn.execute(MEMBERS_TOTAL, {"keys": list(keys)})}

    def members(self, conn: Connection, ws: Workspace, caller: Caller) -> list[dict[str, Any]]:
        me = {"user_id": caller.user_id, "name": caller.name, "email": caller.email, "role": ws.role}
        if ws.personal:
            return [me]
        others = conn.execute(MEMBERS, {"ws": ws.key, "me": caller.user_id}).all()
        return [me] + [{"user_id": u, "name": n, "email": e, "role": r} for u, n, e, r in others]
