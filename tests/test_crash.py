"""`task-mcp serve` killed with SIGKILL while a 100-task `create_tasks` is in flight.

After each kill a new server starts on the same database: the user has all 100 tasks of the
killed call or none of them (none for the kill that surely lands inside the open transaction),
numbers stay gap-free (the next task gets the next number), and a
SQLite file passes `PRAGMA integrity_check`.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import make_url

from task_mcp.db import Database
from task_mcp.testing import JwksServer
from tests.helpers import SERVE

SAFE_ENV = ("HOME", "LOGNAME", "PATH", "SHELL", "TERM", "USER")
BATCH = [
    {"title": f"Crash item {i}", "description": "d" * 2000, "tags": [f"tag-{j}" for j in range(8)]} for i in range(100)
]


class RawServer:
    """A stdio server driven by raw JSON-RPC lines, killed by a watchdog if it stops answering."""

    def __init__(self, env: dict[str, str], stderr: Path) -> None:
        self._stderr = stderr.open("a")
        self.proc = subprocess.Popen(
            SERVE, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, text=True
        )
        self._watchdog = threading.Timer(60, self.proc.kill)
        self._watchdog.start()
        self._next_id = 0
        hello = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "crash", "version": "0"}}
        assert "result" in self.request("initialize", hello)
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})

    def send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin
        self.proc.stdin.write(json.dumps(message) + "\n")
        self.proc.stdin.flush()

    def call(self, tool: str, arguments: dict[str, Any]) -> int:
        """Send a tools/call without waiting; returns its request id."""
        self._next_id += 1
        params = {"name": tool, "arguments": arguments}
        self.send({"jsonrpc": "2.0", "id": self._next_id, "method": "tools/call", "params": params})
        return self._next_id

    def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        self._next_id += 1
        self.send({"jsonrpc": "2.0", "id": self._next_id, "method": method, "params": params})
        assert self.proc.stdout
        while True:
            line = self.proc.stdout.readline()
            assert line, "the server exited or stopped answering"
            message = json.loads(line)
            if message.get("id") == self._next_id:
                return message

    def tool(self, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        result = self.request("tools/call", {"name": tool, "arguments": arguments})["result"]
        assert not result.get("isError"), result
        return result["structuredContent"]

    def close(self) -> None:
        self._watchdog.cancel()
        self.proc.kill()
        self.proc.wait(10)
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe:
                pipe.close()
        self._stderr.close()


@contextmanager
def serving(env: dict[str, str], stderr: Path) -> Iterator[RawServer]:
    server = RawServer(env, stderr)
    try:
        yield server
    finally:
        server.close()


def stored_numbers(url: str) -> tuple[list[int], int | None]:
    database = Database(url)
    try:
        with database.engine.connect() as conn:
            numbers = [n for (n,) in conn.execute(text("SELECT number FROM tasks WHERE owner_id = 'alice' ORDER BY 1"))]
            counter = conn.execute(text("SELECT last_number FROM task_counters WHERE owner_id = 'alice'")).scalar()
        return numbers, counter
    finally:
        database.dispose()


def integrity(url: str) -> str:
    with sqlite3.connect(make_url(url).database or "") as conn:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])


def wait_for_open_write(url: str, application_name: str) -> bool:
    """Wait until a write transaction of the server is open.

    PostgreSQL: its connection is in a transaction that has written (has an xid). SQLite: someone
    holds the write lock (probed by taking it for an instant, without waiting).
    """
    deadline = time.monotonic() + 10
    if url.startswith("sqlite"):
        with contextlib.closing(
            sqlite3.connect(make_url(url).database or "", timeout=0, isolation_level=None)
        ) as probe:
            while time.monotonic() < deadline:
                try:
                    probe.execute("BEGIN IMMEDIATE")
                    probe.execute("ROLLBACK")
                except sqlite3.OperationalError as exc:
                    if "locked" in str(exc):
                        return True
                    raise
                time.sleep(0.002)
        return False
    database = Database(url)
    query = text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :n AND backend_xid IS NOT NULL")
    try:
        with database.engine.connect() as conn:
            while time.monotonic() < deadline:
                if conn.execute(query, {"n": application_name}).scalar_one():
                    return True
                conn.rollback()
                time.sleep(0.002)
        return False
    finally:
        database.dispose()


def slow_tag_writes(url: str, on: bool) -> None:
    """Make each tag row take a while to write (a trigger), so a transaction stays open for seconds."""
    # PostgreSQL notices the killed server only when the sleeping statement ends: wait for that.
    database = Database(url, lock_timeout=60)
    if url.startswith("sqlite"):
        # No sleep in SQLite: count a cross join of the schema table, some 10^5 rows per tag row.
        statements = (
            [
                "CREATE TRIGGER slow_tags AFTER INSERT ON task_tags BEGIN "
                "SELECT count(*) FROM sqlite_master a, sqlite_master b, sqlite_master c, sqlite_master d; END"
            ]
            if on
            else ["DROP TRIGGER slow_tags"]
        )
    else:
        statements = (
            [
                "CREATE OR REPLACE FUNCTION slow_tags() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN PERFORM pg_sleep(0.01); RETURN NEW; END $$",
                "CREATE TRIGGER slow_tags AFTER INSERT ON task_tags FOR EACH ROW EXECUTE FUNCTION slow_tags()",
            ]
            if on
            else ["DROP FUNCTION slow_tags() CASCADE"]
        )
    try:
        with database.engine.begin() as conn:
            for statement in statements:
                conn.execute(text(statement))
    finally:
        database.dispose()


def test_a_server_killed_during_create_tasks_keeps_all_or_none_and_numbers_gap_free(
    database_url: str, jwks: JwksServer, mint: Callable[..., str], tmp_path: Path
) -> None:
    postgres = database_url.startswith("postgresql")
    name = f"task-mcp-crash-{os.getpid()}"
    url = make_url(database_url).update_query_dict({"application_name": name}) if postgres else make_url(database_url)
    env = {k: os.environ[k] for k in SAFE_ENV if k in os.environ} | {
        "TASK_MCP_DATABASE_URL": url.render_as_string(hide_password=False),
        "TASK_MCP_BETTER_AUTH_URL": jwks.base_url,
        "TASK_MCP_TOKEN": mint("alice"),
        "TASK_MCP_LOG_LEVEL": "WARNING",
    }
    stderr = tmp_path / "server.stderr"
    # Kill points as fractions of how long the same call takes when left alone (the machine's
    # speed varies); None: right after the server's write transaction is seen open, uncommitted.
    kill_points: list[float | None] = [None, 0.5, 0.9]
    total, outcomes, duration = 0, [], 0.0
    for point in kill_points:
        # Each server is also the "after restart" of the previous kill.
        with serving(env, stderr) as server:
            assert server.tool("list_tasks", {"status": "all", "limit": 1})["total"] == total
            if not duration:
                started = time.monotonic()
                assert len(server.tool("create_tasks", {"tasks": BATCH})["tasks"]) == 100
                duration = time.monotonic() - started
                total = 100
            if point is None:
                slow_tag_writes(database_url, on=True)
            server.call("create_tasks", {"tasks": BATCH})
            if point is None:
                # With 800 slow tag rows the transaction stays open for several seconds: this kill
                # lands inside it, after its first writes.
                assert wait_for_open_write(database_url, name)
                time.sleep(0.3)
            else:
                time.sleep(point * duration)
            server.proc.kill()  # SIGKILL: no cleanup, no rollback from the server's side
            server.proc.wait(10)
            if point is None:
                slow_tag_writes(database_url, on=False)

        numbers, counter = stored_numbers(database_url)
        survived = len(numbers) - total
        assert survived in (0, 100), f"{survived} of 100 tasks survived a kill at {point}"
        if point is None:
            assert survived == 0, "the kill inside the open transaction left its tasks"
        outcomes.append(survived)
        total = len(numbers)
        assert numbers == list(range(1, total + 1))
        assert counter == total
        if not postgres:
            assert integrity(database_url) == "ok"

    with serving(env, stderr) as server:
        assert server.tool("list_tasks", {"status": "all", "limit": 1})["total"] == total
        task = server.tool("create_task", {"title": "After the crashes"})["task"]
    assert task["id"] == total + 1, outcomes
    assert "Traceback" not in stderr.read_text()
    print(f"create_tasks took {duration:.2f}s; tasks kept per kill at {kill_points}: {outcomes}")
