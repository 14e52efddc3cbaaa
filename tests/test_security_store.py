"""The security tables on SQLite and PostgreSQL: seen signatures, and the append-only audit trail."""

from __future__ import annotations

import pytest
from sqlalchemy import delete, text, update
from sqlalchemy.exc import DatabaseError

from storage.models import AuditEntry, Verdict
from storage.store import Store


@pytest.fixture
def store(any_database_url: str) -> Store:
    return Store.from_url(any_database_url)


def test_a_signature_is_served_once_and_forgotten_after_the_window(store: Store) -> None:
    assert store.claim_request("v0=aa", 1000, now=1000) is True
    assert store.claim_request("v0=aa", 1000, now=1200) is False, "a replay inside the window"
    assert store.claim_request("v0=bb", 1200, now=1200) is True
    # Later, Bolt refuses timestamp 1000 as stale by itself; its row is pruned by the next claim.
    assert store.claim_request("v0=cc", 1400, now=1400, window=300) is True
    with store.sessions() as s:
        remembered = s.execute(text("SELECT signature FROM seen_requests ORDER BY signature")).scalars().all()
    assert remembered == ["v0=bb", "v0=cc"]


def record(store: Store, vm: str, user: str = "U1", verdict: Verdict = Verdict.ALLOWED) -> AuditEntry:
    return store.record_audit(user_id=user, channel_id="C1", kind="command", text=f"park {vm}", verb="park",
                              vm_name=vm, verdict=verdict)


def test_the_audit_trail_pages_newest_first(store: Store) -> None:
    ids = [record(store, "vm-a", user=f"U{i}").id for i in range(12)]
    record(store, "vm-b")
    page1, total = store.audit_trail("vm-a", offset=0, limit=10)
    page2, _ = store.audit_trail("vm-a", offset=10, limit=10)
    assert total == 12
    assert [e.id for e in page1 + page2] == list(reversed(ids))
    assert store.audit_trail("vm-c") == ([], 0)


@pytest.mark.parametrize("change", ["update", "delete"])
def test_the_database_refuses_to_edit_the_audit_trail(store: Store, change: str) -> None:
    entry = record(store, "vm-a", verdict=Verdict.REFUSED)
    statement = (
        update(AuditEntry).where(AuditEntry.id == entry.id).values(verdict=Verdict.ALLOWED)
        if change == "update"
        else delete(AuditEntry).where(AuditEntry.id == entry.id)
    )
    with pytest.raises(DatabaseError, match="append-only"):
        with store.sessions.begin() as s:
            s.execute(statement)
    assert [(e.id, e.verdict) for e in store.audit_log()] == [(entry.id, Verdict.REFUSED)]


def test_the_store_offers_no_way_to_change_an_audit_entry() -> None:
    writers = [name for name in dir(Store) if "audit" in name]
    assert sorted(writers) == ["audit_log", "audit_trail", "record_audit"]
