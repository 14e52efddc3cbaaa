"""The one place that turns DATABASE_URL into engines and sessions."""

from __future__ import annotations

from sqlalchemy import Engine, create_engine, event, text
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
    # Every wait on PostgreSQL is bounded, so a network partition answers an error in about two seconds
    # instead of hanging the request (Slack wants its ack within 3 s): libpq's connect_timeout (its
    # minimum, 2 s) covers a server that accepts and never answers; TCP keepalives and tcp_user_timeout
    # end a connection that went silent mid-query; statement_timeout ends a statement that waits in the
    # server (on a lock); pool_timeout bounds the wait for a free connection.
    engine = create_engine(
        url,
        pool_pre_ping=True,
        pool_size=10,
        max_overflow=10,
        pool_timeout=POOL_TIMEOUT,
        connect_args={
            "connect_timeout": CONNECT_TIMEOUT,
            "keepalives": 1,
            "keepalives_idle": 5,
            "keepalives_interval": 1,
            "keepalives_count": 2,
            "tcp_user_timeout": int(STATEMENT_TIMEOUT * 1000),
        },
    )
    event.listen(engine, "connect", _postgres_timeouts)
    return engine


CONNECT_TIMEOUT = 2  # seconds (libpq's minimum)
STATEMENT_TIMEOUT = 2.5  # seconds a statement may run or wait in PostgreSQL
POOL_TIMEOUT = 2  # seconds a request waits for a free pooled connection


def _postgres_timeouts(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    # Set per connection, not in the URL's ``options`` (DATABASE_URL may carry its own, e.g. a search_path).
    with dbapi_connection.cursor() as cursor:
        cursor.execute(f"SET statement_timeout = {int(STATEMENT_TIMEOUT * 1000)}")
    dbapi_connection.commit()


def ping(engine: Engine) -> bool:
    """Whether the database answers now (bounded by the timeouts above); for /healthz."""
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        return True
    except Exception:  # noqa: BLE001 - any failure means "unreachable" to a health check
        return False


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
