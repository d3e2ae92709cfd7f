"""Claims under contention (DESIGN §10), in one process, on SQLite and PostgreSQL.

Twenty claimers, each its own in-memory MCP client (its own `clientInfo.name`, the same user), are
released at the same instant and call `claim_task` without a task id until nothing is ready. Each
tool call runs the service on a worker thread of its own, so the claims race in the database, not
in the event loop. Every task must be taken exactly once. Lease expiry and renewal run on a clock
the test moves, injected into the service, so no test waits for a real minute.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.types import Implementation

from task_mcp.server import TaskMcp
from task_mcp.service import TaskService
from tests.helpers import Caller, Clock, bearer, connect, ok

pytestmark = pytest.mark.anyio

CLAIMERS = 20
TASKS = 50
START = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)


def instant(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


@asynccontextmanager
async def claimers(app: TaskMcp, count: int) -> AsyncIterator[list[Client]]:
    """`count` in-memory MCP clients of one server, named claimer-0 … claimer-<count-1>."""
    async with AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(
                Client(app.build_server(), client_info=Implementation(name=f"claimer-{i}", version="1"))  # type: ignore[arg-type]
            )
            for i in range(count)
        ]


def with_clock(app: TaskMcp, clock: Clock) -> TaskMcp:
    """`app` with a service whose time is `clock` (leases expire when the test says so)."""
    app.service = TaskService(app.database, clock=clock, purge_every=None)
    return app


async def test_twenty_claimers_take_fifty_ready_tasks_each_exactly_once(
    app: TaskMcp, mint: Callable[..., str], database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    token = mint("alice")
    async with connect(app) as setup:
        alice = Caller(setup, token)
        await alice.ok("create_tasks", tasks=[{"title": f"Step {n}"} for n in range(1, TASKS + 1)])
        assert (await alice.page(ready=True, limit=100))["total"] == TASKS

    taken: list[tuple[int, dict[str, Any], str]] = []  # (task id, claim, claimer name)
    empty: list[dict[str, Any]] = []  # answers that found nothing ready
    go = anyio.Event()

    async def claim_until_none(client: Client, name: str) -> None:
        await go.wait()
        while True:
            answer = ok(await client.call_tool("claim_task", {}, meta=bearer(token)))
            if answer["task"] is None:
                empty.append(answer)
                return
            taken.append((answer["task"]["id"], answer["claim"], name))

    async with claimers(app, CLAIMERS) as clients:
        async with anyio.create_task_group() as tg:
            for i, client in enumerate(clients):
                tg.start_soon(claim_until_none, client, f"claimer-{i}")
            await anyio.sleep(0.05)  # every claimer is waiting on `go`
            started = time.perf_counter()
            go.set()
        elapsed = time.perf_counter() - started
        late = ok(await clients[0].call_tool("claim_task", {}, meta=bearer(token)))

    ids = [task_id for task_id, _, _ in taken]
    duplicates = len(ids) - len(set(ids))
    backend = "postgresql" if database_url.startswith("postgresql") else "sqlite"
    with capsys.disabled():
        print(
            f"\nclaims in process [{backend}]: {CLAIMERS} claimers (in-memory MCP clients, a worker thread per call), "
            f"{TASKS} ready tasks: {len(taken)} claims in {elapsed:.2f} s ({len(taken) / elapsed:.0f} claims/s), "
            f"{len(empty)} empty answers, duplicates: {duplicates}"
        )

    assert sorted(ids) == list(range(1, TASKS + 1))  # every task once, none twice
    assert duplicates == 0
    # Each claimer's last call, and any call after the last task went, finds nothing: not an error.
    assert len(empty) == CLAIMERS
    for answer in [*empty, late]:
        assert (answer["task"], answer["claim"], answer["change_id"]) == (None, None, None), answer
    assert len({claim["claim_id"] for _, claim, _ in taken}) == TASKS  # a claim id per claim
    assert all(len(claim["claim_id"]) >= 16 for _, claim, _ in taken)

    async with connect(app) as check:
        alice = Caller(check, token)
        assert (await alice.page(ready=True))["total"] == 0
        for task_id, claim, name in taken[:: TASKS // 10]:  # each task shows who holds it, without the id
            shown = (await alice.task(task_id))["claim"]
            assert shown["holder"] == claim["holder"]
            assert (shown["holder"]["user_id"], shown["holder"].get("client")) == ("alice", name)
            assert shown["expires_at"] == claim["expires_at"]
            assert "claim_id" not in shown


async def test_an_expired_lease_makes_the_task_claimable_again(app: TaskMcp, mint: Callable[..., str]) -> None:
    clock = Clock(START)
    with_clock(app, clock)
    token = mint("alice")
    async with claimers(app, 2) as (first, second):
        alice = Caller(first, token)
        await alice.add("Migrate the database")
        claimed = await alice.ok("claim_task", lease_seconds=60)
        assert claimed["task"]["id"] == 1
        assert instant(claimed["claim"]["expires_at"]) == START + dt.timedelta(seconds=60)

        other = Caller(second, token)
        clock.advance(seconds=59)
        assert (await other.ok("claim_task"))["task"] is None  # still held
        refused = await other.fails("claim_task", "conflict", task_id=1)
        assert "claimer-0" in refused or "alice" in refused  # names the holder
        assert (await alice.page(ready=True))["total"] == 0

        clock.advance(seconds=2)  # the lease has ended, nobody released it
        assert await alice.ids(ready=True) == [1]
        assert (await alice.task(1))["claim"] is None
        retaken = await other.ok("claim_task")
        assert retaken["task"]["id"] == 1
        assert retaken["claim"]["claim_id"] != claimed["claim"]["claim_id"]
        assert retaken["claim"]["holder"]["client"] == "claimer-1"

        # The first claimer's claim is gone: releasing with it is a conflict, and changes nothing.
        await alice.fails("release_task", "conflict", task_id=1, claim_id=claimed["claim"]["claim_id"])
        assert (await alice.task(1))["claim"]["holder"]["client"] == "claimer-1"


async def test_renewing_with_the_claim_id_extends_the_lease_and_a_wrong_one_is_a_conflict(
    app: TaskMcp, mint: Callable[..., str]
) -> None:
    clock = Clock(START)
    with_clock(app, clock)
    token = mint("alice")
    async with claimers(app, 2) as (first, second):
        alice = Caller(first, token)
        await alice.add("Write the report")
        claim = (await alice.ok("claim_task", task_id=1, lease_seconds=120))["claim"]
        assert instant(claim["expires_at"]) == START + dt.timedelta(seconds=120)

        clock.advance(seconds=100)
        renewed = await alice.ok("claim_task", task_id=1, claim_id=claim["claim_id"], lease_seconds=600)
        assert renewed["claim"]["claim_id"] == claim["claim_id"]  # renewing keeps the id
        assert instant(renewed["claim"]["expires_at"]) == START + dt.timedelta(seconds=700)
        assert (await alice.task(1))["claim"]["expires_at"] == renewed["claim"]["expires_at"]

        # Past the first lease, the renewed one still holds the task.
        clock.advance(seconds=120)
        assert (await Caller(second, token).ok("claim_task"))["task"] is None
        assert (await alice.task(1))["claim"] is not None

        # A wrong claim id is a conflict, from another session and from the holder's own session alike.
        for caller in (Caller(second, token), alice):
            await caller.fails("claim_task", "conflict", task_id=1, claim_id="not-the-claim-id", lease_seconds=600)
        assert (await alice.task(1))["claim"]["expires_at"] == renewed["claim"]["expires_at"]  # unchanged
