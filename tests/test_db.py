"""db.py when things go wrong: lock waits, real database errors, racing migrations, lost connections.

A transient failure is retried a bounded number of times, then answered `unavailable` with nothing
half-written; errors that a retry cannot fix are not retried; replicas migrating an empty database
at the same moment all come up; a database that is unreachable is `unavailable` with what to do,
and one that dropped the server's connections serves the next call.
"""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError

from task_mcp.auth import JwtVerifier
from task_mcp.config import Settings, load_settings
from task_mcp.credentials import META_KEY
from task_mcp.db import (
    BUSY,
    IN_DOUBT,
    MAX_ATTEMPTS,
    UNREACHABLE,
    Database,
    alembic_config,
    current_revision,
    head_revision,
    migrate,
)
from task_mcp.errors import ConfigError, UnavailableError
from task_mcp.models import TaskCreate, TaskQuery, TaskUpdate
from task_mcp.server import TaskMcp
from task_mcp.service import TaskService
from task_mcp.testing import JwksServer
from tests.helpers import POSTGRES_URL, TABLES, connect

NEEDS_POSTGRES = "set TASK_MCP_TEST_POSTGRES_URL to run the PostgreSQL tests"


# --- helpers ----------------------------------------------------------------------------------------


@pytest.fixture
def postgres_url(request: pytest.FixtureRequest) -> str:
    """The shared test PostgreSQL, migrated and emptied (PostgreSQL-only behaviour)."""
    if not POSTGRES_URL:
        pytest.skip(NEEDS_POSTGRES)
    url: str = request.getfixturevalue("_postgres_migrated")
    database = Database(url)
    with database.engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE"))
    database.dispose()
    return url


@pytest.fixture
def admin() -> Iterator[Engine]:
    """A PostgreSQL connection outside the code under test, for locks and pg_terminate_backend."""
    if not POSTGRES_URL:
        pytest.skip(NEEDS_POSTGRES)
    engine = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    yield engine
    engine.dispose()


@contextmanager
def locked(url: str, postgres_lock: str) -> Iterator[None]:
    """Another connection holds a lock that blocks writers (readers still pass).

    SQLite: the whole database (BEGIN EXCLUSIVE). PostgreSQL: what `postgres_lock` takes.
    """
    if url.startswith("sqlite"):
        conn = sqlite3.connect(make_url(url).database or "", isolation_level=None)
        conn.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            conn.execute("ROLLBACK")
            conn.close()
        return
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(text(postgres_lock))
            try:
                yield
            finally:
                conn.rollback()
    finally:
        engine.dispose()


@contextmanager
def locked_for(url: str, postgres_lock: str, seconds: float) -> Iterator[None]:
    """Like `locked`, released by a background thread after `seconds`."""
    taken = threading.Event()

    def hold() -> None:
        with locked(url, postgres_lock):
            taken.set()
            time.sleep(seconds)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert taken.wait(5)
        yield
    finally:
        holder.join()


def retries(caplog: pytest.LogCaptureFixture) -> int:
    return sum("transient database error" in r.getMessage() for r in caplog.records)


def scalar(url: str, sql: str, **params: Any) -> Any:
    database = Database(url)
    try:
        with database.engine.connect() as conn:
            return conn.execute(text(sql), params).scalar()
    finally:
        database.dispose()


def stored(url: str) -> tuple[list[int], int | None, int]:
    """(task numbers, counter, tag rows) of alice."""
    database = Database(url)
    try:
        with database.engine.connect() as conn:
            numbers = [n for (n,) in conn.execute(text("SELECT number FROM tasks WHERE owner_id = 'alice' ORDER BY 1"))]
            last = conn.execute(text("SELECT last_number FROM task_counters WHERE owner_id = 'alice'")).scalar()
            tags = conn.execute(text("SELECT count(*) FROM task_tags WHERE owner_id = 'alice'")).scalar_one()
        return numbers, last, tags
    finally:
        database.dispose()


@pytest.fixture
def short_waits(database_url: str) -> Iterator[TaskService]:
    """A service whose lock waits give up after 0.1 s, so five attempts take well under 2 s."""
    database = Database(database_url, lock_timeout=0.1)
    service = TaskService(database, purge_every=None)  # no background purge to count retries of
    service.create_task("alice", TaskCreate(title="Before", tags=["old"]))
    yield service
    database.dispose()


