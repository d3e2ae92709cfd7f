"""Where a tool call runs, on a SQLite file another process is writing to.

Reads run on the event loop's thread (they never wait for SQLite's write lock: WAL), writes on a
worker thread (they may wait for it). A user notices both: another process's long write never
stalls a read, and a write waiting for the lock never holds up the session's other requests.
"""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import pytest
from sqlalchemy.engine import make_url

from task_mcp.config import Settings
from task_mcp.db import Database
from task_mcp.server import TaskMcp
from task_mcp.testing import JwksServer
from tests.helpers import Caller, connect, error, ok

pytestmark = pytest.mark.anyio


@pytest.fixture
def sqlite_url(_sqlite_template: Path, tmp_path: Path) -> str:
    """A migrated SQLite file (the write lock, and reads that do not wait for it, are SQLite's)."""
    path = tmp_path / "tasks.db"
    shutil.copy(_sqlite_template, path)
    return f"sqlite:///{path}"


@contextlib.contextmanager
def write_lock_held(url: str) -> Iterator[Callable[[], None]]:
    """Another process's view: a connection holding SQLite's write lock until `release()`."""
    other = sqlite3.connect(make_url(url).database or "", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    released = False

    def release() -> None:
        nonlocal released
        if not released:
            other.execute("ROLLBACK")
            released = True

    try:
        yield release
    finally:
        release()
        other.close()


def app_with_lock_timeout(url: str, jwks: JwksServer, seconds: float) -> TaskMcp:
    settings = Settings(_env_file=None, database_url=url, better_auth_url=jwks.base_url)
    return TaskMcp(settings, database=Database(url, lock_timeout=seconds))


async def test_reads_answer_while_another_process_holds_the_write_lock_and_writes_wait_for_it(
    sqlite_url: str, jwks: JwksServer, mint: Callable[..., str]
) -> None:
    app = app_with_lock_timeout(sqlite_url, jwks, 0.2)
    try:
        async with connect(app) as client:
            alice = Caller(client, mint("alice"))
            await alice.add("Before the lock")
            with write_lock_held(sqlite_url):
                assert [t["title"] for t in (await alice.page())["tasks"]] == ["Before the lock"]
                assert (await alice.task(1))["title"] == "Before the lock"
                busy = error(await alice.call("create_task", title="During the lock"), "unavailable")
                assert "nothing was changed" in busy
            assert (await alice.add("After the lock"))["id"] == 2
    finally:
        app.database.dispose()


async def test_calls_waiting_for_the_lock_do_not_hold_up_a_read_on_the_same_session(
    sqlite_url: str, jwks: JwksServer, mint: Callable[..., str]
) -> None:
    """A write, and a new caller's first read (it notes their organizations: a write), wait on
    worker threads; a read by a caller already noted answers meanwhile."""
    app = app_with_lock_timeout(sqlite_url, jwks, 3)
    finished: list[str] = []
    try:
        async with connect(app) as client:
            alice, bob = Caller(client, mint("alice")), Caller(client, mint("bob"))
            assert (await alice.page())["total"] == 0  # alice is noted; bob has not called yet
            with write_lock_held(sqlite_url) as release:

                async def write() -> None:
                    ok(await alice.call("create_task", title="Waits for the lock"))
                    finished.append("alice's write")

                async def first_read() -> None:
                    assert (await bob.page())["total"] == 0
                    finished.append("bob's first read")

                with anyio.fail_after(60):  # a guard against hanging, not a measure
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(write)
                        tg.start_soon(first_read)
                        await anyio.sleep(0.05)  # both are sent and waiting
                        assert (await alice.page())["total"] == 0
                        finished.append("alice's read")
                        release()  # only now can the others go through
            assert finished[0] == "alice's read"
            assert sorted(finished[1:]) == ["alice's write", "bob's first read"]
            assert [t["title"] for t in (await alice.page())["tasks"]] == ["Waits for the lock"]
    finally:
        app.database.dispose()
