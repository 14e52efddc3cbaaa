"""The store on SQLite and on the real PostgreSQL server: claims, images, migrations."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from bot.core.lifecycle import ALLOWED_FROM
from bot.settings import REPO_ROOT
from storage import migrate
from storage.models import Base, ImageState, OperationState, Verb, Verdict, VmState
from storage.store import ClaimLost, Lease, LeaseLost, Store


@pytest.fixture
def store(any_database_url: str) -> Store:
    return Store.from_url(any_database_url)


def begin(store: Store, verb: Verb, name: str, user: str = "U1"):  # type: ignore[no-untyped-def]
    return store.begin(
        verb, name, allowed_from=ALLOWED_FROM[verb], requested_by=user, zone="us-central1-a", machine_type="e2-small"
    )


def test_migrations_match_the_models(store: Store) -> None:
    with store.engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diff == []


def test_a_create_claims_a_new_name_once(store: Store) -> None:
    op = begin(store, Verb.CREATE, "vm-a")
    vm = store.vm("vm-a")
    assert vm is not None and vm.state is VmState.CREATING and vm.active_operation_id == op.id
    with pytest.raises(ClaimLost):
        begin(store, Verb.CREATE, "vm-a", user="U2")


def test_an_operation_and_its_audit_entry_are_written_together_or_not_at_all(store: Store) -> None:
    def entry(user: str) -> dict[str, object]:
        return {"user_id": user, "channel_id": "C1", "kind": "command", "text": "create vm-a", "verdict": Verdict.ALLOWED,
                "verb": "create", "vm_name": "vm-a", "detail": None}

    op = store.begin(Verb.CREATE, "vm-a", allowed_from=ALLOWED_FROM[Verb.CREATE], requested_by="U1",
                     zone="us-central1-a", machine_type="e2-small", audit_entry=entry("U1"))
    with pytest.raises(ClaimLost):  # the name is taken: neither the operation nor its entry is written
        store.begin(Verb.CREATE, "vm-a", allowed_from=ALLOWED_FROM[Verb.CREATE], requested_by="U2",
                    zone="us-central1-a", machine_type="e2-small", audit_entry=entry("U2"))

    assert [(e.user_id, e.operation_id, e.at) for e in store.audit_log()] == [("U1", op.id, op.created_at)]
    assert [o.requested_by for o in store.operations_for("vm-a")] == ["U1"]


def test_ten_simultaneous_claims_yield_one_operation(store: Store) -> None:
    op = begin(store, Verb.CREATE, "vm-a")
    store.finish(op.id, OperationState.SUCCEEDED, vm_values={"state": VmState.RUNNING})

    def try_park(i: int) -> bool:
        try:
            begin(store, Verb.PARK, "vm-a", user=f"U{i}")
            return True
        except ClaimLost:
            return False

    with ThreadPoolExecutor(10) as pool:
        won = list(pool.map(try_park, range(10)))
    assert won.count(True) == 1


def test_finish_releases_the_vm_and_a_deleted_name_can_be_reused(store: Store) -> None:
    op = begin(store, Verb.CREATE, "vm-a")
    store.finish(op.id, OperationState.FAILED, error="boom", vm_values={"state": VmState.DELETED})
    assert store.vm("vm-a").active_operation_id is None
    again = begin(store, Verb.CREATE, "vm-a", user="U2")
    vm = store.vm("vm-a")
    assert vm.state is VmState.CREATING and vm.owner == "U2" and vm.active_operation_id == again.id


def test_a_ready_image_makes_the_older_one_dirty(store: Store) -> None:
    op = begin(store, Verb.CREATE, "vm-a")
    store.finish(op.id, OperationState.SUCCEEDED, vm_values={"state": VmState.RUNNING})
    store.add_image("vm-a", "vm-a-1", "vm-a", op_id=None)
    assert store.image_ready("vm-a-1", disk_size_gb=10, archive_size_bytes=123) == []
    store.add_image("vm-a", "vm-a-2", "vm-a", op_id=None)
    assert store.image_ready("vm-a-2", disk_size_gb=10, archive_size_bytes=456) == ["vm-a-1"]
    states = {image.name: (image.state, image.dirty_since is not None) for image in store.images("vm-a")}
    assert states == {"vm-a-1": (ImageState.DIRTY, True), "vm-a-2": (ImageState.READY, False)}
    assert store.newest_image("vm-a").name == "vm-a-2"
    assert [s.newest_image for s in store.list_vms()] == ["vm-a-2"]


def test_no_write_of_a_run_whose_lease_was_taken_over_lands(store: Store) -> None:
    """Every fenced write (the operation's row, its steps, the VM, its images, the finish) checks the
    lease in its own transaction: under a lease taken over, each raises LeaseLost and writes nothing."""
    create = begin(store, Verb.CREATE, "vm-a")
    store.set_thread(create.id, "C1", "1.000100")
    store.finish(create.id, OperationState.SUCCEEDED, vm_values={"state": VmState.RUNNING, "shape": {"disks": 1}})
    store.add_image("vm-a", "vm-a-1", "vm-a", op_id=None)
    store.image_ready("vm-a-1", disk_size_gb=10, archive_size_bytes=1)
    op = begin(store, Verb.PARK, "vm-a")
    store.lease_seconds = -1  # its lease has run out
    mine = store.claim_operation(op.id)
    with store.fenced_by(Lease(op.id, store.owner, mine.lease_token)):
        step = store.step_started(op.id, "stop", request_id="r1")
    other = Store(store.sessions, owner="other")
    assert other.claim_operation(op.id).lease_token == mine.lease_token + 1
    writes = [
        lambda: store.mark_running(op.id),
        lambda: store.step_started(op.id, "image"),
        lambda: store.step_resumed(step),
        lambda: store.step_gcp_operation(step, "operation-1"),
        lambda: store.step_finished(step),
        lambda: store.update_vm("vm-a", state=VmState.STOPPED, external_ip=None),
        lambda: store.add_image("vm-a", "vm-a-2", "vm-a", op_id=op.id),
        lambda: store.image_ready("vm-a-1", disk_size_gb=20, archive_size_bytes=2),
        lambda: store.image_failed("vm-a-1"),
        lambda: store.mark_images_dirty("vm-a"),
        lambda: store.finish(op.id, OperationState.SUCCEEDED, vm_values={"state": VmState.PARKED}),
        lambda: store.let_go(op.id),
    ]
    for write in writes:
        with store.fenced_by(Lease(op.id, store.owner, mine.lease_token)), pytest.raises(LeaseLost):
            write()
    after = store.operation(op.id)
    assert (after.state, after.started_at, after.step, after.lease_owner) == (OperationState.QUEUED, None, "stop", "other")
    assert [(s.name, s.state, s.gcp_operation) for s in after.steps] == [("stop", OperationState.RUNNING, None)]
    vm = store.vm("vm-a")
    assert (vm.state, vm.shape, vm.active_operation.id) == (VmState.RUNNING, {"disks": 1}, op.id)
    assert [(i.name, i.state, i.disk_size_gb) for i in store.images("vm-a")] == [("vm-a-1", ImageState.READY, 10)]
    assert store.unreported_operations() == [], "a finish without a report owes no result (SQL NULL, not JSON null)"


def test_bot_processes_starting_at_once_on_postgresql_all_come_up(postgres_url: str) -> None:
    """A deploy starts several processes on one empty database: each applies migrations at start-up,
    so without the migration lock all but one fail on "relation already exists"."""
    ready_then_migrate = (
        "import sys; from storage.store import Store; print('ready', flush=True); "
        "sys.stdin.readline(); Store.from_url(sys.argv[1]); print('up', flush=True)"
    )
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", ready_then_migrate, postgres_url],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO_ROOT,
        )
        for _ in range(4)
    ]
    try:
        for process in processes:  # every process has imported everything: the migrations now start together
            assert process.stdout.readline().strip() == "ready"
        for process in processes:
            process.stdin.write("go\n")
            process.stdin.flush()
        outcomes = [(process.wait(timeout=60), process.stdout.read().strip(), process.stderr.read()) for process in processes]
    finally:
        for process in processes:
            process.kill()
    assert [(code, out) for code, out, _ in outcomes] == [(0, "up")] * 4, [err for _, _, err in outcomes]
    store = Store.from_url(postgres_url, create=False)
    with store.engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diff == []


def test_the_migrate_command_brings_an_empty_postgresql_database_to_head(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """README's one command for operators who migrate before deploying: ``python -m storage.migrate``."""
    monkeypatch.setenv("DATABASE_URL", postgres_url)
    assert migrate.main([]) == 0
    store = Store.from_url(postgres_url, create=False)
    with store.engine.connect() as connection:
        context = MigrationContext.configure(connection)
        assert context.get_current_revision() is not None
        assert compare_metadata(context, Base.metadata) == []


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_upgrading_to_reports_owes_no_result_for_operations_that_ended_before(database_url: str) -> None:
    """0005 adds operations.report/reported_at: operations already ended must not be posted again."""
    from alembic import command
    from sqlalchemy import create_engine, text

    engine = create_engine(database_url)
    with engine.begin() as connection:
        config = migrate.alembic_config()
        config.attributes["connection"] = connection
        command.upgrade(config, "0004_durable")
        connection.execute(text(
            "INSERT INTO operations (verb, vm_name, params, requested_by, channel, thread_ts, state, created_at, finished_at) "
            "VALUES ('create', 'vm-old', '{}', 'U1', 'C1', '1.000100', 'succeeded', :at, :at)"
        ), {"at": "2026-11-20 10:00:00"})
    migrate.upgrade(engine)
    store = Store.from_url(database_url, create=False)
    assert store.unreported_operations() == []
    assert store.operations_for("vm-old")[0].reported_at is not None
    engine.dispose()
