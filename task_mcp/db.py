"""Engines, transactions and migrations.

`Database.run(fn, write=...)` and `Database.read(fn)` (each hands `fn` a `Connection` for Core
statements) are the only ways the service touches storage: one transaction per call, committed
when `fn` returns, rolled back when it raises, and retried a bounded number of times when the
database reports a transient failure (a lock wait that timed out, a serialisation failure, a
deadlock, a lost race on a unique row) or drops the connection before the commit.
What is still failing after the retries is `UnavailableError`.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.pool import StaticPool

from task_mcp.config import default_data_dir
from task_mcp.errors import ConfigError, TaskMcpError, UnavailableError

if TYPE_CHECKING:
    from alembic.config import Config

    from task_mcp.config import Settings

logger = logging.getLogger(__name__)

T = TypeVar("T")

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
MAX_ATTEMPTS = 5
_TRANSIENT_SQLSTATES = {"40001", "40P01", "55P03"}  # serialisation failure, deadlock, lock not available
_TRANSIENT_SQLITE = ("database is locked", "database table is locked", "database is busy")
_UNIQUE_VIOLATIONS = {"23505", "SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY"}
_PG_MIGRATION_LOCK = 7_146_223_511  # advisory lock id: replicas starting together migrate one at a time
DEFAULT_LOCK_TIMEOUT = 5.0
DEFAULT_POOL_TIMEOUT = 10.0

BUSY = (
    "The task database is busy right now (another request holds a lock); nothing was changed. "
    "Wait a few seconds and call again."
)
UNREACHABLE = (
    "The task database cannot be reached right now; nothing was changed. Wait a few seconds and call "
    "again; if it keeps failing, tell the user the task database is down (the server log has details)."
)
IN_DOUBT = (
    "The connection to the task database was lost while saving, so this change may or may not have "
    "been saved. Call get_task or list_tasks to check before trying again (a create resent with the "
    "same idempotency_key is never made twice)."
)


def make_engine(
    url: str,
    *,
    pool_size: int = 5,
    max_overflow: int = 10,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    pool_timeout: float = DEFAULT_POOL_TIMEOUT,
) -> Engine:
    """`lock_timeout`: seconds a statement waits for another transaction's lock (SQLite: the busy
    timeout) before failing with a transient error that `Database.run` retries.

    Every engine hides SQL parameters from its error messages: an unexpected database error is
    logged, and its parameters hold user ids, titles and tags.

    Raises:
        ConfigError: a SQLite file whose folder does not exist (only the default data folder is
            created here).
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        memory = is_memory_sqlite(url)
        if not memory and parsed.database:
            _ensure_sqlite_folder(Path(parsed.database))
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": lock_timeout},
            # One shared connection for an in-memory database, or each thread gets an empty one.
            poolclass=StaticPool if memory else None,
            hide_parameters=True,
        )
        _configure_sqlite(engine, wal=not memory, busy_ms=round(lock_timeout * 1000))
        return engine
    pool = {"pool_size": pool_size, "max_overflow": max_overflow, "pool_timeout": pool_timeout, "pool_pre_ping": True}
    if parsed.get_backend_name() != "postgresql":
        return create_engine(url, hide_parameters=True, **pool)
    # Without a connect timeout, a database host that drops packets hangs every call for minutes.
    connect_args = {} if "connect_timeout" in parsed.query else {"connect_timeout": 10}
    engine = create_engine(url, hide_parameters=True, connect_args=connect_args, **pool)
    _configure_postgres(engine, lock_ms=round(lock_timeout * 1000))
    return engine


def is_memory_sqlite(url: str) -> bool:
    parsed = make_url(url)
    return parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:")


def _ensure_sqlite_folder(file: Path) -> None:
    folder = file.parent
    if folder.is_dir():
        return
    if folder.resolve() == default_data_dir().resolve():
        folder.mkdir(parents=True, exist_ok=True)  # the default database's home, made on first use
        return
    raise ConfigError(
        f"TASK_MCP_DATABASE_URL: the folder {folder} of the SQLite file does not exist; create it, or "
        "choose a file in an existing folder."
    )


