"""Whatever a model sends, the server answers with a code it can act on, never `internal`.

Every tool is driven through a real in-memory MCP client with generated arguments: dates at the
edges of the calendar and of the UTC offsets, every IANA zone name and the directories between
them, Unicode that changes length when lower-cased, NUL and lone surrogates, strings past every
limit, values of the wrong JSON type, and real `next_cursor`s edited the way a model might
"fix" one. The property: no answer starts with `internal:` and nothing is logged at ERROR.

Examples are derandomized and no example database is kept, so a run is deterministic; the budget
per tool is modest (smaller on PostgreSQL, whose calls cost more).
"""

from __future__ import annotations

import base64
import json
import logging
import zoneinfo
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import anyio.from_thread
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp.types import CallToolResult

from task_mcp.server import TaskMcp
from tests.helpers import bearer, connect, ok, text

# The strategies below nest deeply; their repr (not the examples) is what hypothesis finds large.
pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")

# --- what a call may answer -----------------------------------------------------------------------


@dataclass
class Session:
    """One in-memory MCP session, called from synchronous hypothesis examples through a portal."""

    portal: anyio.from_thread.BlockingPortal
    client: Any
    mint: Callable[..., str]
    caplog: pytest.LogCaptureFixture
    backend: str
    cursors: dict[tuple[str, str], tuple[dict[str, Any], str]] = field(default_factory=dict)

    def budget(self, examples: int) -> int:
        return examples if self.backend == "sqlite" else max(10, examples // 4)

    def call(self, tool: str, arguments: dict[str, Any], user: str = "alice") -> CallToolResult:
        token = self.mint(user, organizations=ORGANIZATIONS)
        return self.portal.call(lambda: self.client.call_tool(tool, arguments, meta=bearer(token)))

    def problem(self, tool: str, arguments: dict[str, Any], user: str = "alice") -> str | None:
        """What breaks the property in this call's answer (an `internal` answer, an ERROR logged), if anything."""
        seen = len(self.caplog.records)
        said = text(self.call(tool, arguments, user))
        errors = [r.getMessage() for r in self.caplog.records[seen:] if r.levelno >= logging.ERROR]
        if said.startswith("internal:") or errors:
            return f"{tool}({arguments!r}) answered {said[:60]!r}, logged {errors}"
        return None

    def answer(self, tool: str, arguments: dict[str, Any], user: str = "alice") -> None:
        """Call, and check the property: no `internal` answer, no ERROR logged."""
        problem = self.problem(tool, arguments, user)
        assert problem is None, problem

    def new_task(self, **fields: Any) -> int:
        return int(ok(self.call("create_task", {"title": "fresh", **fields}))["task"]["id"])


SORTS = ("created", "due", "priority", "updated")
# Every caller is a member of one organization and a viewer of another, so generated `workspace`
# arguments reach both roles, and the slug "personal" of an organization reached by its id.
ORGANIZATIONS = [
    {"id": "org-acme", "slug": "acme", "role": "member"},
    {"id": "org-view", "slug": "view", "role": "viewer, guest"},
    {"id": "org-odd", "slug": "personal", "role": "owner"},
]
CURSOR_ZONES = ("UTC", "Asia/Tokyo", "Pacific/Kiritimati", "Pacific/Pago_Pago")
SEED_DUES = ("2026-12-01", "2026-12-01T16:00:00Z", None, "2030-01-01T23:30:00-09:00", "1999-12-31", None)


@pytest.fixture
def session(app: TaskMcp, mint: Callable[..., str], caplog: pytest.LogCaptureFixture, request) -> Iterator[Session]:
    caplog.set_level(logging.WARNING)
    with (
        anyio.from_thread.start_blocking_portal("asyncio") as portal,
        portal.wrap_async_context_manager(connect(app)) as client,
    ):
        backend = request.node.callspec.params["database_url"]
        session = Session(portal, client, mint, caplog, backend)
        # alice: ordinary tasks, enough for a second page in every order, and cursors to edit.
        for n, due in enumerate(SEED_DUES * 2, start=1):
            priority = ("none", "low", "medium", "high", "urgent")[n % 5]
            task = {"title": f"Task {n}", "priority": priority, "tags": ["home", "work"][: n % 3]}
            ok(session.call("create_task", task | ({"due": due} if due else {})))
        for sort in SORTS:
            for zone in CURSOR_ZONES:
                query = {"sort": sort, "timezone": zone, "status": "all", "limit": 2}
                cursor = ok(session.call("list_tasks", query))["next_cursor"]
                assert cursor, query
                session.cursors[sort, zone] = (query, cursor)
        yield session


# --- generated values -----------------------------------------------------------------------------

JSON_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20)
)
JSON = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=8,
)
# Letters that change length or shape when case-folded, marks, emoji, controls and NUL, and the
# lone surrogates that JSON's \ud800 escapes can carry.
ODD_CHARS = [
    *("İ", "\u0131", "ß", "ẞ", "ﬁ", "Σ", "ς"),  # İ lower-cases to two code points; dotless i; ligatures
    *("\u0301", "e\u0301", "🧪", "👩\u200d💻"),  # a lone combining mark, a composed letter, emoji, a ZWJ sequence
    *("\x00", "\x7f", "\u200b", "\ud800", "\udfff"),  # NUL, DEL, zero-width space, lone surrogates
]
ODD_TEXT = st.lists(st.sampled_from(ODD_CHARS) | st.characters(), max_size=60).map("".join) | st.builds(
    lambda char, times: char * times, st.sampled_from(ODD_CHARS), st.integers(1, 300)
)
LONG_TEXT = st.builds(
    lambda char, times: char * times, st.sampled_from(["a", "İ", " ", "ß", "🧪"]), st.integers(1, 9000)
)
NASTY = ["\ud800", "a\udfffb", "İ" * 40, "x\x00y", "e\u0301", "🧪" * 40, "İstanbul", "ß" * 40, " " * 201]
STRINGS = st.sampled_from(NASTY) | ODD_TEXT | LONG_TEXT | st.sampled_from(["", " ", "buy milk", "Home", "none", "null"])


