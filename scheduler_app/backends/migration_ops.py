"""Migration operations for big tables (used by ``scheduler_app/migrations``).

:class:`AddIndexConcurrently` is Django's ``AddIndex`` everywhere but PostgreSQL; there
it builds the index with ``CREATE INDEX CONCURRENTLY IF NOT EXISTS``, so writes to the
table (runs being queued and recorded by running schedulers) go on while it builds,
and an index an operator built beforehand under the same name (README "Upgrading") is
kept. A concurrent build cannot run in a transaction: migrations using it set
``atomic = False``. An interrupted concurrent build leaves an INVALID index behind;
running ``migrate`` again drops it and builds it anew. Django's own
``django.contrib.postgres.operations.AddIndexConcurrently`` refuses other databases, and
this app's migrations must run on SQLite too.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations


def _invalid(schema_editor: Any, name: str) -> bool:
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            "SELECT NOT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
            " WHERE c.relname = %s AND pg_table_is_visible(c.oid)",
            [name],
        )
        row = cursor.fetchone()
    return bool(row and row[0])


class AddIndexConcurrently(migrations.AddIndex):
    """``AddIndex``, built concurrently (and only if missing) on PostgreSQL."""

    def describe(self) -> str:
        return f"{super().describe()} (concurrently on PostgreSQL)"

    def database_forwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        if schema_editor.connection.vendor != "postgresql":
            super().database_forwards(app_label, schema_editor, from_state, to_state)
            return
        model = to_state.apps.get_model(app_label, self.model_name)
        if not self.allow_migrate_model(schema_editor.connection.alias, model):
            return
        quoted = schema_editor.quote_name(self.index.name)
        if not schema_editor.collect_sql and _invalid(schema_editor, self.index.name):
            schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {quoted}")
        sql = str(self.index.create_sql(model, schema_editor, concurrently=True))
        schema_editor.execute(
            sql.replace("CREATE INDEX CONCURRENTLY ", "CREATE INDEX CONCURRENTLY IF NOT EXISTS ", 1),
            params=None,
        )

    def database_backwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        if schema_editor.connection.vendor != "postgresql":
            super().database_backwards(app_label, schema_editor, from_state, to_state)
            return
        model = from_state.apps.get_model(app_label, self.model_name)
        if not self.allow_migrate_model(schema_editor.connection.alias, model):
            return
        schema_editor.execute(
            f"DROP INDEX CONCURRENTLY IF EXISTS {schema_editor.quote_name(self.index.name)}"
        )