# --- settings ----------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_pool_and_lock_wait_settings_reach_the_database(
    database_url: str, jwks: JwksServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TASK_MCP_DB_POOL_SIZE", "3")
    monkeypatch.setenv("TASK_MCP_DB_MAX_OVERFLOW", "2")
    monkeypatch.setenv("TASK_MCP_DB_LOCK_TIMEOUT_SECONDS", "0.25")
    app = TaskMcp(load_settings(database_url=database_url, better_auth_url=jwks.base_url))
    try:
        with app.database.engine.connect() as conn:
            if database_url.startswith("sqlite"):
                assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 250
            else:
                assert conn.execute(text("SHOW lock_timeout")).scalar() == "250ms"
                pool = app.database.engine.pool
                assert (pool.size(), pool._max_overflow) == (3, 2)  # type: ignore[attr-defined]
    finally:
        await app.aclose()


# --- transient failures: retried, then unavailable, nothing half-written ----------------------------


def test_a_create_blocked_past_the_retry_budget_answers_unavailable_and_writes_nothing(
    database_url: str, short_waits: TaskService, caplog: pytest.LogCaptureFixture
) -> None:
    # On PostgreSQL only the tag table is locked: the create has already taken a number and
    # inserted its task row when it blocks, so "nothing half-written" is a real check.
    with (
        caplog.at_level(logging.DEBUG, logger="task_mcp.db"),
        locked(database_url, "LOCK TABLE task_tags IN EXCLUSIVE MODE"),
        pytest.raises(UnavailableError) as raised,
    ):
        short_waits.create_task("alice", TaskCreate(title="Blocked", tags=["new"]))

    assert str(raised.value) == f"unavailable: {BUSY}"
    assert retries(caplog) == MAX_ATTEMPTS - 1  # a bounded number of waits, then the answer
    cause = raised.value.__cause__
    assert isinstance(cause, DBAPIError)
    if database_url.startswith("postgresql"):
        assert cause.orig.sqlstate == "55P03"  # type: ignore[union-attr]
        assert "task_tags" in (cause.statement or "")
    else:
        assert "database is locked" in str(cause.orig)
    assert stored(database_url) == ([1], 1, 1)
    task, _ = short_waits.create_task("alice", TaskCreate(title="After", tags=["new"]))
    assert task.id == 2  # the failed create used up no number


def test_a_lock_released_within_the_retry_budget_is_waited_out(
    database_url: str, short_waits: TaskService, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        caplog.at_level(logging.DEBUG, logger="task_mcp.db"),
        locked_for(database_url, "LOCK TABLE task_tags IN EXCLUSIVE MODE", 0.3),
    ):
        task, created = short_waits.create_task("alice", TaskCreate(title="Patient", tags=["new"]))

    assert (task.id, created) == (2, True)
    assert 1 <= retries(caplog) < MAX_ATTEMPTS
    assert stored(database_url) == ([1, 2], 2, 2)


def test_an_update_blocked_by_a_row_lock_answers_unavailable_and_keeps_the_version(
    database_url: str, short_waits: TaskService
) -> None:
    row_lock = "SELECT 1 FROM tasks WHERE owner_id = 'alice' AND number = 1 FOR UPDATE"
    with locked(database_url, row_lock):
        assert short_waits.get_task("alice", 1).version == 1  # readers are not blocked
        with pytest.raises(UnavailableError):
            short_waits.update_task("alice", 1, TaskUpdate(title="Changed", tags=["changed"], status="completed"))

    task = short_waits.get_task("alice", 1)
    assert (task.title, task.tags, task.status, task.version) == ("Before", ["old"], "open", 1)
    assert short_waits.update_task("alice", 1, TaskUpdate(title="Changed")).version == 2