def _two(n: int) -> str:
    return f"{n:02d}"


YEARS = st.sampled_from([1, 2, 999, 1000, 1582, 1900, 1969, 1970, 2000, 2026, 2038, 9998, 9999]) | st.integers(1, 9999)
OFFSETS = st.sampled_from(["Z", "+00:00", "-00:00", "+14:00", "-14:00", "+01:00", "-01:00", "+23:59", "-23:59"]) | (
    st.builds(
        lambda sign, h, m: f"{sign}{_two(h)}:{_two(m)}", st.sampled_from("+-"), st.integers(0, 24), st.integers(0, 59)
    )
)
DATES = st.builds(
    lambda y, m, d: f"{y:04d}-{_two(m)}-{_two(d)}", YEARS, st.integers(0, 13), st.integers(0, 32)
) | st.sampled_from(["0001-01-01", "9999-12-31", "0000-01-01", "2024-02-29", "2025-02-29", "1-1-1", "20261201"])
TIMES = st.builds(
    lambda h, m, s, frac: f"{_two(h)}:{_two(m)}:{_two(s)}{frac}",
    st.integers(0, 24),
    st.integers(0, 60),
    st.integers(0, 61),
    st.sampled_from(["", ".5", ".999999", ".0000001"]),
)
DATETIMES = st.builds(lambda d, t, o: f"{d}T{t}{o}", DATES, TIMES, OFFSETS | st.just(""))
EDGES = st.sampled_from(
    [
        *("0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z"),
        *("0001-01-01", "9999-12-31", "0001-01-01T13:59:59-14:00", "9999-12-31T10:00:00+14:00"),
    ]
)
DUES = st.one_of(
    EDGES,  # the calendar's ends, where an offset or a zone pushes a value out of range
    DATES,
    DATETIMES,
    st.sampled_from(["", "today", "2026-12-01 16:00:00+00:00", "2026-W48", "2026-335", " 2026-12-01 "]),
)


