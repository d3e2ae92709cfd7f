"""`make bench`: every figure is a ratio against a baseline measured in the same run.

The machine is shared and noisy, so absolute times mean little; each benchmark alternates
batches of the thing measured with batches of its baseline (a no-op tool on the same SDK and
transport, or the same query on a small table), and reports the ratio. Steps:

1. Seed: the stdio database through `TaskService.create_tasks` (user-000 holds 10,000 tasks, 19
   other users 500 each); six growth databases by bulk SQL (10,000 and 1,000,000 rows, and 100,000
   of user-000's own, on SQLite and on PostgreSQL, the latter in a background thread while SQLite
   seeds).
2. Measure: per-call cost over stdio, context cost, token verification, growth, cold start, and
   HTTP throughput.
3. Print the table and write benchmarks/results/latest.json.
"""

from __future__ import annotations

import inspect
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import psycopg

from benchmarks import growth, http, stdio, verification
from benchmarks.report import Row, header, machine, save, table
from benchmarks.seed import USER, bulk_seed, seed_with_service, user_id
from task_mcp.db import Database, migrate
from task_mcp.testing import JwksServer, SigningKey

PG_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_DATABASE = "task_mcp_bench"
PG_URL = f"postgresql+psycopg://postgres@127.0.0.1:5432/{PG_DATABASE}?options=-csearch_path%3D{{schema}}"
USER_TASKS, OTHER_USERS, OTHER_TASKS = 10_000, 19, 500
SMALL, LARGE, LARGE_USERS = 10_000, 1_000_000, 100
OWN = 100_000  # the user's own list grown tenfold


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def postgres_version() -> str | None:
    try:
        with psycopg.connect(PG_SERVER, connect_timeout=3) as conn:
            return conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
    except psycopg.Error:
        return None


