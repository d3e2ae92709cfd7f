"""PostgreSQL and several replicas: two real `task-mcp serve --transport http` processes, one database.

Both replicas are started at the same moment on the test database (each migrates at start) and
must both come up; so must two started together on an empty database, which they migrate. Clients
then alternate between them: a replica holds no state of its own, so each answer must be the same
whichever replica gives it, and the numbering (a user's own list, and an organization's workspace
shared by its members), cursors, idempotency keys and `expected_version` checks must hold across
them, and so must the change journal: a change made through one replica is listed and undone
through the other, and one change undone through both at once is undone once. A load test runs 16 concurrent SDK
clients (Streamable HTTP, one session per client and replica) over the pair and checks that the
final state is exactly the sum of the acknowledged operations.

SQLite: both replicas share one WAL file. `database_url` is a new file per test, so SQLite
replicas start per test. PostgreSQL: `database_url` is the same database emptied before each test,
so its replicas start once per module and serve every test's empty tables.
"""

from __future__ import annotations

import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.types import CallToolResult

from task_mcp.testing import JwksServer
from tests.helpers import error as error_text
from tests.helpers import ok, rows, text
from tests.test_http import connect

SAFE_ENV = ("HOME", "LOGNAME", "PATH", "SHELL", "TERM", "USER", "LANG", "TMPDIR")
NEEDS_POSTGRES = "set TASK_MCP_TEST_POSTGRES_URL to run the PostgreSQL tests"
START_TIMEOUT = 60.0  # two interpreters importing at once on two cores take a few seconds


# --- two real replicas ----------------------------------------------------------------------------


@dataclass
class Replica:
    proc: subprocess.Popen[bytes]
    url: str  # http://127.0.0.1:<port>
    stderr: Path
    _stderr_file: Any = field(repr=False)
    _checked: int = 0  # stderr bytes already checked

    @property
    def mcp(self) -> str:
        return self.url + "/mcp"

    def new_stderr(self) -> str:
        """stderr written since the last call."""
        data = self.stderr.read_bytes()
        fresh, self._checked = data[self._checked :], len(data)
        return fresh.decode(errors="replace")


def stop_all(replicas: list[Replica]) -> None:
    """SIGINT (uvicorn's graceful shutdown) to all first, so they stop side by side; SIGKILL if stuck."""
    for replica in replicas:
        if replica.proc.poll() is None:
            replica.proc.send_signal(signal.SIGINT)
    for replica in replicas:
        try:
            replica.proc.wait(15)
        except subprocess.TimeoutExpired:
            replica.proc.kill()
            replica.proc.wait(10)
        replica._stderr_file.close()


def _free_ports(count: int) -> list[int]:
    socks = [socket.socket() for _ in range(count)]
    try:  # held open together, so the ports differ
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def start_replicas(database_url: str, jwks: JwksServer, log_dir: Path, count: int = 2) -> list[Replica]:
    """Start `count` replicas back to back (they migrate at the same moment); wait until all are healthy."""
    env = {k: os.environ[k] for k in SAFE_ENV if k in os.environ} | {
        "TASK_MCP_DATABASE_URL": database_url,
        "TASK_MCP_BETTER_AUTH_URL": jwks.base_url,
        "TASK_MCP_LOG_LEVEL": "WARNING",
    }
    ports = _free_ports(count)
    replicas: list[Replica] = []
    for i, port in enumerate(ports):
        path = log_dir / f"replica-{i}-{port}.stderr"
        stderr = path.open("wb")
        command = [sys.executable, "-m", "task_mcp", "serve", "--transport", "http"]
        command += ["--host", "127.0.0.1", "--port", str(port)]
        proc = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr)
        replicas.append(Replica(proc, f"http://127.0.0.1:{port}", path, stderr))
    try:
        deadline = time.monotonic() + START_TIMEOUT
        with httpx2.Client(timeout=5) as http:
            for replica in replicas:
                while True:
                    if replica.proc.poll() is not None:
                        raise AssertionError(
                            f"replica {replica.url} exited with {replica.proc.returncode}:\n{replica.new_stderr()}"
                        )
                    try:
                        if http.get(replica.url + "/healthz").status_code == 200:
                            break
                    except httpx2.TransportError:
                        pass
                    assert time.monotonic() < deadline, (
                        f"replica {replica.url} did not come up:\n{replica.new_stderr()}"
                    )
                    time.sleep(0.05)
    except BaseException:
        stop_all(replicas)
        raise
    return replicas


def assert_clean(replicas: list[Replica]) -> None:
    for replica in replicas:
        assert replica.proc.poll() is None, f"replica {replica.url} died:\n{replica.new_stderr()}"
        logged = replica.new_stderr()
        assert "Traceback" not in logged and " ERROR " not in logged, logged


