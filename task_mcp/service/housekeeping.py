"""Housekeeping: purging expired trash (with its journal entries), idempotency keys, members and
changes older than the history window, off the callers' path.

Purging starts from ordinary writes, at most once per `purge_every` per process, on a thread of
its own: never on a caller's latency path, and its failure is never theirs.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable

import task_mcp.service.store as store
from task_mcp.db import Database
from task_mcp.service.store import PURGE_BATCH

logger = logging.getLogger("task_mcp.service.tasks")

IDEMPOTENCY_TTL = dt.timedelta(hours=24)
PURGE_EVERY_SECONDS = 3600.0


class Housekeeping:
    """What expires: deleted tasks after `retention`, keys after a day, members after `history`."""

    def __init__(
        self,
        database: Database,
        clock: Callable[[], dt.datetime],
        *,
        retention: dt.timedelta,
        history: dt.timedelta,
        purge_every: float | None,
    ) -> None:
        self._db = database
        self._clock = clock
        self.retention = retention
        self.history = history
        self._purge_every = purge_every
        self._next_purge = 0.0
        self._lock = threading.Lock()

    def purge(self) -> int:
        """Purge in batches of `PURGE_BATCH` rows, each in its own transaction; returns the tasks purged.

        Raises:
            UnavailableError: the database stayed busy or unreachable (batches done stay done).
        """
        now = self._clock()
        while self._db.run(lambda conn: store.purge_keys(conn, now - IDEMPOTENCY_TTL), write=True) == PURGE_BATCH:
            pass
        self._db.run(lambda conn: store.purge_members(conn, now - self.history), write=True)
        while self._db.run(lambda conn: store.purge_changes(conn, now - self.history), write=True) == PURGE_BATCH:
            pass
        purged = 0
        while True:
            batch = self._db.run(lambda conn: store.purge_tasks(conn, now - self.retention), write=True)
            purged += batch
            if batch < PURGE_BATCH:
                return purged

    def maybe_purge(self) -> None:
        if self._purge_every is None or time.monotonic() < self._next_purge:
            return
        with self._lock:
            if time.monotonic() < self._next_purge:
                return
            self._next_purge = time.monotonic() + self._purge_every
            self._db.in_background(self._purge_in_background, name="task-mcp-purge")

    def _purge_in_background(self) -> None:
        try:
            self.purge()
        except Exception:
            # It touches every user's rows, so it can meet a lock the callers would not: retry soon.
            logger.warning("purging deleted tasks failed; will try again", exc_info=True)
            self._next_purge = time.monotonic() + 60