def _zone_directories(names: set[str]) -> set[str]:
    parents = {name.rsplit("/", 1)[0] for name in names if "/" in name}
    while True:
        more = {name.rsplit("/", 1)[0] for name in parents if "/" in name} - parents
        if not more:
            return parents
        parents |= more


ZONE_NAMES = sorted(zoneinfo.available_timezones())
ZONE_ODDITIES = sorted(
    _zone_directories(set(ZONE_NAMES))
    | {"posix", "right", "posix/Europe", "right/America", "posix/Europe/Berlin", "right/UTC", "Etc", "America/"}
    | {"", " ", "UTC ", "utc", "../etc/passwd", "/etc/localtime", "/usr/share/zoneinfo/UTC", "localtime"}
    | {"Factory", "zone.tab", "tzdata.zi", "leapseconds", "iso3166.tab", "posixrules", "+VERSION", "Europe/Nowhere"}
)
ZONES = st.sampled_from(ZONE_NAMES) | st.sampled_from(ZONE_ODDITIES) | ODD_TEXT
TAGS = st.lists(STRINGS, max_size=22) | st.lists(st.sampled_from(["İ" * 40, "ß" * 40, "ﬁ" * 21, "A" * 40, "x" * 41]))
IDS = st.integers(-3, 40) | st.sampled_from([0, 2**31 - 1, 2**31, 2**63, -(2**63)])
PRIORITY = st.sampled_from(["none", "low", "medium", "high", "urgent", "URGENT", "critical", ""])
WORKSPACES = st.sampled_from(["personal", "acme", "org-acme", "view", "org-odd", "nowhere", "", " acme "]) | STRINGS
ASSIGNEES = st.sampled_from(["me", "alice", "ALICE@example.com", "none", "bob", "bob@example.com", "@", ""]) | STRINGS
# Blocker lists: empty, repeated, self-naming (ids near the fresh task's), past the 50-item limit.
BLOCKED_BY = st.lists(IDS, max_size=6) | st.lists(st.integers(1, 60), min_size=49, max_size=52) | st.just([])
LEASES = st.integers(-5, 100_000) | st.sampled_from([59, 60, 1800, 86_400, 86_401, 2**31, 2**63])
CLAIM_IDS = STRINGS | st.text(alphabet="0123456789abcdefABCDEF-_", min_size=20, max_size=70)
NOTE_TEXTS = STRINGS | st.builds(lambda times: "n" * times, st.sampled_from([1, 500, 501, 3999, 4000, 4001]))


def arguments(
    required: dict[str, st.SearchStrategy[Any]] | None = None, **optional: st.SearchStrategy[Any]
) -> st.SearchStrategy[dict[str, Any]]:
    """Arguments of the right types (so they reach the service), or of any JSON type, or with an unknown key.

    `required` fields are always there when the types are right, and may be missing otherwise.
    """
    required = required or {}
    typed = st.fixed_dictionaries(required, optional=optional)
    wild = st.fixed_dictionaries({}, optional={k: v | JSON for k, v in {**required, **optional}.items()})
    return typed | wild | st.builds(lambda args, junk: {**args, "surprise": junk}, typed, JSON)