@contextmanager
def postgres_database() -> Iterator[None]:
    """A fresh `task_mcp_bench` database with a schema per growth database; dropped afterwards."""
    with psycopg.connect(PG_SERVER, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {PG_DATABASE} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {PG_DATABASE}")
    try:
        with psycopg.connect(PG_SERVER.rsplit("/", 1)[0] + f"/{PG_DATABASE}", autocommit=True) as conn:
            for schema in SCHEMAS:
                conn.execute(f"CREATE SCHEMA {schema}")
        yield
    finally:
        with psycopg.connect(PG_SERVER, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {PG_DATABASE} WITH (FORCE)")


class Background:
    """Run `fn` in a thread; `result()` waits and re-raises its exception."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self._value: Any = None
        self._error: BaseException | None = None

        def run() -> None:
            try:
                self._value = fn()
            except BaseException as exc:
                self._error = exc

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def result(self) -> Any:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value


SCHEMAS = ("small", "large", "own")
Growth = tuple[Database, Database, Database]


def growth_databases(make_url: Callable[[str], str]) -> Growth:
    """Three empty databases at the newest schema: 10,000 rows, 1,000,000 rows, and 100,000 of one user's."""
    small, large, own = (Database(make_url(schema)) for schema in SCHEMAS)
    for database in (small, large, own):
        migrate(database)
    return small, large, own


def seed_growth(databases: Growth) -> Growth:
    small, large, own = databases
    seconds = bulk_seed(small, total=SMALL, users=1) + bulk_seed(large, total=LARGE, users=LARGE_USERS)
    seconds += bulk_seed(own, total=OWN, users=1)
    log(f"  {small.dialect}: {SMALL:,} + {LARGE:,} + {OWN:,} rows bulk-seeded in {seconds:.0f} s")
    return databases


async def section(title: str, notes: list[str], measure: Callable[[], Any]) -> Any:
    """Run one benchmark; if it fails, say so in the notes and go on with the others."""
    log(title)
    try:
        result = measure()
        return await result if inspect.isawaitable(result) else result
    except Exception as exc:
        traceback.print_exc()
        notes.append(f"{title}: FAILED ({type(exc).__name__}: {exc})")
        return []


async def growth_sections(backend: str, databases: Growth, notes: list[str]) -> list[Row]:
    small, large, own = databases
    rows = await section(f"growth on {backend} (in-process)", notes, lambda: growth.growth(backend, small, large))
    rows += await section(
        f"own-list growth on {backend} (in-process)", notes, lambda: growth.own_growth(backend, small, own)
    )
    for database in databases:
        database.dispose()
    return list(rows)


async def run_all(tmp: Path, pg_version: str | None, rows: list[Row], notes: list[str]) -> None:
    # One key per algorithm the verification benchmark compares, behind one loopback JWKS.
    with JwksServer([SigningKey.generate(alg) for alg in verification.ALGORITHMS]) as stand_in:
        token = stand_in.mint(USER, lifetime=3600)
        sqlite_dbs = growth_databases(lambda schema: f"sqlite:///{tmp / f'growth-{schema}.db'}")
        pg_seed = None
        if pg_version:  # seeded in the PostgreSQL server's process while this one seeds SQLite
            pg_empty = growth_databases(lambda schema: PG_URL.format(schema=schema))
            pg_seed = Background(lambda: seed_growth(pg_empty))

        log(f"seeding: {USER} {USER_TASKS:,} tasks + {OTHER_USERS} users x {OTHER_TASKS}, by TaskService.create_tasks")
        stdio_url = f"sqlite:///{tmp / 'stdio.db'}"
        seconds = seed_with_service(stdio_url, user_tasks=USER_TASKS, other_users=OTHER_USERS, other_tasks=OTHER_TASKS)
        log(f"  done in {seconds:.0f} s ({user_id(0)}..{user_id(OTHER_USERS)})")
        seed_growth(sqlite_dbs)
        pg_dbs = None
        if pg_seed is not None:
            log("waiting for the PostgreSQL seed")
            pg_dbs = pg_seed.result()

        params = stdio.task_mcp_params(stdio_url, stand_in.base_url)
        calls = await section(
            "per-call cost over stdio (interleaved with the no-op server)", notes, lambda: stdio.per_call(params, token)
        )
        call_rows, call_data = calls or ([], {})
        rows += call_rows
        rows += await section("context cost", notes, lambda: stdio.context_cost(params, token))
        if call_data:
            rows += await section(
                "token verification", notes, lambda: verification.verification(stand_in, call_data["noop_p50_s"])
            )
        rows += await growth_sections("SQLite", sqlite_dbs, notes)
        if pg_dbs is not None:
            rows += await growth_sections(f"PostgreSQL {pg_version}", pg_dbs, notes)
        else:
            notes.append("PostgreSQL growth skipped: nothing answers at 127.0.0.1:5432")
        rows += await section("cold start", notes, lambda: stdio.cold_start(params))
        http_rows, http_note = await section(
            "HTTP throughput", notes, lambda: http.throughput(stdio_url, stand_in, token)
        ) or ([], None)
        rows += http_rows
        if http_note:
            notes.append(http_note)


def main() -> int:
    started = time.perf_counter()
    pg_version = postgres_version()
    info = machine(pg_version)
    rows: list[Row] = []
    notes: list[str] = []
    log(header(info))
    with tempfile.TemporaryDirectory(prefix="task-mcp-bench-") as tmp:
        if pg_version:
            with postgres_database():
                anyio.run(run_all, Path(tmp), pg_version, rows, notes)
        else:
            print("note: PostgreSQL is not reachable at 127.0.0.1:5432; its growth benchmark is skipped")
            anyio.run(run_all, Path(tmp), None, rows, notes)
    seconds = time.perf_counter() - started
    print(header(info))
    print(table(rows))
    for note in notes:
        print(f"\nnote: {note}")
    misses = [r for r in rows if r.verdict == "MISS"]
    print(f"\n{len(rows)} figures, {sum(r.verdict == 'PASS' for r in rows)} PASS, {len(misses)} MISS; {seconds:.0f} s")
    print(f"JSON: {save(info, rows, notes, seconds)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
