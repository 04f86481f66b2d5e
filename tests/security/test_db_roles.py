"""Least privilege in PostgreSQL, against the real database (issue #14, finding 4).

Migrations run as the migration owner, which owns every schema and table; each part's
processes connect as its own runtime role. A runtime role reads and writes its own schema
only, may only append to and read its audit log, owns nothing (so it cannot ALTER, DISABLE
TRIGGER or TRUNCATE), and is no superuser. The local cluster has no `trust` line, its socket
directory is private, and its bootstrap superuser cannot log in over TCP.
"""

from __future__ import annotations

import stat
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy import text

from devtools import stack
from shared.db import connect, make_engine
from shared.settings import SERVICE_SCHEMAS, Settings

PARTS = list(SERVICE_SCHEMAS)
#: a table of each part that holds personal or operational data another part must not read
PRIVATE_TABLE = {
    "referrals": "referral",
    "directory": "audit_log",
    "care_plans": "audit_log",
    "notifications": "audit_log",
    "journeys": "audit_log",
    "integration": "encounter",
}


@pytest.fixture
async def as_part(infra: Settings) -> AsyncIterator[dict[str, asyncpg.Connection]]:
    """One connection per part, as its runtime role, on its own search path."""
    conns = {
        part: await connect(infra, part, server_settings={"search_path": part}) for part in PARTS
    }
    try:
        yield conns
    finally:
        for c in conns.values():
            await c.close()


async def _refused(conn: asyncpg.Connection, sql: str, *args: object) -> str:
    """Run `sql` in a transaction that is always rolled back; the privilege error it raised."""
    tr = conn.transaction()
    await tr.start()
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError) as refused:
            await conn.execute(sql, *args)
    finally:
        await tr.rollback()
    return str(refused.value)


def _audit_row() -> tuple[str, str]:
    entry = str(uuid.uuid4())
    return entry, (
        "INSERT INTO audit_log (id, actor, actor_org, actor_roles, action, "
        f"resource_type) VALUES ('{entry}', 'probe', 'ORG-1', 'clinician', 'read', "
        "'Probe')"
    )


