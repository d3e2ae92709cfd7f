"""Several processes, each with its own Database and TaskService, calling at the same moment.

Every test runs on a SQLite file (WAL, shared by the processes) and on PostgreSQL when
TASK_MCP_TEST_POSTGRES_URL is set. Four spawned worker processes live for the whole module; each
test hands every worker a list of calls, which the worker runs on one thread per call, all
released at the same instant.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import text

from task_mcp.db import Database
from task_mcp.errors import TaskMcpError
from task_mcp.models import TaskCreate, TaskUpdate
from task_mcp.service import TaskService
from tests.helpers import rows

PROCESSES = 4
Call = tuple[str, tuple[Any, ...]]  # a TaskService method name and its arguments


def _run_calls(url: str, calls: list[Call], start_at: float) -> list[tuple[str, Any]]:
    """In a worker process: each call on its own thread, all starting at `start_at` (wall clock).

    Returns ("ok", result) or (error code, error text) per call, in order.
    """
    connections = min(len(calls), 8)  # at most 8 per process; more threads queue for one
    database = Database(url, pool_size=connections, max_overflow=0)
    service = TaskService(database, purge_every=None)  # no background purge in the race
    ready = threading.Barrier(len(calls))

    def one(call: Call) -> tuple[str, Any]:
        name, args = call
        # Open the pool's connections before the start, so that the calls race each other and
        # not the connection set-up.
        database.run(lambda conn: conn.execute(text("SELECT 1")), write=False)
        ready.wait()
        if time.time() > start_at:
            return "late", "this worker was ready only after the common start"
        time.sleep(start_at - time.time())
        try:
            return "ok", getattr(service, name)(*args)
        except TaskMcpError as exc:
            return exc.code, str(exc)

    try:
        with ThreadPoolExecutor(len(calls)) as threads:
            return list(threads.map(one, calls))
    finally:
        database.dispose()


def _warm_up() -> int:
    time.sleep(0.3)  # long enough that each warm-up lands on its own worker
    return multiprocessing.current_process().pid or 0


@pytest.fixture(scope="module")
def workers() -> Iterator[ProcessPoolExecutor]:
    with ProcessPoolExecutor(PROCESSES, mp_context=multiprocessing.get_context("spawn")) as pool:
        pids = {f.result() for f in [pool.submit(_warm_up) for _ in range(PROCESSES)]}
        assert len(pids) == PROCESSES
        yield pool


def at_once(workers: ProcessPoolExecutor, url: str, per_process: list[list[Call]]) -> list[tuple[str, Any]]:
    """Run each list of calls in its own worker process, all calls released together."""
    assert len(per_process) <= PROCESSES
    # Far enough ahead that every worker is ready on a loaded machine; a late one fails the test
    # instead of quietly not racing.
    start_at = time.time() + 5
    futures = [workers.submit(_run_calls, url, calls, start_at) for calls in per_process]
    answers = [answer for future in futures for answer in future.result(timeout=120)]
    assert [a for a in answers if a[0] == "late"] == []
    return answers


@pytest.fixture
def service(database_url: str) -> Iterator[TaskService]:
    """A service in the test process itself, for setting up and checking."""
    database = Database(database_url)
    yield TaskService(database)
    database.dispose()


def stored_numbers(url: str, user: str = "alice") -> list[int]:
    return [n for (n,) in rows(url, "SELECT number FROM tasks WHERE owner_id = :u ORDER BY number", u=user)]


def counter(url: str, user: str = "alice") -> int | None:
    found = rows(url, "SELECT last_number FROM task_counters WHERE owner_id = :u", u=user)
    return found[0][0] if found else None


def test_concurrent_create_task_from_four_processes_numbers_one_to_a_hundred(
    workers: ProcessPoolExecutor, database_url: str
) -> None:
    per_process = [
        [("create_task", ("alice", TaskCreate(title=f"p{p} t{t}"))) for t in range(25)] for p in range(PROCESSES)
    ]
    answers = at_once(workers, database_url, per_process)

    assert [code for code, _ in answers] == ["ok"] * 100, answers
    numbers = sorted(task.id for (_, (task, created)) in answers)
    assert numbers == list(range(1, 101))
    assert all(created for (_, (_, created)) in answers)
    assert stored_numbers(database_url) == list(range(1, 101))
    assert counter(database_url) == 100


@pytest.mark.parametrize("tool", ["create_task", "create_tasks"])
def test_one_idempotency_key_sent_eight_times_at_once_creates_once(
    workers: ProcessPoolExecutor, database_url: str, tool: str
) -> None:
    item = TaskCreate(title="Book the venue", tags=["offsite"])
    args = ("alice", item, "offsite-1") if tool == "create_task" else ("alice", [item, item], "offsite-1")
    answers = at_once(workers, database_url, [[(tool, args)] * 2 for _ in range(PROCESSES)])

    assert [code for code, _ in answers] == ["ok"] * 8, answers
    results = [result for _, result in answers]
    ids = [[t.id for t in tasks] if isinstance(tasks, list) else [tasks.id] for tasks, _ in results]
    expected = [1] if tool == "create_task" else [1, 2]
    assert ids == [expected] * 8  # every answer names the same task(s)
    assert sorted(created for _, created in results) == [False] * 7 + [True]
    assert stored_numbers(database_url) == expected
    assert counter(database_url) == len(expected)


def test_eight_updates_with_the_same_expected_version_one_wins_the_rest_conflict(
    workers: ProcessPoolExecutor, database_url: str, service: TaskService
) -> None:
    service.create_task("alice", TaskCreate(title="Draft"))
    calls = [
        [("update_task", ("alice", 1, TaskUpdate(title=f"Draft by {p}.{t}", expected_version=1))) for t in range(2)]
        for p in range(PROCESSES)
    ]
    answers = at_once(workers, database_url, calls)

    codes = sorted(code for code, _ in answers)
    assert codes == ["conflict"] * 7 + ["ok"], answers
    winner = next(task for code, task in answers if code == "ok")
    assert winner.version == 2
    assert all("is at version 2, not 1" in message for code, message in answers if code == "conflict")
    final = service.get_task("alice", 1)
    assert (final.version, final.title) == (2, winner.title)


def test_concurrent_updates_without_expected_version_each_bump_the_version_once(
    workers: ProcessPoolExecutor, database_url: str, service: TaskService
) -> None:
    service.create_task("alice", TaskCreate(title="Shared"))
    calls = [
        [("update_task", ("alice", 1, TaskUpdate(title=f"by {p}.{t}", tags=[f"p{p}", f"t{t}"]))) for t in range(6)]
        for p in range(PROCESSES)
    ]
    answers = at_once(workers, database_url, calls)

    assert [code for code, _ in answers] == ["ok"] * 24, answers
    sent = [call[1][2] for per in calls for call in per]
    answered = [task for _, task in answers]
    # Each answer is the state its own write produced, at its own version.
    assert [(t.title, t.tags) for t in answered] == [(u.title, u.tags) for u in sent]
    assert sorted(t.version for t in answered) == list(range(2, 26))
    final = service.get_task("alice", 1)
    last = max(answered, key=lambda t: t.version)
    assert (final.version, final.title, final.tags) == (1 + len(answers), last.title, last.tags)
    stored_tags = rows(database_url, "SELECT tag FROM task_tags WHERE owner_id = 'alice' ORDER BY tag")
    assert [tag for (tag,) in stored_tags] == sorted(last.tags)  # the last writer's tags, nothing left over


def test_concurrent_create_tasks_batches_get_consecutive_numbers(
    workers: ProcessPoolExecutor, database_url: str
) -> None:
    sizes = [[1 + (p * 3 + t * 5) % 12 for t in range(3)] for p in range(PROCESSES)]
    calls = [
        [
            ("create_tasks", ("alice", [TaskCreate(title=f"{p}.{t}.{i}") for i in range(size)]))
            for t, size in enumerate(row)
        ]
        for p, row in enumerate(sizes)
    ]
    # A single create_task from each process races the batches too.
    for p, per in enumerate(calls):
        per.append(("create_task", ("alice", TaskCreate(title=f"single {p}"))))
    answers = at_once(workers, database_url, calls)

    assert [code for code, _ in answers] == ["ok"] * len(answers), answers
    total = sum(map(sum, sizes)) + PROCESSES
    seen: list[int] = []
    for _, (result, created) in answers:
        ids = [t.id for t in result] if isinstance(result, list) else [result.id]
        assert created
        assert ids == list(range(ids[0], ids[0] + len(ids)))  # consecutive within the batch
        if isinstance(result, list):
            assert [t.title for t in result] == [f"{t.title.rsplit('.', 1)[0]}.{i}" for i, t in enumerate(result)]
        seen += ids
    assert sorted(seen) == list(range(1, total + 1))
    assert stored_numbers(database_url) == list(range(1, total + 1))
    assert counter(database_url) == total
