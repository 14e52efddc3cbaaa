"""The one place that turns DATABASE_URL into engines and sessions."""

from __future__ import annotations

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from storage.schema_version import at_head
from storage.sqlite_writers import one_writer_at_a_time


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite files get the settings a threaded bot needs."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        one_writer_at_a_time(engine)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    # WAL lets readers (list, status) run while a worker writes; foreign keys are off by default in SQLite.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # In WAL mode NORMAL syncs at checkpoints instead of every commit: still safe against corruption and
    # against the bot crashing, and it takes an fsync off every command's ack (see `python -m bench`, row 1).
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    # expire_on_commit=False: rows read in a unit of work stay readable after it ends.
    return sessionmaker(engine, expire_on_commit=False)


def create_schema(engine: Engine) -> None:
    """Bring the schema to the newest migration (see storage.migrate); Alembic loads only if there is work."""
    if at_head(engine):
        return
    from storage.migrate import upgrade

    upgrade(engine)