class TestRuntimeRoles:
    @pytest.mark.parametrize("part", PARTS)
    async def test_each_part_connects_as_its_own_role_which_is_no_superuser(
        self, infra: Settings, as_part: dict[str, asyncpg.Connection], part: str
    ) -> None:
        conn = as_part[part]
        role = await conn.fetchrow(
            "SELECT current_user AS name, rolsuper, rolcreaterole, rolcreatedb, rolbypassrls, "
            "rolreplication FROM pg_roles WHERE rolname = current_user"
        )
        assert role["name"] == infra.pg_role(part) == f"waymark_{part}"
        assert not any(
            role[k]
            for k in ("rolsuper", "rolcreaterole", "rolcreatedb", "rolbypassrls", "rolreplication")
        )
        # the engine every process builds for its schema uses the same role
        engine = make_engine(infra, part, pool_size=1)
        try:
            async with engine.connect() as c:
                assert (await c.execute(text("SELECT current_user"))).scalar() == role["name"]
        finally:
            await engine.dispose()

    @pytest.mark.parametrize("part", PARTS)
    async def test_a_runtime_role_owns_nothing(
        self, as_part: dict[str, asyncpg.Connection], part: str
    ) -> None:
        owned = await as_part[part].fetchval(
            "SELECT (SELECT count(*) FROM pg_class WHERE relowner = current_user::regrole) "
            "+ (SELECT count(*) FROM pg_namespace WHERE nspowner = current_user::regrole) "
            "+ (SELECT count(*) FROM pg_proc WHERE proowner = current_user::regrole) "
            "+ (SELECT count(*) FROM pg_database WHERE datdba = current_user::regrole)"
        )
        assert owned == 0

    @pytest.mark.parametrize("part", PARTS)
    async def test_a_part_cannot_read_another_parts_schema(
        self, as_part: dict[str, asyncpg.Connection], part: str
    ) -> None:
        for other in PARTS:
            if other == part:
                continue
            why = await _refused(
                as_part[part], f"SELECT * FROM {other}.{PRIVATE_TABLE[other]} LIMIT 1"
            )
            assert f"permission denied for schema {other}" in why

    async def test_notifications_cannot_read_a_referrals_nhs_number(
        self, as_part: dict[str, asyncpg.Connection]
    ) -> None:
        why = await _refused(
            as_part["notifications"], "SELECT nhs_number FROM referrals.referral LIMIT 1"
        )
        assert "permission denied" in why

    @pytest.mark.parametrize("part", PARTS)
    async def test_a_part_reads_and_writes_its_own_tables(
        self, as_part: dict[str, asyncpg.Connection], part: str
    ) -> None:
        conn = as_part[part]
        tables = [
            r["relname"]
            for r in await conn.fetch(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = $1 AND c.relkind IN ('r', 'p')",
                part,
            )
        ]
        assert {"outbox", "inbox", "audit_log", "idempotency_key"} <= set(tables)
        for table in set(tables) - {"alembic_version"}:
            writes = table != "audit_log"
            for priv in ("SELECT", "INSERT") + (("UPDATE", "DELETE") if writes else ()):
                assert await conn.fetchval(
                    "SELECT has_table_privilege($1, $2)", f"{part}.{table}", priv
                ), f"{part}.{table} {priv}"
            await conn.fetch(f'SELECT * FROM "{table}" LIMIT 1')
        tr = conn.transaction()
        await tr.start()
        try:  # appending to its audit log and reading it back; rolled back
            entry, insert = _audit_row()
            await conn.execute(insert)
            assert (
                await conn.fetchval("SELECT actor FROM audit_log WHERE id = $1", uuid.UUID(entry))
                == "probe"
            )
        finally:
            await tr.rollback()

    @pytest.mark.parametrize("part", PARTS)
    async def test_a_part_cannot_change_remove_or_unguard_its_audit_log(
        self, as_part: dict[str, asyncpg.Connection], part: str
    ) -> None:
        conn = as_part[part]
        for sql in [
            "UPDATE audit_log SET actor = 'someone else'",
            "DELETE FROM audit_log",
            "TRUNCATE audit_log",
            "ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_change",
            "ALTER TABLE audit_log DISABLE TRIGGER ALL",
            "DROP TRIGGER audit_log_no_truncate ON audit_log",
            "DROP TABLE audit_log",
            "ALTER TABLE audit_log OWNER TO CURRENT_USER",
        ]:
            why = await _refused(conn, sql)
            assert "permission denied" in why or "must be owner" in why, (sql, why)

    @pytest.mark.parametrize("part", PARTS)
    async def test_a_part_cannot_create_objects_or_touch_the_migration_history(
        self, as_part: dict[str, asyncpg.Connection], part: str
    ) -> None:
        conn = as_part[part]
        await _refused(conn, f"CREATE TABLE {part}.sneaky (id int)")
        await _refused(conn, "CREATE TABLE public.sneaky (id int)")
        await _refused(conn, "UPDATE alembic_version SET version_num = version_num")
        await _refused(conn, "ALTER TABLE outbox ADD COLUMN sneaky int")
        await _refused(conn, "SET ROLE waymark_owner")


class TestOwnership:
    async def test_only_the_migration_owner_owns_anything_in_the_database(
        self, infra: Settings
    ) -> None:
        conn = await connect(infra, "owner")
        try:
            owners = await conn.fetch(
                "SELECT 'schema' AS kind, n.nspname AS name, n.nspowner::regrole::text AS owner "
                "FROM pg_namespace n WHERE n.nspname NOT IN ('pg_catalog', 'information_schema',"
                " 'pg_toast') AND n.nspname NOT LIKE 'pg_temp_%' "
                "AND n.nspname NOT LIKE 'pg_toast_temp_%' "
                "UNION ALL SELECT 'relation', n.nspname || '.' || c.relname, "
                "c.relowner::regrole::text FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') "
                "AND n.nspname NOT LIKE 'pg_temp_%' AND n.nspname NOT LIKE 'pg_toast_temp_%' "
                "UNION ALL SELECT 'function', p.oid::regprocedure::text, "
                "p.proowner::regrole::text FROM pg_proc p "
                "JOIN pg_namespace n ON n.oid = p.pronamespace "
                "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') "
                # an extension's functions belong to the superuser who installed it
                "AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = p.oid "
                "AND d.deptype = 'e') "
                "UNION ALL SELECT 'database', datname, datdba::regrole::text FROM pg_database "
                "WHERE datname = current_database()"
            )
        finally:
            await conn.close()
        # pg_database_owner: the `public` schema belongs to whoever owns the database
        strays = [
            tuple(r) for r in owners if r["owner"] not in (infra.pg_user, "pg_database_owner")
        ]
        assert strays == []
        assert {r["name"] for r in owners if r["kind"] == "schema"} >= set(PARTS)

    async def test_the_owner_is_no_superuser(self, infra: Settings) -> None:
        conn = await connect(infra, "owner")
        try:
            row = await conn.fetchrow(
                "SELECT current_user AS name, rolsuper, rolcreaterole "
                "FROM pg_roles WHERE rolname = current_user"
            )
        finally:
            await conn.close()
        assert row["name"] == infra.pg_user and not row["rolsuper"] and not row["rolcreaterole"]


