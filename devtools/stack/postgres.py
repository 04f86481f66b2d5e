"""PostgreSQL for the local stack: Debian's package, a private cluster under the home, peer
auth for the bootstrap superuser on a private socket, a password (SCRAM) for every other role;
the roles and the database each instance needs."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
from pathlib import Path

import asyncpg

from devtools.stack.process_control import StackError, run, wait_until
from devtools.stack.processes import Part
from shared.settings import Settings

logger = logging.getLogger(__name__)


def pg_bin_dir() -> Path | None:
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    return found[-1].parent if found else None


def install_postgres() -> Path:
    """Install Debian's postgresql package where we can (root + apt), else say what to do."""
    if pg_bin_dir() is not None:
        return pg_bin_dir()  # type: ignore[return-value]
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise StackError(
            "PostgreSQL is not installed. Install Debian's package: "
            "sudo apt-get install -y postgresql"
        )
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    run(["apt-get", "update", "-q"], what="apt-get update", env=env)
    run(
        ["apt-get", "install", "-y", "-q", "postgresql"], what="apt-get install postgresql", env=env
    )
    found = pg_bin_dir()
    if found is None:
        raise StackError("apt-get installed postgresql but no /usr/lib/postgresql/*/bin found")
    return found


def _as_postgres(argv: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root; as root we run it as the package's `postgres` user
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


def pg_dir(settings: Settings) -> Path:
    """The cluster's directory: under home, unless root's postgres user cannot reach home
    (e.g. a clone under /root, which is mode 700); then a private dir under /var/lib."""
    here = settings.home / "pg"
    if os.geteuid() != 0:
        return here
    probe = subprocess.run(
        ["runuser", "-u", "postgres", "--", "test", "-x", str(settings.home)], capture_output=True
    )
    if probe.returncode == 0:
        return here
    digest = hashlib.sha256(str(settings.home.resolve()).encode()).hexdigest()[:10]
    return Path("/var/lib/waymark-pg") / digest


def _pg_paths(s: Settings) -> tuple[Path, Path, Path]:
    base = pg_dir(s)
    return base / "data", base / "sock", base / "postgres.log"


def _pg_pid_file(s: Settings) -> Path:
    return _pg_paths(s)[0] / "postmaster.pid"


def _pg_socket(s: Settings) -> Path:
    return _pg_paths(s)[1] / f".s.PGSQL.{s.pg_port}"


def is_local_cluster(s: Settings) -> bool:
    """True where `waymark up` runs this PostgreSQL (its socket is here); Compose and
    Kubernetes create roles and databases themselves."""
    return _pg_socket(s).exists()


async def admin_connect(
    s: Settings, database: str = "postgres", timeout: float = 10
) -> asyncpg.Connection:
    """The local cluster's bootstrap superuser, over the private socket (peer auth): only for
    creating roles and databases and handing objects to the migration owner."""
    return await asyncpg.connect(
        host=str(_pg_paths(s)[1]),
        port=s.pg_port,
        user=s.pg_admin_user,
        database=database,
        timeout=timeout,
    )


async def pg_probe(s: Settings, database: str = "postgres") -> bool:
    try:
        conn = await admin_connect(s, database, timeout=3)
    except (TimeoutError, OSError, asyncpg.PostgresError):
        return False
    try:
        return await conn.fetchval("SELECT 1") == 1
    finally:
        await conn.close()


def pg_hba(s: Settings) -> str:
    """Who may connect to the local cluster, and how. No `trust` anywhere."""
    admin = s.pg_admin_user
    return "\n".join(
        [
            "# Written by `waymark up` (devtools/stack/postgres.py) at every start: edits here are "
            "overwritten.",
            "# The bootstrap superuser: over the private socket only (its directory is mode 0700),",
            "# only for the OS account that runs `waymark up` (pg_ident.conf map `waymark`).",
            f"local   all   {admin}   peer   map=waymark",
            f"host    all   {admin}   127.0.0.1/32   reject",
            f"host    all   {admin}   ::1/128        reject",
            "# the migration owner and each part's runtime role: a password (SCRAM) over loopback",
            "host    all   all   127.0.0.1/32   scram-sha-256",
            "host    all   all   ::1/128        scram-sha-256",
            "",
        ]
    )


def pg_ident(s: Settings) -> str:
    import pwd

    users = {pwd.getpwuid(os.geteuid()).pw_name}
    if os.geteuid() == 0:
        users.add("postgres")  # the account the cluster runs as (runuser -u postgres psql)
    return "\n".join(
        [
            "# Written by `waymark up` (devtools/stack/postgres.py): who may be the bootstrap user",
            *(f"waymark   {u}   {s.pg_admin_user}" for u in sorted(users)),
            "",
        ]
    )


def _write_pg_file(path: Path, text: str) -> bool:
    """Write a file PostgreSQL reads (owned by the cluster's account); True if it changed."""
    try:
        if path.read_text() == text:
            return False
    except OSError:
        pass
    path.write_text(text)
    path.chmod(0o600)
    if os.geteuid() == 0:
        shutil.chown(path, "postgres", "postgres")
    return True


def harden_pg_files(s: Settings) -> bool:
    """pg_hba.conf, pg_ident.conf and a 0700 socket directory; True if a reload is needed.
    Upgrades a cluster made by older code (trust on the socket, a world-readable socket
    directory) in place."""
    data, sock, _ = _pg_paths(s)
    sock.mkdir(exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(sock, "postgres", "postgres")
    sock.chmod(0o700)
    changed = _write_pg_file(data / "pg_hba.conf", pg_hba(s))
    return _write_pg_file(data / "pg_ident.conf", pg_ident(s)) or changed


async def pg_start(s: Settings) -> None:
    bindir = install_postgres()
    data, sock, log = _pg_paths(s)
    if await pg_probe(s):
        if harden_pg_files(s):
            run(
                _as_postgres([str(bindir / "pg_ctl"), "-D", str(data), "reload"]),
                what="pg_ctl reload",
            )
        return
    base = data.parent
    base.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(base, "postgres", "postgres")
    if not (data / "PG_VERSION").exists():
        # the bootstrap superuser gets no password: it is reached by peer auth on the socket
        run(
            _as_postgres(
                [
                    str(bindir / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    s.pg_admin_user,
                    "--auth-local=peer",
                    "--auth-host=scram-sha-256",
                    "--encoding=UTF8",
                    "--locale=C.UTF-8",
                ]
            ),
            what="initdb",
        )
    harden_pg_files(s)
    # listen on loopback only; the socket lives in the private dir, not /var/run
    opts = (
        f"-p {s.pg_port} -k {sock} -c listen_addresses={s.pg_host} "
        f"-c max_connections=200 -c shared_buffers=128MB -c fsync=on"
    )
    run(
        _as_postgres(
            [
                str(bindir / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(log),
                "-o",
                opts,
                "-w",
                "-t",
                "60",
                "start",
            ]
        ),
        what="pg_ctl start",
    )
    await wait_until(lambda: pg_probe(s), what="PostgreSQL", timeout=60, log=log)


def pg_stop(s: Settings) -> None:
    bindir = pg_bin_dir()
    data = _pg_paths(s)[0]
    if bindir is None or not (data / "postmaster.pid").exists():
        return
    subprocess.run(
        _as_postgres([str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]),
        capture_output=True,
    )


def write_role_secrets(s: Settings, folder: Path, *, compose: bool = False) -> list[str]:
    """A random password file per Waymark role in `folder` (mode 0700), each made once; for
    Compose also the image superuser's (`postgres`), and the files readable by the containers'
    other users (Compose bind-mounts them as they are). Returns the roles it made files for."""
    import secrets

    from shared.auth import write_private_file

    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    made = []
    for role in [*s.pg_roles().values(), *(["postgres"] if compose else [])]:
        path = folder / role
        if path.exists():
            continue
        try:  # exclusive: a session preparing beside this one may have just made it
            write_private_file(path, (secrets.token_hex(24) + "\n").encode(), exclusive=True)
        except FileExistsError:
            continue
        if compose:
            path.chmod(0o644)
        made.append(role)
    return made


def ensure_role_passwords(s: Settings) -> dict[str, str]:
    """Each Waymark role's local password, generated once under <home>/keys/pg/<role>."""
    write_role_secrets(s, s.pg_credentials_path())
    return {role: s.pg_password_file(role).read_text().strip() for role in s.pg_roles().values()}


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


async def ensure_roles(s: Settings, conn: asyncpg.Connection) -> None:
    """The migration owner and one runtime role per part: logins, never superusers. The
    bootstrap superuser loses any password (older clusters gave it one for TCP logins)."""
    for role, password in ensure_role_passwords(s).items():
        attrs = (
            f"LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS "
            f"PASSWORD {_literal(password)}"
        )
        if await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname=$1", role):
            await conn.execute(f'ALTER ROLE "{role}" WITH {attrs}')
        else:
            await conn.execute(f'CREATE ROLE "{role}" WITH {attrs}')
    await conn.execute(f'ALTER ROLE "{s.pg_admin_user}" WITH PASSWORD NULL')


#: objects in a part's schema, by kind, as ALTER ... OWNER TO needs them named
_LEGACY_OBJECTS = """
SELECT CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                      WHEN 'S' THEN 'SEQUENCE' WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END,
       format('%I.%I', n.nspname, c.relname)
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = ANY($1) AND c.relowner <> $2::regrole
   AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
   AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.objid = c.oid AND e.deptype = 'e')
   -- identity and serial sequences follow their table
   AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                   AND d.objid = c.oid AND d.deptype IN ('a', 'i'))
UNION ALL
SELECT CASE p.prokind WHEN 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END, p.oid::regprocedure::text
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname = ANY($1) AND p.proowner <> $2::regrole
   AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.objid = p.oid AND e.deptype = 'e')
UNION ALL
SELECT 'TYPE', format('%I.%I', n.nspname, t.typname)
  FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
 WHERE n.nspname = ANY($1) AND t.typowner <> $2::regrole AND t.typtype IN ('e', 'd', 'r', 'm')
   AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.objid = t.oid AND e.deptype = 'e')
"""


async def hand_to_owner(s: Settings, conn: asyncpg.Connection) -> int:
    """Give every schema of the parts, and everything in them, to the migration owner: a
    database migrated by older code belongs to the bootstrap superuser. Returns how many."""
    from shared.settings import SERVICE_SCHEMAS

    owner, moved = s.pg_user, 0
    for (schema,) in await conn.fetch(
        "SELECT nspname FROM pg_namespace WHERE nspname = ANY($1) AND nspowner <> $2::regrole",
        list(SERVICE_SCHEMAS),
        owner,
    ):
        await conn.execute(f'ALTER SCHEMA "{schema}" OWNER TO "{owner}"')
        moved += 1
    for kind, name in await conn.fetch(_LEGACY_OBJECTS, list(SERVICE_SCHEMAS), owner):
        await conn.execute(f'ALTER {kind} {name} OWNER TO "{owner}"')
        moved += 1
    return moved


async def ensure_database(s: Settings) -> None:
    """Locally: the roles, the database (owned by the migration owner), and ownership moved
    off the bootstrap superuser. Elsewhere the platform made them (Compose's init script,
    CloudNativePG's managed roles): nothing to do."""
    from shared.migrations import SUPERUSER_EXTENSIONS

    if not is_local_cluster(s):
        logger.info(
            "no local PostgreSQL socket: roles and database %s are the platform's", s.db_name
        )
        return
    conn = await admin_connect(s)
    try:
        # two sessions preparing at once must not both create a role or the database
        await conn.execute("SELECT pg_advisory_lock(hashtext('waymark-ensure-database'))")
        await ensure_roles(s, conn)
        owner = s.pg_user
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname=$1", s.db_name):
            await conn.execute(f'CREATE DATABASE "{s.db_name}" OWNER "{owner}"')
        else:
            await conn.execute(f'ALTER DATABASE "{s.db_name}" OWNER TO "{owner}"')
        db = await admin_connect(s, s.db_name)
        try:
            moved = await hand_to_owner(s, db)
            for schema, extensions in SUPERUSER_EXTENSIONS.items():
                await db.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}" AUTHORIZATION "{owner}"')
                for ext in extensions:
                    await db.execute(f'CREATE EXTENSION IF NOT EXISTS "{ext}" SCHEMA "{schema}"')
        finally:
            await db.close()
        if moved:
            logger.info("database %s: %d objects handed to %s", s.db_name, moved, owner)
    finally:
        await conn.close()


def part() -> Part:
    return Part(
        "postgres",
        "infra",
        pg_start,
        pg_probe,
        pg_stop,
        port=lambda s: s.pg_port,
        urls=lambda s: [f"postgresql://{s.pg_user}@{s.pg_host}:{s.pg_port}/{s.db_name}"],
        log=lambda s: _pg_paths(s)[2],
        pid_file=_pg_pid_file,
    )
