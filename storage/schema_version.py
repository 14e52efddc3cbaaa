"""Is the database at the newest migration? Answered without importing Alembic.

Alembic (with Mako) takes about 12 MB of the bot's memory once imported, for
the rest of the process's life (`python -m bench`, row 5), yet on most start-ups
there is nothing to migrate. So start-up first compares the database's
``alembic_version`` with the heads of ``storage/migrations/versions`` (read from
the revision files' ``revision`` / ``down_revision`` lines, as Alembic reads
them) and only imports Alembic when they differ. Any doubt (no version table,
a file it cannot read) counts as "not at head", which runs Alembic as before.
"""

from __future__ import annotations

import re
from pathlib import Path

from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

VERSIONS = Path(__file__).parent / "migrations" / "versions"
_ASSIGNMENT = re.compile(r"^(revision|down_revision)\s*(?::[^=]*)?=\s*(.+)$", re.MULTILINE)
_QUOTED = re.compile(r"""["']([^"']+)["']""")


def script_heads(versions: Path = VERSIONS) -> frozenset[str] | None:
    """The revisions no other revision builds on; None if a revision file does not say what it is."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in sorted(versions.glob("*.py")):
        found = dict(_ASSIGNMENT.findall(path.read_text()))
        names = _QUOTED.findall(found.get("revision", ""))
        if len(names) != 1:
            return None
        revisions.add(names[0])
        parents.update(_QUOTED.findall(found.get("down_revision", "")))
    return frozenset(revisions - parents) if revisions else None


def at_head(engine: Engine) -> bool:
    heads = script_heads()
    if heads is None:
        return False
    try:
        with engine.connect() as connection:
            current = {row[0] for row in connection.execute(text("SELECT version_num FROM alembic_version"))}
    except SQLAlchemyError:  # no version table yet: a new database
        return False
    return current == heads