class TestLocalCluster:
    def test_pg_hba_trusts_nobody(self, infra: Settings) -> None:
        data = stack.pg_dir(infra) / "data"
        lines = [
            line.split()
            for line in (data / "pg_hba.conf").read_text().splitlines()
            if line.strip() and not line.lstrip().startswith("#")
        ]
        assert lines and not [f for f in lines if "trust" in f]
        # the bootstrap superuser: peer on the socket, refused on TCP
        admin = [f for f in lines if f[2] == infra.pg_admin_user]
        assert [f[0] for f in admin if f[-1] != "reject"] == ["local"]
        assert all(f[3] == "peer" for f in admin if f[0] == "local")

    def test_the_socket_directory_is_private(self, infra: Settings) -> None:
        sock = stack.pg_dir(infra) / "sock"
        assert stat.S_IMODE(sock.stat().st_mode) == 0o700

    async def test_the_bootstrap_superuser_cannot_log_in_over_tcp(self, infra: Settings) -> None:
        # the password older versions gave it (the app role was this superuser)
        with pytest.raises(asyncpg.InvalidAuthorizationSpecificationError):
            await asyncpg.connect(
                host=infra.pg_host,
                port=infra.pg_port,
                user=infra.pg_admin_user,
                password="waymark-local",
                database="postgres",
                timeout=5,
            )
        admin = await stack.admin_connect(infra)
        try:
            superusers = await admin.fetch(
                "SELECT rolname, rolpassword IS NULL AS no_password FROM pg_authid WHERE rolsuper"
            )
        finally:
            await admin.close()
        assert [(r["rolname"], r["no_password"]) for r in superusers] == [
            (infra.pg_admin_user, True)
        ]

    def test_role_passwords_are_private_files(self, infra: Settings) -> None:
        folder = infra.pg_credentials_path()
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        for role in infra.pg_roles().values():
            path = infra.pg_password_file(role)
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
            assert len(path.read_text().strip()) >= 32


class TestSettings:
    def test_a_process_bound_to_one_part_has_no_credentials_for_another(
        self, infra: Settings
    ) -> None:
        s = infra.model_copy(update={"db_role": "notifications"})
        assert s.pg_credentials("notifications")[0] == "waymark_notifications"
        with pytest.raises(ValueError, match="no database credentials for 'referrals'"):
            s.pg_credentials("referrals")
        with pytest.raises(ValueError, match="no database credentials"):
            make_engine(s, "referrals")

    def test_a_part_without_its_password_file_fails_at_start(self, tmp_path) -> None:  # type: ignore[no-untyped-def]
        with pytest.raises(ValueError, match="no password file"):
            Settings(db_role="referrals", pg_credentials_dir=tmp_path)
        with pytest.raises(ValueError, match="db_role 'nobody'"):
            Settings(db_role="nobody", pg_credentials_dir=tmp_path)
        (tmp_path / "waymark_referrals").write_text("s3cret\n")
        s = Settings(db_role="referrals", pg_credentials_dir=tmp_path)
        assert s.part_database_url("referrals").startswith(
            "postgresql+asyncpg://waymark_referrals:s3cret@"
        )

    def test_production_refuses_to_start_without_an_https_issuer(self) -> None:
        with pytest.raises(ValueError, match="needs the ICS's OpenID issuer"):
            Settings(deployment_mode="production")
        with pytest.raises(ValueError, match="https"):
            Settings(deployment_mode="production", oidc_issuer="http://idp.example")
        with pytest.raises(ValueError, match="WAYMARK_DASHBOARD_PUBLIC_URL"):
            Settings(deployment_mode="production", oidc_issuer="https://idp.example")

    def test_local_mode_refuses_a_network_bind(self) -> None:
        with pytest.raises(ValueError, match="local mode listens on loopback only"):
            Settings(api_host="0.0.0.0")
        Settings(
            api_host="0.0.0.0",
            deployment_mode="production",
            oidc_issuer="https://idp.example",
            dashboard_public_url="https://waymark.example",
        )
        Settings(api_host="0.0.0.0", api_loopback_published=True)
        Settings(api_host="::1")