def test_a_purge_that_cannot_run_does_not_fail_the_callers_write(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # The hourly purge starts from a process's first write and touches every user's rows; a lock it
    # cannot get is not the caller's problem: it runs on a thread of its own, after the answer.
    database = Database(postgres_url, lock_timeout=0.1)
    try:
        with locked(postgres_url, "LOCK TABLE idempotency_keys IN EXCLUSIVE MODE"):
            task, created = TaskService(database).create_task("alice", TaskCreate(title="Unrelated"))
            assert (task.id, created) == (1, True)  # answered while the purge is still blocked
            database.wait_for_background()  # five lock waits of 0.1 s, then the purge gives up
        assert any("purging deleted tasks failed" in r.getMessage() for r in caplog.records)
    finally:
        database.dispose()


# --- which errors are retried -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sqlstate", "transient"),
    [
        ("40001", True),  # serialization_failure
        ("40P01", True),  # deadlock_detected
        ("55P03", True),  # lock_not_available
        ("23505", True),  # unique_violation: another request inserted the same key first
        ("23502", False),  # not_null_violation: a bug, not a race
        ("22012", False),  # division_by_zero
        ("42P01", False),  # undefined_table
    ],
)
def test_postgres_errors_are_retried_only_when_a_retry_can_fix_them(
    postgres_url: str, sqlstate: str, transient: bool
) -> None:
    database = Database(postgres_url)
    attempts = 0

    def fails_once(conn: Connection) -> int:
        nonlocal attempts
        attempts += 1
        conn.execute(text("INSERT INTO task_counters (owner_id, last_number) VALUES ('alice', :n)"), {"n": attempts})
        if attempts == 1:  # raised by the server, mapped by psycopg, like the real thing
            conn.execute(text(f"DO $$ BEGIN RAISE EXCEPTION 'simulated' USING ERRCODE = '{sqlstate}'; END $$"))
        return attempts

    def always_fails(conn: Connection) -> None:
        conn.execute(text(f"DO $$ BEGIN RAISE EXCEPTION 'simulated' USING ERRCODE = '{sqlstate}'; END $$"))

    try:
        if transient:
            assert database.run(fails_once, write=True) == 2
            assert scalar(postgres_url, "SELECT last_number FROM task_counters") == 2  # attempt 1 rolled back
            with pytest.raises(UnavailableError, match="busy"):
                database.run(always_fails, write=True)
        else:
            with pytest.raises(DBAPIError) as raised:
                database.run(fails_once, write=True)
            assert raised.value.orig.sqlstate == sqlstate  # type: ignore[union-attr]
            assert attempts == 1
            assert scalar(postgres_url, "SELECT count(*) FROM task_counters") == 0
    finally:
        database.dispose()


