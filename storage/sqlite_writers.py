"""SQLite writers in this process take turns on a lock, instead of in SQLite's busy handler.

SQLite allows one writer at a time. A connection that finds the database
locked waits in SQLite's busy handler, which sleeps and retries with growing
naps (1, 2, 5, 10 ... 100 ms). Under a burst of commands (fifty `/vm create` at
once, each recording its operation before it is acknowledged) those naps were
most of an acknowledgement's time (`python -m bench`, row 1). Here, a
connection takes a process-wide lock before its first write in a transaction
and gives it back when the connection returns to the pool (after its commit
or rollback), so the next writer starts the moment the previous one is done.
Reads never take it (WAL lets them run beside a writer). Other processes on
the same file still meet SQLite's own locking and busy timeout.
"""

from __future__ import annotations

import threading
from typing import Any

from sqlalchemy import Engine, event

LOCK_TIMEOUT = 30.0  # as the busy timeout: after that, SQLite's own locking decides
_HOLDS_LOCK = "vmbot_write_lock"
_READS = ("SELECT", "PRAGMA")


def one_writer_at_a_time(engine: Engine) -> None:
    lock = threading.Lock()

    @event.listens_for(engine, "before_cursor_execute")
    def _before_write(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        if _HOLDS_LOCK in conn.info or statement.lstrip().upper().startswith(_READS):
            return
        if lock.acquire(timeout=LOCK_TIMEOUT):
            conn.info[_HOLDS_LOCK] = True

    @event.listens_for(engine, "checkin")
    def _returned(dbapi_connection: Any, connection_record: Any) -> None:
        if connection_record.info.pop(_HOLDS_LOCK, False):
            lock.release()
