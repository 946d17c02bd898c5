"""The runs table's time indexes (migration 0010_apib_jobrun_time_indexes): built
concurrently on PostgreSQL (writes are not blocked while a big table is indexed), plain
on SQLite; an index built by hand beforehand is kept; an invalid leftover of an
interrupted concurrent build is rebuilt; unapplying drops them."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test.utils import CaptureQueriesContext

pytestmark = pytest.mark.django_db(transaction=True)

MIGRATION = ("scheduler_app", "0010_apib_jobrun_time_indexes")
NAMES = ("jobrun_scheduled_idx", "jobrun_queued_at_idx")
postgres_only = pytest.mark.skipif("connection.vendor != 'postgresql'", reason="PostgreSQL only")


def indexes() -> dict[str, list[str]]:
    with connection.cursor() as cursor:
        found = connection.introspection.get_constraints(cursor, "scheduler_app_jobrun")
    return {name: found[name]["columns"] for name in NAMES if name in found}


def invalid() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE NOT i.indisvalid"
        )
        return [row[0] for row in cursor.fetchall()]


def run(direction: str) -> list[str]:
    """Unapply or apply the migration's operations on the test database; the SQL sent."""
    loader = MigrationExecutor(connection).loader
    migration = loader.get_migration(*MIGRATION)
    assert migration.atomic is False  # CREATE INDEX CONCURRENTLY cannot run in a transaction
    with CaptureQueriesContext(connection) as queries:
        with connection.schema_editor(atomic=migration.atomic) as editor:
            if direction == "forwards":
                migration.apply(loader.project_state(MIGRATION, at_end=False), editor)
            else:
                migration.unapply(loader.project_state(MIGRATION), editor)
    return [q["sql"] for q in queries.captured_queries]


@pytest.fixture
def restore():
    yield
    if set(indexes()) != set(NAMES):
        run("backwards")
        run("forwards")


def test_unapply_and_apply(restore):
    assert indexes() == {
        "jobrun_scheduled_idx": ["scheduled_for", "id"],
        "jobrun_queued_at_idx": ["queued_at", "id"],
    }
    run("backwards")
    assert indexes() == {}
    sql = [s for s in run("forwards") if "CREATE INDEX" in s]
    assert len(sql) == 2
    if connection.vendor == "postgresql":
        assert all(s.startswith("CREATE INDEX CONCURRENTLY IF NOT EXISTS") for s in sql), sql
        assert invalid() == []
    else:
        assert not any("CONCURRENTLY" in s for s in sql), sql
    assert set(indexes()) == set(NAMES)


@postgres_only
def test_indexes_built_by_hand_before_migrating_are_kept(restore):
    run("backwards")
    with connection.cursor() as cursor:  # what README "Upgrading" tells operators to run
        cursor.execute(
            'CREATE INDEX CONCURRENTLY IF NOT EXISTS "jobrun_scheduled_idx" ON "scheduler_app_jobrun" ("scheduled_for", "id")'
        )
        cursor.execute("SELECT 'jobrun_scheduled_idx'::regclass::oid")
        oid = cursor.fetchone()[0]
    run("forwards")
    with connection.cursor() as cursor:
        cursor.execute("SELECT 'jobrun_scheduled_idx'::regclass::oid")
        assert cursor.fetchone()[0] == oid  # kept, not rebuilt
    assert set(indexes()) == set(NAMES)


@postgres_only
def test_an_invalid_leftover_of_an_interrupted_build_is_rebuilt(restore):
    with connection.cursor() as cursor:
        # What a concurrent build that was cancelled or failed leaves behind.
        cursor.execute(
            "UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'jobrun_queued_at_idx'::regclass"
        )
    assert invalid() == ["jobrun_queued_at_idx"]
    sql = run("forwards")
    assert 'DROP INDEX CONCURRENTLY IF EXISTS "jobrun_queued_at_idx"' in sql
    assert invalid() == []
    assert set(indexes()) == set(NAMES)
