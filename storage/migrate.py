"""Schema migrations (Alembic): the bot upgrades its database to head at start-up.

By hand: ``python -m storage.migrate`` upgrades DATABASE_URL;
``python -m storage.migrate revision "message"`` autogenerates a new revision;
``--help`` says so and does nothing else.
"""

from __future__ import annotations

import argparse
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


DEFAULT_URL = "sqlite:///vmbot.db"


def parser() -> argparse.ArgumentParser:
    cli = argparse.ArgumentParser(
        prog="python -m storage.migrate",
        description=f"Upgrade the database at DATABASE_URL (default {DEFAULT_URL}) to the newest schema, "
        "or autogenerate a new revision.",
    )
    actions = cli.add_subparsers(dest="action", metavar="{upgrade,revision}")
    actions.add_parser("upgrade", help="upgrade to the newest schema (what no action does)")
    revision = actions.add_parser("revision", help="autogenerate a new revision from storage/models.py")
    revision.add_argument("message", nargs="*", help="what the revision changes")
    return cli


def main(argv: list[str]) -> int:
    """Parse first (``--help`` and bad arguments touch no database), then act."""
    args = parser().parse_args(argv)
    url = os.environ.get("DATABASE_URL", DEFAULT_URL)
    if args.action == "revision":
        command.revision(alembic_config(url), message=" ".join(args.message) or "change", autogenerate=True)
    else:
        command.upgrade(alembic_config(url), "head")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
