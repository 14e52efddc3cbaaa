"""Schema migrations (Alembic): the bot upgrades its database to head at start-up.

By hand: ``python -m storage.migrate`` upgrades DATABASE_URL;
``python -m storage.migrate revision "message"`` autogenerates a new revision.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, text

MIGRATIONS = Path(__file__).parent / "migrations"
MIGRATION_LOCK_KEY = int.from_bytes(b"vmbotmig", "big")  # any fixed 64-bit number, the same in every process


def alembic_config(url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if url:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(engine: Engine) -> None:
    """Bring the schema to head; a no-op when it is there already.

    Several bot processes may start at once on one PostgreSQL database (a deploy,
    two replicas): a transaction-scoped advisory lock lets one migrate while the
    others wait, then find the schema at head. SQLite serialises writers itself.
    """
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SET LOCAL statement_timeout = 0"))  # a migration may take its time
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        config = alembic_config()
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def main(argv: list[str]) -> int:
    url = os.environ.get("DATABASE_URL", "sqlite:///vmbot.db")
    if argv[:1] == ["revision"]:
        command.revision(alembic_config(url), message=" ".join(argv[1:]) or "change", autogenerate=True)
    else:
        command.upgrade(alembic_config(url), "head")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
