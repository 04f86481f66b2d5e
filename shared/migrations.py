"""Per-service migrations with Alembic.

Each service keeps its migrations in `services/<name>/migrations/` and owns one Postgres
schema of the same name; its Alembic version table lives in that schema. Migrations run
through a connection we hand to Alembic (its documented "connection sharing" recipe), so they
can run inside an event loop (tests, `waymark up`).

Migrations run as the migration owner (settings.pg_user), which owns every schema and table.
After each service's migrations the owner grants that part's runtime role what it needs and
nothing more (`grant_statements`): idempotent, so every `waymark migrate` converges the grants,
and kept here rather than in a version file so a new table is covered without a migration.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command, context
from alembic.config import Config
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import create_async_engine

from shared.settings import SERVICE_SCHEMAS, Settings

#: tables a runtime role may only append to and read: the audit trail. UPDATE and DELETE are
#: refused twice over (no privilege, and the append-only triggers the owner keeps).
APPEND_ONLY_TABLES = ("audit_log",)
#: tables only the owner touches
OWNER_ONLY_TABLES = ("alembic_version",)
#: extensions a part's migrations use, which only a superuser may create: the platform's admin
#: creates them (in the part's schema) before migrating, so the migration's
#: CREATE EXTENSION IF NOT EXISTS finds them there (locally shared/stack.py, Compose's init
#: script, CloudNativePG's postInitApplicationSQL)
SUPERUSER_EXTENSIONS: dict[str, tuple[str, ...]] = {"directory": ("cube", "earthdistance")}

ROOT = Path(__file__).resolve().parent.parent
#: where parts keep their migrations: services/<schema>/migrations, workflows/<schema>/migrations
PART_DIRS = (ROOT / "services", ROOT / "workflows")


def migrations_dir(service: str) -> Path:
    for base in PART_DIRS:
        if (base / service / "migrations" / "env.py").exists():
            return base / service / "migrations"
    raise FileNotFoundError(f"no migrations for {service!r}")


def services_with_migrations() -> list[str]:
    return sorted(
        p.parent.parent.name for base in PART_DIRS for p in base.glob("*/migrations/env.py")
    )


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
            await conn.execute(
                text("SELECT pg_advisory_xact_lock(hashtext(:k))"),
                {"k": f"waymark-migrate-{service}"},
            )
            await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{service}"'))
            await conn.execute(text(f'SET LOCAL search_path TO "{service}"'))
            await conn.run_sync(_upgrade, service, revision)
            await conn.execute(text("SET LOCAL search_path TO DEFAULT"))
            for sql in grant_statements(settings, service):
                await conn.execute(text(sql))
    finally:
        await engine.dispose()


def grant_statements(settings: Settings, schema: str) -> list[str]:
    """The owner's grants on `schema`: its part's runtime role reads and writes its tables,
    only appends to and reads its audit log, and no other role may use the schema at all.
    Idempotent; ALTER DEFAULT PRIVILEGES covers tables a later migration creates."""
    owner, role = _ident(settings.pg_user), _ident(settings.pg_role(schema))
    s = _ident(schema)
    dml = "SELECT, INSERT, UPDATE, DELETE"
    sql = [
        f"REVOKE ALL ON SCHEMA {s} FROM PUBLIC",
        f"REVOKE ALL ON ALL TABLES IN SCHEMA {s} FROM PUBLIC",
        f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA {s} FROM PUBLIC",
    ]
    for other in SERVICE_SCHEMAS:
        if other != schema:  # another part's role: nothing here, even if granted by mistake
            o = _ident(settings.pg_role(other))
            sql += [
                f"REVOKE ALL ON ALL TABLES IN SCHEMA {s} FROM {o}",
                f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA {s} FROM {o}",
                f"REVOKE ALL ON SCHEMA {s} FROM {o}",
            ]
    sql += [
        f"GRANT USAGE ON SCHEMA {s} TO {role}",
        f"REVOKE CREATE ON SCHEMA {s} FROM {role}",
        f"REVOKE ALL ON ALL TABLES IN SCHEMA {s} FROM {role}",
        f"GRANT {dml} ON ALL TABLES IN SCHEMA {s} TO {role}",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {s} TO {role}",
        f"ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA {s} GRANT {dml} ON TABLES TO {role}",
        f"ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA {s} "
        f"GRANT USAGE, SELECT ON SEQUENCES TO {role}",
    ]
    for table in APPEND_ONLY_TABLES:
        sql += [
            _if_table(schema, table, f"REVOKE ALL ON {s}.{_ident(table)} FROM {role}"),
            _if_table(schema, table, f"GRANT SELECT, INSERT ON {s}.{_ident(table)} TO {role}"),
        ]
    for table in OWNER_ONLY_TABLES:
        sql.append(_if_table(schema, table, f"REVOKE ALL ON {s}.{_ident(table)} FROM {role}"))
    return sql


def _ident(name: str) -> str:
    if not name.replace("_", "").isalnum():
        raise ValueError(f"not a plain SQL identifier: {name!r}")
    return f'"{name}"'


def _if_table(schema: str, table: str, sql: str) -> str:
    """Run `sql` only if schema.table exists (a part at an early revision may lack it)."""
    body = sql.replace("'", "''")
    return (
        f"DO $$ BEGIN IF to_regclass('{_ident(schema)}.{_ident(table)}') IS NOT NULL "
        f"THEN EXECUTE '{body}'; END IF; END $$"
    )


async def migrate_all(settings: Settings) -> list[str]:
    done = services_with_migrations()
    for service in done:
        await migrate(settings, service)
    return done


def run_env() -> None:
    """Called from each service's migrations/env.py."""
    conn = context.config.attributes["connection"]
    schema = context.config.attributes["schema"]
    context.configure(connection=conn, version_table_schema=schema, transaction_per_migration=False)
    with context.begin_transaction():
        context.run_migrations()
