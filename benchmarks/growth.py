"""Does a list cost what the user's own rows cost, whatever the size of the table?

Two databases on the same backend, both bulk-seeded (see seed.py), in which user-000 holds the same
10,000 tasks: one holds only hers (10,000 rows), the other also 99 other users' (1,000,000 rows).
`TaskService.list_tasks` runs in-process on both, alternating batches; the ratio is p50 on the
large table over p50 on the small one. In-process, so the fixed per-call costs of MCP (transport,
JSON, token check) do not water the ratio down.
"""

from __future__ import annotations

import time
from typing import Any

from benchmarks.report import Row
from benchmarks.seed import TAG, USER
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


def _queries(service: TaskService) -> dict[str, TaskQuery]:
    queries = {name: TaskQuery.model_validate(args) for name, args in QUERIES.items()}
    cursor = service.list_tasks(USER, queries["default page"]).next_cursor
    queries["2nd page (cursor)"] = TaskQuery(cursor=cursor)
    return queries


def _time(service: TaskService, query: TaskQuery) -> float:
    started = time.perf_counter()
    service.list_tasks(USER, query)
    return time.perf_counter() - started


def growth(backend: str, small: Database, large: Database) -> list[Row]:
    services = {"small": TaskService(small), "large": TaskService(large)}
    queries = {size: _queries(service) for size, service in services.items()}
    totals = {size: service.list_tasks(USER, TaskQuery(status="all")).total for size, service in services.items()}
    assert totals["small"] == totals["large"], totals  # the user's own list is the same in both
    for size, service in services.items():
        for query in queries[size].values():
            for _ in range(WARMUP):
                _time(service, query)

    samples: dict[tuple[str, str], list[float]] = {(q, s): [] for q in QUERIES for s in services}
    for _ in range(ROUNDS):
        for name in QUERIES:
            for size, service in services.items():
                samples[name, size] += [_time(service, queries[size][name]) for _ in range(BATCH)]

    section = (
        f"Growth on {backend}: TaskService.list_tasks in-process, p50 with 1,000,000 vs 10,000 rows in "
        f"the table (the user's own list: {totals['small']:,} tasks in both)"
    )
    rows = []
    for name in QUERIES:
        small_p50, large_p50 = p50(samples[name, "small"]), p50(samples[name, "large"])
        ratio = large_p50 / small_p50
        rows.append(
            Row(
                section,
                name,
                f"{ratio:.2f}x",
                ratio,
                "≤ 1.25x",
                verdict(ratio, 1.25),
                f"{large_p50 * 1000:.2f} ms vs {small_p50 * 1000:.2f} ms; n={len(samples[name, 'small'])} each",
                {"small_p50_s": small_p50, "large_p50_s": large_p50},
            )
        )
    return rows