# `repeat` (DESIGN §11): the phrases, rules at and past each limit, rules whose UNTIL or first
# occurrence lies at the calendar's ends, and free text.
REPEATS = (
    st.sampled_from(
        [
            *("daily", "weekdays", "every 2 weeks", "every monday and friday", "every 0 days", "every 99999 years"),
            *("FREQ=HOURLY", "FREQ=DAILY;COUNT=1000", "FREQ=DAILY;COUNT=1001", "FREQ=YEARLY;INTERVAL=999"),
            *("FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30", "FREQ=DAILY;UNTIL=99991231T235959Z", "FREQ=DAILY;UNTIL=00010101"),
            *(
                "FREQ=MONTHLY;BYDAY=-1FR;BYSETPOS=1",
                "FREQ=WEEKLY;WKST=SU;BYDAY=MO,SU",
                "DTSTART:20260101\nRRULE:FREQ=DAILY",
            ),
        ]
    )
    | STRINGS
)
TASK_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "title": STRINGS,
    "description": STRINGS | st.none(),
    "priority": PRIORITY,
    "due": DUES | st.none(),
    "tags": TAGS,
    "parent_id": IDS | st.none(),
    "assignee": ASSIGNEES | st.none(),
    "blocked_by": BLOCKED_BY | st.none(),
    "repeat": REPEATS | st.none(),
    "timezone": ZONES | st.none(),
}
OPTIONAL_TASK_FIELDS = {k: v for k, v in TASK_FIELDS.items() if k != "title"}
CREATE = arguments({"title": STRINGS}, **OPTIONAL_TASK_FIELDS, idempotency_key=STRINGS, workspace=WORKSPACES)
UPDATE_FIELDS = {
    **TASK_FIELDS,
    "status": st.sampled_from(["open", "completed", "deleted", "all", ""]),
    "clear": st.lists(
        st.sampled_from(["description", "due", "parent_id", "assignee", "blocked_by", "repeat", "title", "tags"]),
        max_size=7,
    ),
    "expected_version": IDS,
    "workspace": WORKSPACES,
}
QUERY = arguments(
    status=st.sampled_from(["open", "completed", "all", "deleted", ""]),
    priority=st.lists(PRIORITY, max_size=6),
    tags=TAGS,
    text=STRINGS,
    due_before=DUES,
    due_after=DUES,
    overdue=st.booleans(),
    parent_id=IDS,
    sort=st.sampled_from([*SORTS, "title", ""]),
    limit=IDS | st.sampled_from([1, 100, 101]),
    cursor=STRINGS,
    include_description=st.booleans(),
    timezone=ZONES,
    assignee=ASSIGNEES,
    ready=st.booleans(),
    workspace=WORKSPACES,
)


def settings_for(session: Session, examples: int) -> Callable[[Any], Any]:
    return settings(
        max_examples=session.budget(examples),
        deadline=None,
        derandomize=True,
        database=None,
        print_blob=False,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )


# --- the tools ------------------------------------------------------------------------------------


def test_list_tasks_answers_any_query_without_internal_errors(session: Session):
    @settings_for(session, 150)
    @given(query=QUERY)
    def check(query: dict[str, Any]) -> None:
        session.answer("list_tasks", query)

    check()


def test_get_task_answers_any_id_without_internal_errors(session: Session):
    @settings_for(session, 60)
    @given(args=arguments({"task_id": IDS}, workspace=WORKSPACES))
    def check(args: dict[str, Any]) -> None:
        session.answer("get_task", args)

    check()


def test_create_task_answers_any_arguments_without_internal_errors(session: Session):
    @settings_for(session, 150)
    @given(args=CREATE)
    def check(args: dict[str, Any]) -> None:
        session.answer("create_task", args)

    check()


def test_create_tasks_answers_any_batch_without_internal_errors(session: Session):
    items = st.lists(arguments({"title": STRINGS}, **OPTIONAL_TASK_FIELDS), min_size=0, max_size=4)
    batch = arguments({"tasks": items}, idempotency_key=STRINGS, workspace=WORKSPACES)

    @settings_for(session, 100)
    @given(args=batch)
    def check(args: dict[str, Any]) -> None:
        session.answer("create_tasks", args)

    check()


def test_update_task_answers_any_change_without_internal_errors(session: Session):
    @settings_for(session, 150)
    @given(args=arguments({"task_id": IDS}, **UPDATE_FIELDS), fresh=st.booleans())
    def check(args: dict[str, Any], fresh: bool) -> None:
        if fresh:  # a task that exists, so the change reaches the service and the database
            args = {**args, "task_id": session.new_task()}
        session.answer("update_task", args)

    check()


@pytest.mark.parametrize("tool", ["complete_task", "delete_task", "restore_task"])
def test_the_task_id_tools_answer_any_id_without_internal_errors(session: Session, tool: str):
    @settings_for(session, 60)
    @given(args=arguments({"task_id": IDS}, expected_version=IDS, workspace=WORKSPACES), fresh=st.booleans())
    def check(args: dict[str, Any], fresh: bool) -> None:
        if fresh:
            task_id = session.new_task()
            if tool == "restore_task":
                ok(session.call("delete_task", {"task_id": task_id}))
            args = {**args, "task_id": task_id}
        session.answer(tool, args)

    check()