@pytest.fixture(scope="module")
def _postgres_replicas() -> Iterator[dict[str, list[Replica]]]:
    """PostgreSQL replicas by database URL, kept for the module (the URL stays, the tables are emptied)."""
    pairs: dict[str, list[Replica]] = {}
    yield pairs
    for pair in pairs.values():
        stop_all(pair)


@pytest.fixture
def replicas(
    database_url: str,
    jwks: JwksServer,
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
    _postgres_replicas: dict[str, list[Replica]],
) -> Iterator[list[Replica]]:
    """Two replicas serving the test database; fails the test if either logged a traceback or died."""
    if database_url.startswith("postgresql"):
        pair = _postgres_replicas.get(database_url)
        if pair is None or any(r.proc.poll() is not None for r in pair):
            stop_all(pair or [])
            pair = _postgres_replicas[database_url] = start_replicas(
                database_url, jwks, tmp_path_factory.mktemp("replicas")
            )
        yield pair
        assert_clean(pair)
        return
    pair = start_replicas(database_url, jwks, tmp_path)
    try:
        yield pair
        assert_clean(pair)
    finally:
        stop_all(pair)


@asynccontextmanager
async def pairs(replicas: list[Replica], tokens: list[str]) -> AsyncIterator[list[tuple[Client, Client]]]:
    """Per token, one SDK client session on each replica (A, B)."""
    failure: Exception | None = None
    async with AsyncExitStack() as stack:
        opened = [
            (
                await stack.enter_async_context(connect(replicas[0].mcp, token)),
                await stack.enter_async_context(connect(replicas[1].mcp, token)),
            )
            for token in tokens
        ]
        try:
            yield opened
        except Exception as exc:
            # Held back until the sessions are closed: raised through them, it would come out
            # wrapped in one exception group per session, past the depth that tracebacks show.
            failure = exc
    if failure is not None:
        raise failure


@asynccontextmanager
async def both(replicas: list[Replica], token: str) -> AsyncIterator[tuple[Client, Client]]:
    """One SDK client session on each replica, for the same user."""
    async with pairs(replicas, [token]) as [pair]:
        yield pair


