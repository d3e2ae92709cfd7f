"""Engines, transactions and migrations.

`Database.run(fn, write=...)` is the only way the service touches storage: one transaction per
call, committed when `fn` returns, rolled back when it raises, and retried a bounded number of
times when the database reports a transient failure (a lock, a serialisation failure, a deadlock,
a lost race on a unique row).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.pool import StaticPool
from sqlmodel import Session

from task_mcp.errors import TaskMcpError, UnavailableError

logger = logging.getLogger(__name__)

T = TypeVar("T")

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
MAX_ATTEMPTS = 5
_TRANSIENT_SQLSTATES = {"40001", "40P01", "55P03"}  # serialisation failure, deadlock, lock not available
_TRANSIENT_SQLITE = ("database is locked", "database table is locked", "database is busy")
_PG_MIGRATION_LOCK = 7_146_223_511  # advisory lock id: replicas starting together migrate one at a time


def make_engine(url: str, *, pool_size: int = 5, max_overflow: int = 10) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        memory = parsed.database in (None, "", ":memory:")
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            # One shared connection for an in-memory database, or each thread gets an empty one.
            poolclass=StaticPool if memory else None,
        )
        _configure_sqlite(engine, wal=not memory)
        return engine
    return create_engine(url, pool_size=pool_size, max_overflow=max_overflow, pool_pre_ping=True)


def _configure_sqlite(engine: Engine, *, wal: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves, see below
        cursor = dbapi_conn.cursor()
        if wal:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # A write transaction takes the write lock up front: a deferred one that later upgrades
        # can fail at once with "database is locked" instead of waiting for the busy timeout.
        immediate = conn.get_execution_options().get("task_mcp_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


class Database:
    def __init__(self, url: str, *, pool_size: int = 5, max_overflow: int = 10) -> None:
        self.url = url
        self.engine = make_engine(url, pool_size=pool_size, max_overflow=max_overflow)
        self._write_engine = self.engine.execution_options(task_mcp_write=True)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def run(self, fn: Callable[[Session], T], *, write: bool) -> T:
        """Run `fn` in one transaction; retry transient failures, then answer `unavailable`."""
        bind = self._write_engine if write else self.engine
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                with Session(bind, expire_on_commit=False) as session, session.begin():
                    return fn(session)
            except TaskMcpError:
                raise
            except DBAPIError as exc:
                if not _is_transient(exc) or attempt == MAX_ATTEMPTS:
                    if _is_transient(exc) or _is_connection_error(exc):
                        logger.warning("database unavailable after %d attempt(s): %s", attempt, exc.orig)
                        raise UnavailableError(
                            "The task database is busy or unreachable right now; nothing was changed. "
                            "Wait a few seconds and call again."
                        ) from exc
                    raise
                logger.debug("transient database error, attempt %d: %s", attempt, exc.orig)
                time.sleep(min(0.02 * 2**attempt, 0.5))
        raise AssertionError("unreachable")

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def dispose(self) -> None:
        self.engine.dispose()


def _is_transient(exc: DBAPIError) -> bool:
    if isinstance(exc, IntegrityError):
        # A concurrent transaction inserted the same counter or idempotency row first; the
        # retry sees its row and takes the normal path.
        return True
    sqlstate = getattr(exc.orig, "sqlstate", None)
    if sqlstate in _TRANSIENT_SQLSTATES:
        return True
    return isinstance(exc, OperationalError) and any(s in str(exc.orig).lower() for s in _TRANSIENT_SQLITE)


def _is_connection_error(exc: DBAPIError) -> bool:
    return isinstance(exc, OperationalError) or exc.connection_invalidated


def alembic_config(database: Database) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["engine"] = database.engine
    return config


def migrate(database: Database) -> None:
    """Bring the schema to the newest revision; safe when several replicas start at once."""
    config = alembic_config(database)
    if database.dialect == "postgresql":
        with database.engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:id)"), {"id": _PG_MIGRATION_LOCK})
            conn.commit()
            try:
                config.attributes["connection"] = conn
                command.upgrade(config, "head")
                conn.commit()
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": _PG_MIGRATION_LOCK})
                conn.commit()
    else:
        command.upgrade(config, "head")