def test_list_workspaces_answers_any_workspace_without_internal_errors(session: Session):
    @settings_for(session, 60)
    @given(args=arguments(workspace=WORKSPACES))
    def check(args: dict[str, Any]) -> None:
        session.answer("list_workspaces", args)

    check()


def test_list_changes_answers_any_filter_and_cursor_without_internal_errors(session: Session):
    first = ok(session.call("list_changes", {"limit": 2}))["next_cursor"]
    assert first
    cursors = st.sampled_from([first, first + "=", first[:-2], _encode({"c": 1}), _encode({"c": 2**40, "f": "x"})])
    query = arguments(
        task_id=IDS,
        by=ASSIGNEES,
        limit=IDS | st.sampled_from([1, 50, 51]),
        cursor=cursors | STRINGS,
        workspace=WORKSPACES,
    )

    @settings_for(session, 100)
    @given(args=query)
    def check(args: dict[str, Any]) -> None:
        session.answer("list_changes", args)

    check()


def test_undo_change_answers_any_change_id_without_internal_errors(session: Session):
    @settings_for(session, 100)
    @given(args=arguments({"change_id": IDS}, workspace=WORKSPACES), fresh=st.sampled_from(["", "update", "delete"]))
    def check(args: dict[str, Any], fresh: str) -> None:
        if fresh:  # a change that exists (an undo of it, or of its undo, may follow in later examples)
            task_id = session.new_task()
            tool, extra = ("update_task", {"priority": "high"}) if fresh == "update" else ("delete_task", {})
            args = {**args, "change_id": ok(session.call(tool, {"task_id": task_id, **extra}))["change_id"]}
        session.answer("undo_change", args)

    check()


def test_update_tasks_answers_any_batch_and_dry_run_without_internal_errors(session: Session):
    item_fields = {k: v for k, v in UPDATE_FIELDS.items() if k != "workspace"}
    items = st.lists(arguments({"task_id": IDS}, **item_fields), max_size=4)
    batch = arguments({"updates": items}, dry_run=st.booleans(), workspace=WORKSPACES)

    @settings_for(session, 120)
    @given(args=batch, fresh=st.integers(0, 3))
    def check(args: dict[str, Any], fresh: int) -> None:
        updates = args.get("updates")
        if isinstance(updates, list):  # point some items at tasks that exist, so they reach the database
            for i in range(min(fresh, len(updates))):
                if isinstance(updates[i], dict):
                    updates[i] = {**updates[i], "task_id": session.new_task()}
        session.answer("update_tasks", args)

    check()


def test_add_note_answers_any_text_without_internal_errors(session: Session):
    @settings_for(session, 80)
    @given(args=arguments({"task_id": IDS, "text": NOTE_TEXTS}, workspace=WORKSPACES), fresh=st.booleans())
    def check(args: dict[str, Any], fresh: bool) -> None:
        if fresh:
            args = {**args, "task_id": session.new_task()}
        session.answer("add_note", args)
        if fresh:
            session.answer("get_task", {"task_id": args["task_id"]})

    check()


def test_claim_task_answers_any_claim_without_internal_errors(session: Session):
    claim = arguments(
        task_id=IDS,
        claim_id=CLAIM_IDS,
        lease_seconds=LEASES,
        priority=st.lists(PRIORITY, max_size=6),
        tags=TAGS,
        assignee=ASSIGNEES,
        text=STRINGS,
        parent_id=IDS,
        workspace=WORKSPACES,
    )

    @settings_for(session, 120)
    @given(args=claim, fresh=st.sampled_from(["", "task", "renew", "blocked"]))
    def check(args: dict[str, Any], fresh: str) -> None:
        if fresh == "blocked":
            args = {**args, "task_id": session.new_task(blocked_by=[session.new_task()])}
        elif fresh:
            args = {**args, "task_id": session.new_task()}
            args.pop("workspace", None)
            if fresh == "renew":  # renew a real claim, with whatever lease was generated
                claimed = ok(session.call("claim_task", {"task_id": args["task_id"]}))
                args["claim_id"] = claimed["claim"]["claim_id"]
        session.answer("claim_task", args)

    check()


