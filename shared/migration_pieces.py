"""The schema pieces every part's migrations share, in one place: the platform tables (outbox,
inbox, audit log, idempotency keys), the parking of outbox rows that keep failing, and the audit
log's refusal of TRUNCATE. A migration calls the piece it needs; the piece emits its DDL
through Alembic's `op`, the same statements in the same order in every schema.

The DDL is written out rather than generated from shared/models.py, so an applied migration
never changes when the models do. Pieces are added, never edited: a change to the schema is a
new piece (and a new migration in each schema), as the parking and the TRUNCATE refusal were.
"""

from __future__ import annotations

from collections.abc import Iterable

from alembic import op


def create_platform_tables(schema: str) -> None:
    """Platform v1: the outbox, inbox, audit log and idempotency keys of `schema`'s part."""
    _execute(platform_tables_ddl(schema))


def park_failing_outbox_rows() -> None:
    """Platform v2: outbox rows that keep failing are parked instead of blocking the relay."""
    _execute(outbox_parking_ddl())


def make_audit_log_append_only(table: str = "audit_log") -> None:
    """The audit log refuses TRUNCATE too (platform v1 already refused UPDATE and DELETE)."""
    _execute(append_only_ddl(table))


def _execute(statements: Iterable[str]) -> None:
    for ddl in statements:
        op.execute(ddl)


# --- the DDL of each piece --------------------------------------------------------------------


def platform_tables_ddl(schema: str) -> list[str]:
    """DDL for the outbox, inbox and audit log every service has (platform v1)."""
    return [
        """CREATE TABLE outbox (
            seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            event_id TEXT NOT NULL UNIQUE,
            topic TEXT NOT NULL,
            key TEXT NOT NULL,
            event_type TEXT NOT NULL,
            payload JSONB NOT NULL,
            traceparent TEXT,
            created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            sent_at TIMESTAMPTZ)""",
        "CREATE INDEX ix_outbox_unsent ON outbox (seq) WHERE sent_at IS NULL",
        # wake the relay when a transaction that wrote outbox rows commits
        f"""CREATE FUNCTION notify_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN PERFORM pg_notify('waymark_outbox_{schema}', ''); RETURN NULL; END $$""",
        """CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
            FOR EACH STATEMENT EXECUTE FUNCTION notify_outbox()""",
        """CREATE TABLE inbox (
            consumer TEXT NOT NULL,
            event_id TEXT NOT NULL,
            topic TEXT NOT NULL,
            processed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            PRIMARY KEY (consumer, event_id))""",
        """CREATE TABLE audit_log (
            id UUID PRIMARY KEY,
            at TIMESTAMPTZ NOT NULL DEFAULT now(),
            actor TEXT NOT NULL,
            actor_org TEXT NOT NULL,
            actor_roles TEXT NOT NULL,
            action TEXT NOT NULL,
            resource_type TEXT NOT NULL,
            resource_id TEXT,
            patient_id TEXT,
            client_ip TEXT,
            trace_id TEXT,
            detail TEXT)""",
        "CREATE INDEX ix_audit_patient ON audit_log (patient_id, at)",
        # the audit log is append-only: updates and deletes are refused by the database
        """CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN RAISE EXCEPTION 'audit_log is append-only'; END $$""",
        """CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log
            FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()""",
        """CREATE TABLE idempotency_key (
            principal TEXT NOT NULL,
            key TEXT NOT NULL,
            request_hash TEXT NOT NULL,
            status_code INTEGER NOT NULL,
            response JSONB NOT NULL,
            headers JSONB NOT NULL DEFAULT '{}',
            created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            PRIMARY KEY (principal, key))""",
    ]


def outbox_parking_ddl() -> list[str]:
    """Platform v2: outbox rows that keep failing are parked instead of blocking the relay."""
    return [
        "ALTER TABLE outbox ADD COLUMN IF NOT EXISTS attempts INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE outbox ADD COLUMN IF NOT EXISTS last_error TEXT",
        "ALTER TABLE outbox ADD COLUMN IF NOT EXISTS parked_at TIMESTAMPTZ",
        "CREATE INDEX IF NOT EXISTS ix_outbox_parked ON outbox (topic, key) "
        "WHERE parked_at IS NOT NULL AND sent_at IS NULL",
    ]


def append_only_ddl(table: str = "audit_log") -> list[str]:
    """DDL that makes `table` append-only: UPDATE, DELETE and TRUNCATE raise.

    Platform v1 refused UPDATE and DELETE row by row; a TRUNCATE fires no row trigger, so it
    needs a statement trigger of its own. The error names the operation refused. (A database
    superuser can still drop the trigger: in production the application's role should not own
    the table.)
    """
    return [
        f"""CREATE OR REPLACE FUNCTION {table}_append_only() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION '{table} is append-only: % refused', TG_OP
                    USING ERRCODE = 'insufficient_privilege';
            END $$""",
        f"DROP TRIGGER IF EXISTS {table}_no_change ON {table}",
        f"""CREATE TRIGGER {table}_no_change BEFORE UPDATE OR DELETE ON {table}
            FOR EACH ROW EXECUTE FUNCTION {table}_append_only()""",
        f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}",
        f"""CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}
            FOR EACH STATEMENT EXECUTE FUNCTION {table}_append_only()""",
    ]