def _configure_postgres(engine: Engine, *, lock_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # PostgreSQL waits for a row lock forever by default: one stuck transaction would hang
        # every call that touches the same user's counter. A bounded wait fails with 55P03, retried.
        cursor = dbapi_conn.cursor()
        cursor.execute(f"SET lock_timeout = {int(lock_ms)}")
        cursor.close()
        dbapi_conn.commit()


def _configure_sqlite(engine: Engine, *, wal: bool, busy_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves, see below
        cursor = dbapi_conn.cursor()
        # First, so that switching a new file to WAL waits for a concurrent opener instead of failing.
        cursor.execute(f"PRAGMA busy_timeout={int(busy_ms)}")
        if wal:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # A write transaction takes the write lock up front: a deferred one that later upgrades
        # can fail at once with "database is locked" instead of waiting for the busy timeout.
        immediate = conn.get_execution_options().get("task_mcp_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


class Database:
    """One database: its engine, and one transaction per call with bounded retries."""

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 5,
        max_overflow: int = 10,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
        pool_timeout: float = DEFAULT_POOL_TIMEOUT,
    ) -> None:
        """Open (lazily) the database at `url`.

        Raises:
            ConfigError: see `make_engine`.
        """
        self.url = url
        self.engine = make_engine(
            url, pool_size=pool_size, max_overflow=max_overflow, lock_timeout=lock_timeout, pool_timeout=pool_timeout
        )
        self._write_engine = self.engine.execution_options(task_mcp_write=True)
        # An in-memory SQLite database is one connection shared by every thread: concurrent
        # transactions on it would interleave and break it, so they take turns.
        self._turns: threading.RLock | None = threading.RLock() if is_memory_sqlite(url) else None
        self._background: list[threading.Thread] = []
        self._background_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        """The database `settings` name, with its pool and lock settings.

        Raises:
            ConfigError: see `make_engine`.
        """
        return cls(
            settings.sqlalchemy_url,
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
            lock_timeout=settings.db_lock_timeout_seconds,
            pool_timeout=settings.db_pool_timeout_seconds,
        )

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def run(self, fn: Callable[[Connection], T], *, write: bool) -> T:
        """Run `fn` in one transaction on a `Connection`; retry transient failures.

        `write=True` takes SQLite's write lock up front (BEGIN IMMEDIATE).

        Raises:
            UnavailableError: still failing after the retries, or the connection was lost while
                committing (the outcome is unknown).
            TaskMcpError: whatever `fn` raises, unchanged (the transaction is rolled back).
        """
        return self._retrying(self._write_engine if write else self.engine, fn, write=write)

    def read(self, fn: Callable[[Connection], T]) -> T:
        """As `run(fn, write=False)`.

        Raises:
            UnavailableError: as `run`.
        """
        return self._retrying(self.engine, fn, write=False)

    @contextmanager
    def _transaction(self, bind: Engine) -> Iterator[Connection]:
        with self._turns or nullcontext(), bind.begin() as conn:
            yield conn

    def _retrying(self, bind: Engine, fn: Callable[[Connection], T], *, write: bool) -> T:
        for attempt in range(1, MAX_ATTEMPTS + 1):
            committing = False
            try:
                with self._transaction(bind) as conn:
                    result = fn(conn)
                    committing = True  # leaving the block commits
                return result
            except TaskMcpError:
                raise
            except PoolTimeoutError as exc:  # every pooled connection stayed busy for pool_timeout
                logger.warning("database unavailable: %s", exc)
                raise UnavailableError(BUSY) from exc
            except DBAPIError as exc:
                lost = exc.connection_invalidated
                if lost and committing and write:
                    # The commit may have reached the database before the connection died.
                    logger.warning("connection lost during commit, outcome unknown: %s", exc.orig)
                    raise UnavailableError(IN_DOUBT) from exc
                # A dropped connection rolled the transaction back: safe to retry on a fresh one.
                retry = _is_transient(exc) or lost
                if retry and attempt < MAX_ATTEMPTS:
                    logger.debug("transient database error, attempt %d: %s", attempt, exc.orig)
                    time.sleep(min(0.02 * 2**attempt, 0.5))
                    continue
                if retry or isinstance(exc, OperationalError):
                    logger.warning("database unavailable after %d attempt(s): %s", attempt, exc.orig)
                    raise UnavailableError(BUSY if _is_transient(exc) else UNREACHABLE) from exc
                raise
        raise AssertionError("unreachable")

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def in_background(self, fn: Callable[[], None], *, name: str) -> None:
        """Run `fn` (housekeeping with transactions of its own) on a thread; `dispose` waits for it."""
        thread = threading.Thread(target=fn, name=name, daemon=True)
        with self._background_lock:
            self._background = [t for t in self._background if t.is_alive()]
            self._background.append(thread)
        thread.start()

    def wait_for_background(self, timeout: float = 60) -> None:
        """Wait for the background work started so far (each thread at most `timeout` seconds)."""
        with self._background_lock:
            running, self._background = self._background, []
        for thread in running:
            thread.join(timeout)

    def dispose(self) -> None:
        """Close every pooled connection, after background work on this database has finished."""
        self.wait_for_background()
        self.engine.dispose()


def _is_transient(exc: DBAPIError) -> bool:
    if isinstance(exc, IntegrityError):
        # A concurrent transaction inserted the same idempotency key first; the retry sees its
        # row and replays it. Other integrity errors (NOT NULL, foreign keys) are bugs, not races.
        code = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "sqlite_errorname", None)
        return code in _UNIQUE_VIOLATIONS or "UNIQUE constraint failed" in str(exc.orig)
    sqlstate = getattr(exc.orig, "sqlstate", None)
    if sqlstate in _TRANSIENT_SQLSTATES:
        return True
    return isinstance(exc, OperationalError) and any(s in str(exc.orig).lower() for s in _TRANSIENT_SQLITE)


def alembic_config(database: Database) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # The write engine: on SQLite, BEGIN IMMEDIATE makes processes migrating one file at the same
    # moment take turns (a deferred BEGIN fails at once with "database is locked" on the first DDL).
    config.attributes["engine"] = database._write_engine
    return config


def head_revision() -> str:
    """The newest migration's id, as the newest revision file declares it (files sort in order),
    read without loading Alembic."""
    newest = max((MIGRATIONS_DIR / "versions").glob("[0-9]*_*.py"), key=lambda path: path.name)
    found = re.search(r"^revision: str = [\"']([^\"']+)[\"']", newest.read_text(encoding="utf-8"), re.MULTILINE)
    return found.group(1) if found else newest.name.split("_", 1)[0]


def current_revision(database: Database) -> str | None:
    try:
        with database.engine.connect() as conn:
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except DBAPIError:
        return None  # no schema yet


def migrate(database: Database) -> None:
    """Bring the schema to the newest revision; safe when several replicas start at once."""
    if current_revision(database) == head_revision():
        return  # the usual start-up: skip loading Alembic (a tenth of a second of a cold start)
    from alembic import command

    config = alembic_config(database)
    if database.dialect == "postgresql":
        with database.engine.connect() as conn:
            # Waiting for another replica's migration is not a lock wait to give up on.
            conn.execute(text("SET LOCAL lock_timeout = 0"))
            conn.execute(text("SELECT pg_advisory_lock(:id)"), {"id": _PG_MIGRATION_LOCK})
            conn.commit()
            try:
                config.attributes["connection"] = conn
                command.upgrade(config, "head")
                conn.commit()
            finally:
                conn.rollback()  # after a failed migration, or the unlock fails and hides its error
                conn.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": _PG_MIGRATION_LOCK})
                conn.commit()
    else:
        command.upgrade(config, "head")
