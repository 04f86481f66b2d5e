"""Per-service migrations with Alembic.

Each service keeps its migrations in `services/<name>/migrations/` and owns one Postgres
schema of the same name; its Alembic version table lives in that schema. Migrations run
through a connection we hand to Alembic (its documented "connection sharing" recipe), so they
can run inside an event loop (tests, `waymark up`).
"""

from __future__ import annotations

from pathlib import Path

from alembic import command, context
from alembic.config import Config
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import create_async_engine

from shared.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
#: where parts keep their migrations: services/<schema>/migrations, workflows/<schema>/migrations
PART_DIRS = (ROOT / "services", ROOT / "workflows")


def migrations_dir(service: str) -> Path:
    for base in PART_DIRS:
        if (base / service / "migrations" / "env.py").exists():
            return base / service / "migrations"
    raise FileNotFoundError(f"no migrations for {service!r}")


def services_with_migrations() -> list[str]:
    return sorted(p.parent.parent.name for base in PART_DIRS
                  for p in base.glob("*/migrations/env.py"))


def _upgrade(conn: Connection, service: str, revision: str) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir(service)))
    cfg.attributes["connection"] = conn
    cfg.attributes["schema"] = service
    command.upgrade(cfg, revision)


async def migrate(settings: Settings, service: str, revision: str = "head") -> None:
    engine = create_async_engine(settings.database_url)
    try:
        async with engine.begin() as conn:
            # two `waymark up` at once must not both run the same migration
            await conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"),
                               {"k": f"waymark-migrate-{service}"})
            await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{service}"'))
            await conn.execute(text(f'SET LOCAL search_path TO "{service}"'))
            await conn.run_sync(_upgrade, service, revision)
    finally:
        await engine.dispose()


async def migrate_all(settings: Settings) -> list[str]:
    done = services_with_migrations()
    for service in done:
        await migrate(settings, service)
    return done


def run_env() -> None:
    """Called from each service's migrations/env.py."""
    conn = context.config.attributes["connection"]
    schema = context.config.attributes["schema"]
    context.configure(connection=conn, version_table_schema=schema,
                      transaction_per_migration=False)
    with context.begin_transaction():
        context.run_migrations()


def platform_v2() -> list[str]:
    """Platform v2: outbox rows that keep failing are parked instead of blocking the relay."""
    return [
        "ALTER TABLE outbox ADD COLUMN IF NOT EXISTS attempts INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE outbox ADD COLUMN IF NOT EXISTS last_error TEXT",
        "ALTER TABLE outbox ADD COLUMN IF NOT EXISTS parked_at TIMESTAMPTZ",
        "CREATE INDEX IF NOT EXISTS ix_outbox_parked ON outbox (topic, key) "
        "WHERE parked_at IS NOT NULL AND sent_at IS NULL",
    ]


def create_platform_tables(schema: str) -> list[str]:
    """DDL for the outbox, inbox and audit log every service has (platform v1).

    Written out rather than generated from shared/models.py so an applied migration never
    changes when the models do.
    """
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