async def call(client: Client, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return ok(await client.call_tool(tool, arguments))


def without_now(page: dict[str, Any]) -> dict[str, Any]:
    """A list_tasks answer without `now`, the one part that depends on when it was asked."""
    return {k: v for k, v in page.items() if k != "now"}


# --- coming up together ---------------------------------------------------------------------------


@pytest.mark.anyio
async def test_two_replicas_started_at_the_same_moment_on_one_database_both_come_up_and_serve(
    replicas: list[Replica], mint: Callable[..., str]
) -> None:
    async with httpx2.AsyncClient(timeout=10) as http:
        for replica in replicas:
            response = await http.get(replica.url + "/healthz")
            assert response.status_code == 200 and response.json() == {"status": "ok"}
    async with both(replicas, mint("alice")) as (a, b):
        for client in (a, b):
            assert {"list_tasks", "create_task", "update_task"} <= {t.name for t in (await client.list_tools()).tools}
        assert (await call(a, "create_task", {"title": "via A"}))["task"]["id"] == 1
        assert (await call(b, "create_task", {"title": "via B"}))["task"]["id"] == 2


@pytest.mark.anyio
async def test_two_replicas_started_at_the_same_moment_on_an_empty_database_migrate_it_once_and_both_come_up(
    empty_database_url: str, jwks: JwksServer, mint: Callable[..., str], tmp_path: Path
) -> None:
    pair = start_replicas(empty_database_url, jwks, tmp_path)
    try:
        async with both(pair, mint("alice")) as (a, b):
            assert (await call(b, "create_task", {"title": "via B"}))["task"]["id"] == 1
            assert (await call(a, "create_task", {"title": "via A"}))["task"]["id"] == 2
        assert_clean(pair)
    finally:
        stop_all(pair)
    assert len(rows(empty_database_url, "SELECT version_num FROM alembic_version")) == 1


# --- answers do not depend on the replica ---------------------------------------------------------


@pytest.mark.anyio
async def test_each_users_lists_are_identical_from_both_replicas(
    replicas: list[Replica], mint: Callable[..., str]
) -> None:
    users = ["alice", "bob"]
    async with pairs(replicas, [mint(user) for user in users]) as opened:
        sessions = dict(zip(users, opened, strict=True))
        for user, (a, b) in sessions.items():
            for i in range(12):  # writes alternate between the replicas
                client = (a, b)[i % 2]
                arguments: dict[str, Any] = {
                    "title": f"{user} task {i}",
                    "description": f"about {i}",
                    "priority": ["none", "low", "medium", "high", "urgent"][i % 5],
                    "tags": [f"t{i % 3}", user],
                }
                if i % 4:
                    arguments["due"] = f"2026-12-{i + 1:02d}" if i % 2 else f"2026-12-{i + 1:02d}T09:30:00Z"
                if i >= 6:
                    arguments["parent_id"] = i - 5
                await call(client, "create_task", arguments)
            await call(b, "complete_task", {"task_id": 3})
            await call(a, "update_task", {"task_id": 4, "title": f"{user} renamed", "tags": ["renamed"]})
            await call(b, "delete_task", {"task_id": 7})

        queries: list[dict[str, Any]] = [
            {},
            {"status": "all", "limit": 100, "include_description": True},
            {"status": "all", "sort": "due", "limit": 100},
            {"status": "all", "sort": "priority", "limit": 100},
            {"sort": "updated", "limit": 100},
            {"status": "completed"},
            {"tags": ["t1"], "status": "all"},
            {"text": "TASK 1", "status": "all"},
            {"parent_id": 2, "status": "all"},
            {"due_before": "2026-12-06", "due_after": "2026-12-02", "status": "all"},
        ]
        for user, (a, b) in sessions.items():
            for query in queries:
                from_a = await call(a, "list_tasks", query)
                from_b = await call(b, "list_tasks", query)
                assert without_now(from_a) == without_now(from_b), (user, query)
                assert all(t["title"].startswith(f"{user} ") for t in from_a["tasks"]), (user, query)
            everything = await call(a, "list_tasks", {"status": "all", "limit": 100})
            assert everything["total"] == 11  # 12 created, 1 deleted
            for task_id in (1, 3, 4, 12):
                assert await call(a, "get_task", {"task_id": task_id}) == await call(
                    b, "get_task", {"task_id": task_id}
                )
            for client in (a, b):
                error_text(await client.call_tool("get_task", {"task_id": 7}), "not_found")  # deleted, on both


@pytest.mark.anyio
async def test_creates_through_both_replicas_get_distinct_gap_free_numbers(
    replicas: list[Replica], mint: Callable[..., str], database_url: str
) -> None:
    users = ["alice", "bob", "carol"]
    ids: dict[str, list[int]] = {user: [] for user in users}
    async with pairs(replicas, [mint(user) for user in users]) as opened:
        sessions = dict(zip(users, opened, strict=True))

        async def create(user: str, i: int) -> None:
            client = sessions[user][i % 2]
            if i % 10 == 9:  # now and then a batch, all or nothing, consecutive numbers
                batch = await call(client, "create_tasks", {"tasks": [{"title": f"{user} {i}.{k}"} for k in range(5)]})
                numbers = [t["id"] for t in batch["tasks"]]
                assert numbers == list(range(numbers[0], numbers[0] + 5))
                ids[user] += numbers
            else:
                ids[user].append((await call(client, "create_task", {"title": f"{user} {i}"}))["task"]["id"])

        async with anyio.create_task_group() as tg:  # all at once, interleaved over users and replicas
            for i in range(30):
                for user in users:
                    tg.start_soon(create, user, i)

        for user, (a, b) in sessions.items():
            expected = list(range(1, 30 - 3 + 3 * 5 + 1))  # 27 singles + 3 batches of 5
            assert sorted(ids[user]) == expected, user
            for client in (a, b):
                page = await call(client, "list_tasks", {"status": "all", "limit": 100, "sort": "created"})
                assert page["total"] == len(expected)
                assert sorted(t["id"] for t in page["tasks"]) == expected
                assert all(t["title"].startswith(f"{user} ") for t in page["tasks"])
            # The next create, on either replica, takes the next number.
            assert (await call(b, "create_task", {"title": f"{user} last"}))["task"]["id"] == len(expected) + 1
    counters = dict(rows(database_url, "SELECT owner_id, last_number FROM task_counters"))  # type: ignore[arg-type]
    assert counters == {user: 43 for user in users}


ACME = {"id": "org-acme", "slug": "acme", "name": "Acme"}


@pytest.mark.anyio
async def test_members_creating_in_one_workspace_through_both_replicas_get_distinct_gap_free_numbers(
    replicas: list[Replica], mint: Callable[..., str]
) -> None:
    members = {"alice": "member", "bob": "admin"}
    tokens = [mint(user, organizations=[ACME | {"role": role}]) for user, role in members.items()]
    made: dict[str, list[int]] = {user: [] for user in members}
    async with pairs(replicas, tokens) as opened:
        sessions = dict(zip(members, opened, strict=True))

        async def create(user: str, i: int) -> None:
            client = sessions[user][i % 2]
            if i % 8 == 7:  # now and then a batch: consecutive numbers, all or nothing
                items = [{"title": f"{user} {i}.{k}"} for k in range(3)]
                batch = await call(client, "create_tasks", {"workspace": "acme", "tasks": items})
                assert batch["workspace"] == "acme"
                numbers = [t["id"] for t in batch["tasks"]]
                assert numbers == list(range(numbers[0], numbers[0] + 3))
                made[user] += numbers
            else:
                answer = await call(client, "create_task", {"workspace": "acme", "title": f"{user} {i}"})
                assert answer["workspace"] == "acme"
                made[user].append(answer["task"]["id"])

        async with anyio.create_task_group() as tg:  # both members, both replicas, all at once
            for i in range(24):
                for user in members:
                    tg.start_soon(create, user, i)

        per_member = 21 + 3 * 3  # 21 singles and 3 batches of 3
        everyone = sorted(made["alice"] + made["bob"])
        assert everyone == list(range(1, 2 * per_member + 1))  # one sequence, shared, no gaps, no repeats
        for user, (a, b) in sessions.items():
            for client in (a, b):  # the same workspace, whoever asks and whichever replica answers
                page = await call(client, "list_tasks", {"workspace": "acme", "status": "all", "limit": 100})
                assert page["workspace"] == "acme" and page["total"] == 2 * per_member
                by_id = {t["id"]: t["title"] for t in page["tasks"]}
                assert sorted(by_id) == everyone
                assert all(by_id[n].startswith(f"{owner} ") for owner in members for n in made[owner])
            created = await call(b, "get_task", {"workspace": "acme", "task_id": made[user][0]})
            assert created["task"]["created_by"] == user
            # Their personal lists were never touched: each still starts at 1.
            assert (await call(a, "create_task", {"title": f"{user}'s own"}))["task"]["id"] == 1
        # The next create in the workspace, on either replica, takes the next number.
        nxt = await call(sessions["alice"][1], "create_task", {"workspace": "acme", "title": "next"})
        assert nxt["task"]["id"] == 2 * per_member + 1


@pytest.mark.anyio
@pytest.mark.parametrize("sort", ["created", "updated", "due", "priority"])
async def test_a_next_cursor_from_one_replica_works_on_the_other(
    replicas: list[Replica], mint: Callable[..., str], sort: str
) -> None:
    async with both(replicas, mint("alice")) as (a, b):
        for i in range(23):
            arguments: dict[str, Any] = {"title": f"task {i}", "priority": ["none", "low", "high"][i % 3]}
            if i % 3:
                arguments["due"] = f"2026-11-{(i % 9) + 1:02d}" if i % 2 else f"2026-11-{(i % 7) + 1:02d}T12:00:00Z"
            await call((a, b)[i % 2], "create_task", arguments)
        for task_id in (5, 2, 17):  # give `updated` an order that differs from `created`
            await call(b, "update_task", {"task_id": task_id, "title": f"touched {task_id}"})
        query = {"status": "all", "sort": sort, "limit": 100}
        whole = [t["id"] for t in (await call(a, "list_tasks", query))["tasks"]]
        assert sorted(whole) == list(range(1, 24))

        # Page by 5, each page asked of the other replica than the one that gave the cursor.
        paged: list[int] = []
        cursor: str | None = None
        for turn in range(10):
            arguments = {"status": "all", "sort": sort, "limit": 5} | ({"cursor": cursor} if cursor else {})
            page = await call((a, b)[turn % 2], "list_tasks", arguments)
            paged += [t["id"] for t in page["tasks"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
            # The same cursor gives the same page on both replicas. `now` is left out: it is the
            # time of each call (to the second), so two calls straddling a second differ there.
            follow = {"status": "all", "sort": sort, "limit": 5, "cursor": cursor}
            assert without_now(await call(a, "list_tasks", follow)) == without_now(await call(b, "list_tasks", follow))
        assert cursor is None
        assert paged == whole  # every task once, in order, across the replica switches

        # A cursor is tied to its filters on every replica alike.
        first = await call(a, "list_tasks", {"status": "all", "sort": sort, "limit": 5})
        other_query = {"status": "open", "sort": sort, "limit": 5, "cursor": first["next_cursor"]}
        error_text(await b.call_tool("list_tasks", other_query), "invalid_argument")


@pytest.mark.anyio
async def test_one_idempotency_key_sent_to_both_replicas_creates_once(
    replicas: list[Replica], mint: Callable[..., str], database_url: str
) -> None:
    async with both(replicas, mint("alice")) as (a, b):
        arguments = {"title": "Book the venue", "tags": ["offsite"], "idempotency_key": "offsite-1"}
        first = await call(a, "create_task", arguments)
        assert first["created"] is True and first["task"]["id"] == 1
        again = await call(b, "create_task", arguments)  # a retry that lands on the other replica
        assert again["created"] is False and again["task"] == first["task"]
        message = error_text(await b.call_tool("create_task", arguments | {"title": "Other"}), "conflict")
        assert "offsite-1" in message

        # The same key sent to both replicas at the very same moment, several times over.
        for round_ in range(5):
            keyed = {"title": f"Race {round_}", "idempotency_key": f"race-{round_}"}
            answers: list[dict[str, Any]] = []

            async def send(
                client: Client, keyed: dict[str, Any] = keyed, answers: list[dict[str, Any]] = answers
            ) -> None:
                answers.append(await call(client, "create_task", keyed))

            async with anyio.create_task_group() as tg:
                for client in (a, b, a, b):
                    tg.start_soon(send, client)
            assert sorted(answer["created"] for answer in answers) == [False, False, False, True]
            assert len({answer["task"]["id"] for answer in answers}) == 1

        # create_tasks too: a replayed batch names the same tasks.
        batch = {"tasks": [{"title": "Step 1"}, {"title": "Step 2"}], "idempotency_key": "plan-1"}
        made = await call(b, "create_tasks", batch)
        replayed = await call(a, "create_tasks", batch)
        assert made["created"] is True and replayed["created"] is False
        assert [t["id"] for t in replayed["tasks"]] == [t["id"] for t in made["tasks"]] == [7, 8]

        for client in (a, b):
            page = await call(client, "list_tasks", {"status": "all", "limit": 100})
            assert page["total"] == 8
    assert rows(database_url, "SELECT number FROM tasks ORDER BY number") == [(n,) for n in range(1, 9)]


@pytest.mark.anyio
async def test_an_expected_version_conflict_is_detected_across_replicas(
    replicas: list[Replica], mint: Callable[..., str]
) -> None:
    async with both(replicas, mint("alice")) as (a, b):
        task = (await call(a, "create_task", {"title": "Draft"}))["task"]
        assert task["version"] == 1
        # Two agents read version 1, one through each replica; B writes first.
        updated = (await call(b, "update_task", {"task_id": 1, "title": "Draft by B", "expected_version": 1}))["task"]
        assert updated["version"] == 2
        message = error_text(
            await a.call_tool("update_task", {"task_id": 1, "title": "Draft by A", "expected_version": 1}), "conflict"
        )
        assert "is at version 2, not 1" in message
        for client in (a, b):
            current = (await call(client, "get_task", {"task_id": 1}))["task"]
            assert (current["title"], current["version"]) == ("Draft by B", 2)

        # Eight writers holding version 2, split over the replicas, all at once: one wins.
        outcomes: list[tuple[bool, str]] = []

        async def write(client: Client, i: int) -> None:
            result = await client.call_tool("update_task", {"task_id": 1, "title": f"v3 by {i}", "expected_version": 2})
            outcomes.append((bool(result.is_error), result.content[0].text))  # type: ignore[union-attr]

        async with anyio.create_task_group() as tg:
            for i in range(8):
                tg.start_soon(write, (a, b)[i % 2], i)
        winners = [message for failed, message in outcomes if not failed]
        assert len(winners) == 1, outcomes
        assert all(
            message.startswith("conflict: ") and "version 3, not 2" in message for failed, message in outcomes if failed
        )
        for client in (a, b):
            current = (await call(client, "get_task", {"task_id": 1}))["task"]
            assert current["version"] == 3 and winners[0].endswith(current["title"])


# --- the change journal across replicas -------------------------------------------------------------


@pytest.mark.anyio
async def test_a_change_made_through_one_replica_is_listed_and_undone_through_the_other(
    replicas: list[Replica], mint: Callable[..., str]
) -> None:
    async with both(replicas, mint("alice")) as (a, b):
        task = (await call(a, "create_task", {"title": "Call the bank", "priority": "low", "tags": ["money"]}))["task"]
        made = await call(a, "update_task", {"task_id": task["id"], "priority": "urgent", "due": "2026-12-01"})
        listed = (await call(b, "list_changes", {"task_id": task["id"]}))["changes"]
        assert listed[0]["change_id"] == made["change_id"]
        assert listed[0]["tool"] == "update_task" and listed[0]["by"]["user_id"] == "alice"

        undo = await call(b, "undo_change", {"change_id": made["change_id"]})
        assert undo["change_id"] not in (None, made["change_id"])
        restored = (await call(a, "get_task", {"task_id": task["id"]}))["task"]
        assert (restored["priority"], restored["due"], restored["tags"]) == ("low", None, ["money"])
        assert restored["version"] == made["task"]["version"] + 1  # undo moves version forward
        on_a = {c["change_id"]: c for c in (await call(a, "list_changes", {"task_id": task["id"]}))["changes"]}
        assert on_a[undo["change_id"]]["undoes"] == made["change_id"]
        assert on_a[made["change_id"]]["undone_by"] == undo["change_id"]


async def undo_into(outcomes: dict[str, CallToolResult], name: str, client: Client, change_id: int) -> None:
    outcomes[name] = await client.call_tool("undo_change", {"change_id": change_id})


@pytest.mark.anyio
async def test_the_same_change_undone_on_both_replicas_at_once_is_undone_exactly_once(
    replicas: list[Replica], mint: Callable[..., str]
) -> None:
    async with both(replicas, mint("alice")) as (a, b):
        task = (await call(a, "create_task", {"title": "Renew the lease"}))["task"]
        for round_ in range(4):  # a few races, each on a new change
            made = await call((a, b)[round_ % 2], "update_task", {"task_id": task["id"], "title": f"Renew, v{round_}"})
            outcomes: dict[str, CallToolResult] = {}
            async with anyio.create_task_group() as tg:
                tg.start_soon(undo_into, outcomes, "A", a, made["change_id"])
                tg.start_soon(undo_into, outcomes, "B", b, made["change_id"])
            winners = [r for r in outcomes.values() if not r.is_error]
            assert len(winners) == 1, {name: text(r) for name, r in outcomes.items()}
            undo_id = winners[0].structured_content["change_id"]  # type: ignore[index]
            (loser,) = (r for r in outcomes.values() if r.is_error)
            message = error_text(loser, "conflict")
            assert re.search(rf"\b{undo_id}\b", message), message  # names the undoing change

            title = "Renew the lease" if round_ == 0 else f"Renew, v{round_ - 1}"
            for client in (a, b):
                current = (await call(client, "get_task", {"task_id": task["id"]}))["task"]
                assert current["title"] == title
                assert current["version"] == made["task"]["version"] + 1  # one undo, not two
            await call(a, "update_task", {"task_id": task["id"], "title": f"Renew, v{round_}"})  # redo by hand


# --- load -----------------------------------------------------------------------------------------

CLIENTS = 16
OPERATIONS = 300  # per client
LOAD_USERS = ["ann", "ben", "cat", "dan"]
MIX = {"create_task": 40, "update_task": 25, "complete_task": 15, "list_tasks": 10, "get_task": 10}
LOAD_TIMEOUT = 240.0


@dataclass
class Ledger:
    """What the replicas acknowledged for one user: the final state must be exactly this."""

    created: dict[int, str] = field(default_factory=dict)  # id -> title at creation
    order: list[int] = field(default_factory=list)  # ids in order of acknowledgement
    updates: dict[int, list[tuple[int, str]]] = field(default_factory=dict)  # id -> [(version, title)]
    completed: set[int] = field(default_factory=set)
    seen: dict[int, int] = field(default_factory=dict)  # id -> highest version in an acknowledged write's answer
    keys: int = 0  # idempotency keys that created a task

    def saw(self, task: dict[str, Any]) -> None:
        self.seen[task["id"]] = max(self.seen.get(task["id"], 1), task["version"])


@dataclass
class Load:
    ledgers: dict[str, Ledger] = field(default_factory=lambda: {u: Ledger() for u in LOAD_USERS})
    errors: list[str] = field(default_factory=list)  # isError answers and exceptions
    problems: list[str] = field(default_factory=list)  # answers that contradict what was acknowledged
    calls: int = 0
    operations: int = 0
    per_replica: list[int] = field(default_factory=lambda: [0, 0])


async def _run_client(index: int, sessions: tuple[Client, Client], load: Load) -> None:
    user = LOAD_USERS[index % len(LOAD_USERS)]
    ledger = load.ledgers[user]
    rng = random.Random(index)
    kinds, weights = list(MIX), list(MIX.values())

    async def tool(replica: int, name: str, arguments: dict[str, Any]) -> dict[str, Any] | None:
        load.calls += 1
        load.per_replica[replica] += 1
        try:
            result = await sessions[replica].call_tool(name, arguments)
        except Exception as exc:  # the outcome is unknown: an error, and the books cannot balance
            load.errors.append(f"client {index} {name} {arguments}: {type(exc).__name__}: {exc}")
            return None
        if result.is_error or result.structured_content is None:
            load.errors.append(f"client {index} {name} {arguments}: {result.content}")
            return None
        return result.structured_content

    def pick() -> int:
        recent = ledger.order[-8:]
        return rng.choice(recent if rng.random() < 0.5 else ledger.order)  # contention on recent tasks

    for j in range(OPERATIONS):
        load.operations += 1
        replica = (index + j) % 2  # alternate between the replicas
        kind = rng.choices(kinds, weights)[0]
        if kind != "create_task" and not ledger.order:
            kind = "create_task"
        if kind == "create_task":
            title = f"{user} c{index}.{j}"
            arguments: dict[str, Any] = {"title": title, "priority": rng.choice(["none", "low", "high"])}
            if rng.random() < 0.3:
                arguments["tags"] = [f"c{index}", rng.choice(["home", "work"])]
            keyed = rng.random() < 0.25
            if not keyed:
                answer = await tool(replica, "create_task", arguments)
                if answer is None:
                    continue
                answers = [answer]
            else:
                arguments["idempotency_key"] = f"k{index}.{j}"
                if rng.random() < 0.5:  # a retry that lands on the other replica
                    first = await tool(replica, "create_task", arguments)
                    second = await tool(1 - replica, "create_task", arguments)
                    answers = [a for a in (first, second) if a is not None]
                else:  # the same key at both replicas at the same moment
                    answers = []

                    async def send(r: int, arguments: dict[str, Any] = arguments, answers: list[Any] = answers) -> None:
                        if (answer := await tool(r, "create_task", arguments)) is not None:
                            answers.append(answer)

                    async with anyio.create_task_group() as tg:
                        tg.start_soon(send, replica)
                        tg.start_soon(send, 1 - replica)
                if len(answers) != 2:
                    continue
                if (
                    sorted(a["created"] for a in answers) != [False, True]
                    or answers[0]["task"]["id"] != answers[1]["task"]["id"]
                ):
                    load.problems.append(f"client {index}: key k{index}.{j} answered {answers}")
                    continue
                ledger.keys += 1
            task = answers[0]["task"]
            if task["title"] != title or task["version"] != 1 or task["id"] in ledger.created:
                load.problems.append(f"client {index}: create answered {task}")
                continue
            ledger.created[task["id"]] = title
            ledger.order.append(task["id"])
        elif kind == "update_task":
            task_id, title = pick(), f"{user} u{index}.{j}"  # a new title: every update changes the task
            arguments = {"task_id": task_id, "title": title}
            if rng.random() < 0.3:
                arguments["tags"] = [f"u{index}"]
            if (answer := await tool(replica, "update_task", arguments)) is None:
                continue
            task = answer["task"]
            if task["id"] != task_id or task["title"] != title or task["version"] < 2:
                load.problems.append(f"client {index}: update of {task_id} answered {task}")
            ledger.updates.setdefault(task_id, []).append((task["version"], title))
            ledger.saw(task)
        elif kind == "complete_task":
            task_id = pick()
            if (answer := await tool(replica, "complete_task", {"task_id": task_id})) is None:
                continue
            if answer["task"]["status"] != "completed" or answer["task"]["id"] != task_id:
                load.problems.append(f"client {index}: complete of {task_id} answered {answer['task']}")
            ledger.completed.add(task_id)
            ledger.saw(answer["task"])
        elif kind == "list_tasks":
            acknowledged = len(ledger.created)  # committed before this call is sent
            answer = await tool(replica, "list_tasks", {"status": "all", "limit": 20})
            if answer is None:
                continue
            if answer["total"] < acknowledged or not all(t["title"].startswith(f"{user} ") for t in answer["tasks"]):
                load.problems.append(f"client {index}: {user}'s list after {acknowledged} creates: {answer}")
        else:
            task_id = pick()
            # Every acknowledged write is committed: a read on either replica shows at least its version.
            floor, done = ledger.seen.get(task_id, 1), task_id in ledger.completed
            if (answer := await tool(replica, "get_task", {"task_id": task_id})) is None:
                continue
            task = answer["task"]
            if (
                task["version"] < floor
                or (done and task["status"] != "completed")
                or not task["title"].startswith(user)
            ):
                load.problems.append(f"client {index}: get of {task_id} (version >= {floor}, done {done}) gave {task}")


async def _final_tasks(a: Client, b: Client) -> tuple[list[dict[str, Any]], int]:
    """All of a user's tasks, paging with the cursor across the replicas; checks both totals agree."""
    tasks: list[dict[str, Any]] = []
    cursor: str | None = None
    totals = set()
    for turn in range(100):
        arguments = {"status": "all", "limit": 100} | ({"cursor": cursor} if cursor else {})
        page = await call((a, b)[turn % 2], "list_tasks", arguments)
        tasks += page["tasks"]
        totals.add(page["total"])
        if (cursor := page["next_cursor"]) is None:
            break
    assert cursor is None
    totals.add((await call(b, "list_tasks", {"status": "all", "limit": 1}))["total"])
    assert len(totals) == 1, totals
    return tasks, totals.pop()


@pytest.mark.anyio
async def test_sixteen_clients_over_two_replicas_lose_and_duplicate_nothing(
    replicas: list[Replica],
    mint: Callable[..., str],
    database_url: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    backend = "postgresql" if database_url.startswith("postgresql") else "sqlite"
    load = Load()
    tokens = [mint(LOAD_USERS[i % len(LOAD_USERS)], lifetime=3600) for i in range(CLIENTS)]
    final: dict[str, tuple[list[dict[str, Any]], int]] = {}
    async with pairs(replicas, tokens) as sessions:
        started = time.perf_counter()
        with anyio.fail_after(LOAD_TIMEOUT):
            async with anyio.create_task_group() as tg:
                for i in range(CLIENTS):
                    tg.start_soon(_run_client, i, sessions[i], load)
        duration = time.perf_counter() - started
        if not load.errors:
            for u, user in enumerate(LOAD_USERS):  # client u is one of this user's clients
                final[user] = await _final_tasks(*sessions[u])

    contended = sum(len(updates) > 1 for ledger in load.ledgers.values() for updates in ledger.updates.values())
    summary = (
        f"replica load [{backend}]: {load.operations} operations ({load.calls} tool calls: "
        f"{load.per_replica[0]} to replica A, {load.per_replica[1]} to B) from {CLIENTS} clients as "
        f"{len(LOAD_USERS)} users; {len(load.errors)} errors; {duration:.1f} s "
        f"({load.calls / duration:.0f} calls/s); {sum(len(lg.created) for lg in load.ledgers.values())} tasks, "
        f"{contended} updated more than once; SDK Client over Streamable HTTP"
    )
    with capsys.disabled():
        print(f"\n{summary}")
    assert load.errors == [], load.errors[:10]
    assert load.problems == [], load.problems[:10]
    assert load.operations == CLIENTS * OPERATIONS

    # The final state is exactly the sum of what was acknowledged, as listed across both replicas.
    for user, (tasks, total) in final.items():
        ledger = load.ledgers[user]
        ids = [t["id"] for t in tasks]
        assert total == len(ledger.created) == len(tasks), user  # nothing lost, nothing duplicated
        assert sorted(ids) == list(range(1, total + 1)) == sorted(ledger.created), user  # gap-free
        for task in tasks:
            updates = ledger.updates.get(task["id"], [])
            versions = [v for v, _ in updates]
            done = task["id"] in ledger.completed
            assert len(set(versions)) == len(versions), (user, task, updates)  # each update its own version
            assert task["version"] == 1 + len(updates) + (1 if done else 0), (user, task, updates, done)
            assert task["status"] == ("completed" if done else "open"), (user, task)
            last_title = max(updates)[1] if updates else ledger.created[task["id"]]
            assert task["title"] == last_title, (user, task, updates)  # the last acknowledged write

    for user in LOAD_USERS:
        ledger = load.ledgers[user]
        [(counter,)] = rows(database_url, "SELECT last_number FROM task_counters WHERE owner_id = :u", u=user)
        [(keys,)] = rows(database_url, "SELECT count(*) FROM idempotency_keys WHERE owner_id = :u", u=user)
        assert (counter, keys) == (len(ledger.created), ledger.keys), user


# --- claims across replicas -----------------------------------------------------------------------

CLAIMERS = 20
READY_TASKS = 50


@pytest.mark.anyio
async def test_twenty_claimers_over_two_replicas_take_each_ready_task_exactly_once(
    replicas: list[Replica], mint: Callable[..., str], database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    token = mint("alice", lifetime=3600)
    taken: list[tuple[int, str, int]] = []  # (task id, claim id, replica)
    empty: list[dict[str, Any]] = []
    go = anyio.Event()

    async def claim_until_none(client: Client, replica: int) -> None:
        await go.wait()
        while True:
            answer = await call(client, "claim_task", {})
            if answer["task"] is None:
                empty.append(answer)
                return
            taken.append((answer["task"]["id"], answer["claim"]["claim_id"], replica))

    async with AsyncExitStack() as stack:
        clients = [  # claimer i talks to replica i % 2 only
            await stack.enter_async_context(connect(replicas[i % 2].mcp, token)) for i in range(CLAIMERS)
        ]
        made = await call(clients[0], "create_tasks", {"tasks": [{"title": f"Step {n}"} for n in range(READY_TASKS)]})
        assert len(made["tasks"]) == READY_TASKS
        async with anyio.create_task_group() as tg:
            for i, client in enumerate(clients):
                tg.start_soon(claim_until_none, client, i % 2)
            await anyio.sleep(0.05)
            started = time.perf_counter()
            go.set()
        elapsed = time.perf_counter() - started
        for client in clients[:2]:  # nothing is left, whichever replica is asked
            late = await call(client, "claim_task", {})
            assert (late["task"], late["claim"], late["change_id"]) == (None, None, None)
            assert (await call(client, "list_tasks", {"ready": True}))["total"] == 0

    ids = [task_id for task_id, _, _ in taken]
    duplicates = len(ids) - len(set(ids))
    backend = "postgresql" if database_url.startswith("postgresql") else "sqlite"
    with capsys.disabled():
        print(
            f"\nclaims over two replicas [{backend}]: {CLAIMERS} SDK clients over Streamable HTTP, "
            f"{READY_TASKS} ready tasks: {len(taken)} claims in {elapsed:.2f} s "
            f"({len(taken) / elapsed:.0f} claims/s; {sum(r == 0 for *_, r in taken)} via A, "
            f"{sum(r == 1 for *_, r in taken)} via B), duplicates: {duplicates}"
        )
    assert sorted(ids) == list(range(1, READY_TASKS + 1))  # each task exactly once, across both replicas
    assert duplicates == 0
    assert len({claim_id for _, claim_id, _ in taken}) == READY_TASKS
    assert len(empty) == CLAIMERS
    assert all((a["task"], a["claim"], a["change_id"]) == (None, None, None) for a in empty)
