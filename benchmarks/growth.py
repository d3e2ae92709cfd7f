"""Does a list cost what the user's own rows cost, whatever the size of the table?

Databases on the same backend, all bulk-seeded (see seed.py), in which user-000's list is:
- table growth: the same 10,000 tasks (and one journal entry per task) in a table of 10,000 rows
  (hers only) and in one of 1,000,000 rows (also 99 other users'): `list_tasks` and `list_changes`
  should cost the same on both (≤ 1.25x);
- own growth: 10,000 tasks against 100,000 tasks, all hers: the default page and a priority + tag
  page, each with its exact total (≤ 1.25x and ≤ 1.5x).

`TaskService` runs in-process on each pair, alternating batches; the ratio is p50 on the larger
over p50 on the smaller. In-process, so the fixed per-call costs of MCP (transport, JSON, token
check) do not water the ratio down.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import Any

from benchmarks.report import Row
from benchmarks.seed import SEEDED_UNTIL, TAG, USER
from benchmarks.stats import p50, verdict
from task_mcp.db import Database
from task_mcp.models import TaskQuery
from task_mcp.service import TaskService

WARMUP = 10
ROUNDS = 10
BATCH = 10

QUERIES: dict[str, dict[str, Any]] = {
    "default page": {},
    f"tags=[{TAG}]": {"tags": [TAG]},
    "2nd page (cursor)": {},  # the cursor is filled in from each database's first page
    "sort=due": {"sort": "due"},
    "text search": {"text": "invoice #12"},
}
OWN_QUERIES: dict[str, tuple[dict[str, Any], float]] = {  # the query and its target
    "default page": ({}, 1.25),
    f"priority=[high, urgent] + tags=[{TAG}]": ({"priority": ["high", "urgent"], "tags": [TAG]}, 1.5),
}

Call = Callable[[], object]


def _service(database: Database) -> TaskService:
    # The seed's journal is dated in early 2025: the clock stands just after it, inside the history.
    return TaskService(database, clock=lambda: SEEDED_UNTIL + dt.timedelta(days=1), purge_every=None)


def _time(call: Call) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def _compare(cases: dict[str, tuple[Call, Call]]) -> dict[str, tuple[float, float, int]]:
    """p50 of each case's (smaller, larger) calls, measured in alternating batches, and n."""
    for pair in cases.values():
        for call in pair:
            for _ in range(WARMUP):
                call()
    samples: dict[tuple[str, int], list[float]] = {(name, i): [] for name in cases for i in (0, 1)}
    for _ in range(ROUNDS):
        for name, pair in cases.items():
            for i, call in enumerate(pair):
                samples[name, i] += [_time(call) for _ in range(BATCH)]
    return {name: (p50(samples[name, 0]), p50(samples[name, 1]), ROUNDS * BATCH) for name in cases}


def _rows(section: str, results: dict[str, tuple[float, float, int]], targets: dict[str, float]) -> list[Row]:
    rows = []
    for name, (small_p50, large_p50, n) in results.items():
        ratio = large_p50 / small_p50
        rows.append(
            Row(
                section,
                name,
                f"{ratio:.2f}x",
                ratio,
                f"≤ {targets[name]}x",
                verdict(ratio, targets[name]),
                f"{large_p50 * 1000:.2f} ms vs {small_p50 * 1000:.2f} ms; n={n} each",
                {"small_p50_s": small_p50, "large_p50_s": large_p50},
            )
        )
    return rows


def _list(service: TaskService, query: TaskQuery) -> Call:
    return lambda: service.list_tasks(USER, query)


def growth(backend: str, small: Database, large: Database) -> list[Row]:
    """list_tasks and list_changes with 1,000,000 vs 10,000 rows in the table."""
    services = _service(small), _service(large)
    totals = [service.list_tasks(USER, TaskQuery(status="all")).total for service in services]
    assert totals[0] == totals[1], totals  # the user's own list is the same in both
    queries = []
    for service in services:
        named = {name: TaskQuery.model_validate(args) for name, args in QUERIES.items()}
        named["2nd page (cursor)"] = TaskQuery(cursor=service.list_tasks(USER, named["default page"]).next_cursor)
        queries.append(named)
    pages = [service.list_changes(USER) for service in services]
    assert [c["change_id"] for c in pages[0].changes] == [c["change_id"] for c in pages[1].changes]
    assert len(pages[0].changes) == 20
    cases: dict[str, tuple[Call, Call]] = {
        name: (_list(services[0], queries[0][name]), _list(services[1], queries[1][name])) for name in QUERIES
    }
    cases["list_changes"] = (lambda: services[0].list_changes(USER), lambda: services[1].list_changes(USER))
    section = (
        f"Growth on {backend}: TaskService in-process, p50 with 1,000,000 vs 10,000 rows in the table "
        f"(the user's own list: {totals[0]:,} tasks and as many journal entries in both)"
    )
    return _rows(section, _compare(cases), dict.fromkeys(cases, 1.25))


def own_growth(backend: str, small: Database, bigger: Database) -> list[Row]:
    """The caller's own list growing from 10,000 to 100,000 tasks, each page with its exact total."""
    services = _service(small), _service(bigger)
    sizes = [service.list_tasks(USER, TaskQuery(status="all")).total for service in services]
    cases: dict[str, tuple[Call, Call]] = {}
    for name, (args, _) in OWN_QUERIES.items():
        query = TaskQuery.model_validate(args)
        assert all(service.list_tasks(USER, query).next_cursor for service in services)  # a total is counted
        cases[name] = (_list(services[0], query), _list(services[1], query))
    section = f"Growth on {backend}: the user's own list, {sizes[1]:,} vs {sizes[0]:,} tasks (p50, exact total)"
    return _rows(section, _compare(cases), {name: target for name, (_, target) in OWN_QUERIES.items()})