def test_a_lost_unique_race_is_retried_and_other_integrity_errors_are_not(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    database = Database(database_url)
    insert = "INSERT INTO task_counters (owner_id, last_number) VALUES ('alice', :n)"
    database.run(lambda s: s.execute(text(insert), {"n": 1}), write=True)
    try:
        with caplog.at_level(logging.DEBUG, logger="task_mcp.db"):
            # A unique violation that never goes away: retried, then `unavailable` (never `internal`).
            with pytest.raises(UnavailableError):
                database.run(lambda s: s.execute(text(insert), {"n": 2}), write=True)
            assert retries(caplog) == MAX_ATTEMPTS - 1
            caplog.clear()
            # NOT NULL is a bug: raised at once, unretried, so the server logs it and answers `internal`.
            with pytest.raises(IntegrityError):
                database.run(lambda s: s.execute(text(insert), {"n": None}), write=True)
            assert retries(caplog) == 0
    finally:
        database.dispose()


def test_a_real_deadlock_is_retried_and_both_transactions_commit(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    database = Database(postgres_url)
    database.run(lambda s: s.execute(text("INSERT INTO task_counters VALUES ('a', 0), ('b', 0)")), write=True)
    both_hold_one = threading.Barrier(2)
    answers: list[str] = []

    def lock_both(first: str, second: str) -> None:
        tries = 0

        def fn(conn: Connection) -> str:
            nonlocal tries
            tries += 1
            lock = "UPDATE task_counters SET last_number = last_number + 1 WHERE owner_id = :o"
            conn.execute(text(lock), {"o": first})
            if tries == 1:
                both_hold_one.wait(5)
            conn.execute(text(lock), {"o": second})
            return first

        answers.append(database.run(fn, write=True))

    try:
        with caplog.at_level(logging.DEBUG, logger="task_mcp.db"):
            threads = [threading.Thread(target=lock_both, args=pair) for pair in [("a", "b"), ("b", "a")]]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(15)
        assert sorted(answers) == ["a", "b"]
        assert any("deadlock detected" in r.getMessage() for r in caplog.records)
        totals = scalar(postgres_url, "SELECT sum(last_number) FROM task_counters WHERE owner_id IN ('a', 'b')")
        assert totals == 4  # each transaction counted once, the aborted attempt not at all
    finally:
        database.dispose()


# --- replicas migrating one empty database at the same moment ---------------------------------------

MIGRATE = """
import sys
from task_mcp.db import Database, migrate
database = Database(sys.argv[1])
print("ready", flush=True)
sys.stdin.readline()
migrate(database)
database.dispose()
print("migrated", flush=True)
"""


def test_four_processes_migrating_an_empty_database_at_once_all_succeed(empty_database_url: str) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", MIGRATE, empty_database_url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    try:
        for proc in procs:  # every process has imported everything and waits
            assert proc.stdout and proc.stdout.readline() == "ready\n"
        for proc in procs:
            assert proc.stdin
            proc.stdin.write("go\n")
            proc.stdin.flush()
        outcomes = [proc.communicate(timeout=60) for proc in procs]
    finally:
        for proc in procs:
            proc.kill()

    assert [proc.returncode for proc in procs] == [0] * 4, [err for _, err in outcomes]
    assert all(out == "migrated\n" for out, _ in outcomes)
    database = Database(empty_database_url)
    try:
        head = ScriptDirectory.from_config(alembic_config(database)).get_current_head()
        with database.engine.connect() as conn:
            assert [v for (v,) in conn.execute(text("SELECT version_num FROM alembic_version"))] == [head]
            assert set(TABLES.split(", ")) <= set(inspect(conn).get_table_names())
        migrate(database)  # and once more is a no-op
        task, _ = TaskService(database).create_task("alice", TaskCreate(title="First"))
        assert task.id == 1
    finally:
        database.dispose()


# --- the database goes away -------------------------------------------------------------------------


@pytest.mark.anyio
async def test_an_unreachable_database_answers_unavailable_with_what_to_do(
    jwks: JwksServer, mint: Callable[..., str], caplog: pytest.LogCaptureFixture
) -> None:
    url = "postgresql+psycopg://postgres@127.0.0.1:1/tasks"
    settings = Settings(_env_file=None, database_url=url, better_auth_url=jwks.base_url)  # type: ignore[call-arg]
    app = TaskMcp(settings, verifier=JwtVerifier.from_settings(settings))
    meta = {META_KEY: mint("alice")}
    try:
        async with connect(app) as client:
            with caplog.at_level(logging.DEBUG, logger="task_mcp.db"):
                answers = [
                    await client.call_tool("create_task", {"title": "Water the plants"}, meta=meta),
                    await client.call_tool("list_tasks", {}, meta=meta),
                    await client.call_tool("update_task", {"task_id": 1, "title": "x"}, meta=meta),
                ]
    finally:
        await app.aclose()

    for answer in answers:
        assert answer.is_error
        assert answer.content[0].text == f"unavailable: {UNREACHABLE}"
    words = UNREACHABLE.lower()
    assert "call again" in words and "tell the user" in words
    assert not any(leak in words for leak in ("select", "traceback", "psycopg", "sqlite", "127.0.0.1"))
    assert retries(caplog) == 0  # refused at once, not retried into a long wait


def test_a_sqlite_file_in_a_folder_that_does_not_exist_is_refused_naming_the_variable(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-folder" / "tasks.db"
    with pytest.raises(ConfigError) as raised:
        Database(f"sqlite:///{missing}")
    assert str(raised.value).startswith("TASK_MCP_DATABASE_URL: ")
    assert str(missing.parent) in str(raised.value)
    assert not missing.parent.exists()  # nothing was created on the way


@pytest.mark.anyio
async def test_the_next_call_succeeds_after_the_servers_connections_were_terminated(
    postgres_url: str, admin: Engine, jwks: JwksServer, mint: Callable[..., str]
) -> None:
    name = f"task-mcp-{uuid.uuid4().hex[:8]}"  # terminate this server's connections only
    url = make_url(postgres_url).update_query_dict({"application_name": name}).render_as_string(hide_password=False)
    settings = Settings(_env_file=None, database_url=url, better_auth_url=jwks.base_url)  # type: ignore[call-arg]
    app = TaskMcp(settings, verifier=JwtVerifier.from_settings(settings))
    meta = {META_KEY: mint("alice")}
    terminate = text(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE datname = current_database() AND application_name = :name AND pid <> pg_backend_pid()"
    )
    try:
        async with connect(app) as client:
            for round in range(3):
                created = await client.call_tool("create_task", {"title": f"Round {round}"}, meta=meta)
                assert not created.is_error, created.content[0].text
                with admin.connect() as conn:
                    assert conn.execute(terminate, {"name": name}).scalar_one() >= 1
                listed = await client.call_tool("list_tasks", {}, meta=meta)
                assert not listed.is_error, listed.content[0].text
                assert listed.structured_content["total"] == round + 1
                with admin.connect() as conn:
                    conn.execute(terminate, {"name": name})
    finally:
        await app.aclose()


def _backend_pid(conn: Connection) -> int:
    return int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())


def _kill(admin: Engine, pid: int) -> None:
    with admin.connect() as conn:
        assert conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar_one()


def test_a_connection_lost_mid_transaction_is_retried_on_a_new_one(postgres_url: str, admin: Engine) -> None:
    database = Database(postgres_url)
    attempts = 0

    def fn(conn: Connection) -> int:
        nonlocal attempts
        attempts += 1
        conn.execute(text("INSERT INTO task_counters VALUES ('alice', :n)"), {"n": attempts})
        if attempts == 1:
            _kill(admin, _backend_pid(conn))
        return int(conn.execute(text("SELECT count(*) FROM task_counters")).scalar_one())

    try:
        assert database.run(fn, write=True) == 1
        assert attempts == 2
        assert scalar(postgres_url, "SELECT last_number FROM task_counters WHERE owner_id = 'alice'") == 2
    finally:
        database.dispose()


def test_a_connection_lost_during_commit_says_the_outcome_is_unknown(postgres_url: str, admin: Engine) -> None:
    database = Database(postgres_url)
    pids: list[int] = []
    attempts = 0

    @event.listens_for(database.engine, "commit")
    def _lose_connection(conn: Any) -> None:  # after the statements, before COMMIT reaches the server
        if pids:
            _kill(admin, pids.pop())

    def fn(conn: Connection) -> None:
        nonlocal attempts
        attempts += 1
        pids.append(_backend_pid(conn))
        conn.execute(text("INSERT INTO task_counters VALUES ('alice', 1)"))

    try:
        with pytest.raises(UnavailableError) as raised:
            database.run(fn, write=True)
        assert str(raised.value) == f"unavailable: {IN_DOUBT}"
        assert attempts == 1  # a commit that may have happened is never retried
        assert "may or may not have been saved" in IN_DOUBT and "idempotency_key" in IN_DOUBT
    finally:
        database.dispose()


def test_the_head_revision_read_from_file_names_is_alembics_head() -> None:
    script = ScriptDirectory.from_config(alembic_config(Database("sqlite://")))
    assert head_revision() == script.get_current_head()


def test_a_database_at_an_older_revision_is_upgraded_and_keeps_its_tasks(empty_database_url: str) -> None:
    from alembic import command

    database = Database(empty_database_url)
    try:
        command.upgrade(alembic_config(database), "0002")
        insert = text(
            "INSERT INTO tasks (owner_id, number, title, description, status, priority, tags, version, "
            "created_at, updated_at) VALUES ('alice', :n, :title, :description, 'open', 0, '', 1, :at, :at)"
        )
        made = [("Made before the upgrade", None), ("İSTANBUL trip", "Visit the ÉCOLE"), ("Groceries", "Straße 5")]
        at = dt.datetime(2026, 1, 1)
        with database.engine.begin() as conn:
            for n, (title, description) in enumerate(made, start=1):
                conn.execute(insert, {"n": n, "title": title, "description": description, "at": at})
            conn.execute(text("INSERT INTO task_counters VALUES ('alice', 3)"))
        assert current_revision(database) == "0002"
        migrate(database)
        assert current_revision(database) == head_revision()
        service = TaskService(database, purge_every=None)
        listed = service.list_tasks("alice", TaskQuery(status="all", sort="created"))
        assert sorted((t.id, t.title) for t in listed.tasks) == [(n, title) for n, (title, _) in enumerate(made, 1)]
        # The case-folded copies were filled in for the rows that existed before the upgrade.
        for text_query, ids in [("istanbul", [2]), ("école", [2]), ("STRASSE", [3]), ("made BEFORE", [1])]:
            found = service.list_tasks("alice", TaskQuery(text=text_query))
            assert [t.id for t in found.tasks] == ids, text_query
    finally:
        database.dispose()


# --- how SQLite is opened ---------------------------------------------------------------------------


def test_a_sqlite_file_is_opened_in_wal_mode_with_foreign_keys_and_a_busy_timeout(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'tasks.db'}", lock_timeout=2)
    try:
        migrate(database)
        with database.engine.connect() as conn:
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
            assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 2000
        # Foreign keys are enforced, not just declared: a tag of no task is refused.
        with pytest.raises(IntegrityError), database.engine.begin() as conn:
            conn.execute(text("INSERT INTO task_tags (task_pk, tag, owner_id) VALUES (4242, 'orphan', 'alice')"))
    finally:
        database.dispose()


def test_reading_the_default_database_url_creates_nothing_and_opening_it_makes_its_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir = tmp_path / "data" / "task-mcp"
    monkeypatch.setattr("task_mcp.config.platformdirs.user_data_dir", lambda *a, **k: str(data_dir))
    url = Settings(_env_file=None).sqlalchemy_url  # type: ignore[call-arg]
    assert url == f"sqlite:///{data_dir / 'tasks.db'}"
    assert not (tmp_path / "data").exists()  # a property has no side effects
    database = Database(url)
    try:
        assert data_dir.is_dir()  # the default folder is made when the database is opened
        migrate(database)
    finally:
        database.dispose()