def test_release_task_answers_any_release_without_internal_errors(session: Session):
    release = arguments(
        {"task_id": IDS},
        claim_id=CLAIM_IDS,
        outcome=st.sampled_from(["released", "completed", "done", ""]),
        note=NOTE_TEXTS,
        workspace=WORKSPACES,
    )

    @settings_for(session, 120)
    @given(args=release, fresh=st.sampled_from(["", "unclaimed", "claimed", "right_id", "other_user"]))
    def check(args: dict[str, Any], fresh: str) -> None:
        if fresh:
            task_id = session.new_task()
            args = {**args, "task_id": task_id}
            args.pop("workspace", None)
            if fresh != "unclaimed":
                claimed = ok(session.call("claim_task", {"task_id": task_id}))
                if fresh == "right_id":
                    args["claim_id"] = claimed["claim"]["claim_id"]
            if fresh == "other_user":
                session.answer("release_task", args, user="bob")
                return
        session.answer("release_task", args)

    check()


# --- cursors a model edited -----------------------------------------------------------------------


def _decode(cursor: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))


def _encode(data: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


EDITS = st.fixed_dictionaries(
    {},
    optional={
        "k": DUES | DATETIMES | JSON | st.integers(-2, 6),
        "n": IDS | JSON | st.sampled_from([1.0, 1.5, "1", True]),
        "f": st.text(alphabet="0123456789abcdef", min_size=11, max_size=13) | JSON,
        "extra": JSON,
    },
)


def test_list_tasks_answers_any_edited_cursor_without_internal_errors(session: Session):
    @settings_for(session, 150)
    @given(
        which=st.sampled_from(sorted(session.cursors)),
        edits=EDITS,
        drop=st.lists(st.sampled_from(["k", "n", "f"]), max_size=3),
        keep_fingerprint=st.booleans(),
        mangle=st.sampled_from(["", "=", "==", "!", "A", " "]),
    )
    def check(which: tuple[str, str], edits: dict[str, Any], drop: list[str], keep_fingerprint: bool, mangle: str):
        query, cursor = session.cursors[which]
        data = _decode(cursor)
        data.update(edits)
        if keep_fingerprint:  # the edit reaches the query instead of failing the fingerprint check
            data["f"] = _decode(cursor)["f"]
        for key in drop:
            data.pop(key, None)
        session.answer("list_tasks", {**query, "cursor": _encode(data) + mangle})

    check()


# --- stored edge values ---------------------------------------------------------------------------

EDGE_DUES = [
    "0001-01-01",
    "9999-12-31",
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59Z",
    "0001-01-01T13:59:59-14:00",
    "9999-12-31T10:00:00+14:00",
]


def test_every_zone_name_and_directory_is_answered_without_internal_errors(session: Session):
    """Deterministically all of them, in the orders and filters that use the zone; lists every failure."""
    query = {"overdue": True, "sort": "due", "due_before": "2026-12-01"}
    problems = [session.problem("list_tasks", {**query, "timezone": zone}) for zone in ZONE_NAMES + ZONE_ODDITIES]
    assert [p for p in problems if p] == []


def test_lists_over_stored_edge_dates_answer_in_every_zone_without_internal_errors(session: Session):
    for due in EDGE_DUES:
        session.answer("create_task", {"title": f"edge {due}", "due": due}, user="edge")
    problems = []
    for zone in ZONE_NAMES if session.backend == "sqlite" else ZONE_NAMES[::8]:
        for query in ({"sort": "due"}, {"overdue": True}, {"due_after": "0001-01-01", "due_before": "9999-12-31"}):
            problems.append(session.problem("list_tasks", {**query, "timezone": zone, "status": "all"}, user="edge"))
    assert [p for p in problems if p] == []
