"""The local stack behind `waymark up`: PostgreSQL, Apache Kafka (KRaft), the Temporal dev
server, and every Waymark process, with no Docker.

Every start is idempotent (a part already running and healthy is reused), every readiness
check is a real probe (a query, a metadata request, a health RPC, an HTTP GET), and `down`
stops only what `up` started, through the pid files under `<home>/run`.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

from devtools.stack import idp, kafka, postgres, temporal
from devtools.stack.health import (
    app_log,
    app_pid_file,
    heartbeat_file,
    heartbeat_probe,
    http_probe,
    worker_probe,
)
from devtools.stack.lock import WAIT_SECONDS, instance_lock, instance_lock_async
from devtools.stack.process_control import (
    REPO_ROOT,
    StackError,
    read_pid,
    spawn,
    stop_pid,
    wait_until,
)
from devtools.stack.processes import AppProcess, Part, app_processes
from shared.settings import Settings, kafka_user_password_file, settings_env


def app_part(
    name: str,
    command: Callable[[Settings], list[str]],
    probe: Callable[[Settings], Awaitable[bool]],
    port: Callable[[Settings], int | None] = lambda s: None,
    urls: Callable[[Settings], list[str]] = lambda s: [],
    kafka_principal: str = "",
) -> Part:
    def env(s: Settings) -> dict[str, str]:
        return process_env(s, kafka_principal)

    async def start(s: Settings) -> None:
        if read_pid(app_pid_file(s, name)) is not None and await probe(s):
            return
        stop_pid(app_pid_file(s, name))
        s.run_dir.mkdir(parents=True, exist_ok=True)
        spawn(
            command(s),
            log=app_log(s, name),
            pid_file=app_pid_file(s, name),
            env=env(s),
            cwd=REPO_ROOT,
        )
        await wait_until(
            lambda: probe(s),
            what=name,
            timeout=90,
            pid_file=app_pid_file(s, name),
            log=app_log(s, name),
        )

    def stop(s: Settings) -> None:
        stop_pid(app_pid_file(s, name))
        heartbeat_file(s, name).unlink(missing_ok=True)

    return Part(
        name=name,
        kind="app",
        start=start,
        probe=probe,
        stop=stop,
        port=port,
        urls=urls,
        log=lambda s: app_log(s, name),
        pid_file=lambda s: app_pid_file(s, name),
        command=command,
        env=env,
    )


def process_env(s: Settings, kafka_principal: str) -> dict[str, str]:
    """A Waymark process's environment: the same settings, and its own Kafka principal with
    its password file, never waymark-admin's."""
    if not kafka_principal:
        raise StackError("every Waymark process has a Kafka principal (processes.py)")
    env = settings_env(s)
    env["WAYMARK_KAFKA_SASL_USERNAME"] = kafka_principal
    env["WAYMARK_KAFKA_SASL_PASSWORD_PATH"] = str(kafka_user_password_file(s.home, kafka_principal))
    return env


def _fields(s: Settings, row: AppProcess) -> dict[str, object]:
    return {
        "host": s.api_host,
        "port": s.api_port(row.service) if row.service else "",
        "smtp_port": s.api_port_base + 25,
        "sms_port": s.api_port_base + 26,
        "mllp_port": s.integration_mllp_listen_port,
    }


def _probe(row: AppProcess) -> Callable[[Settings], Awaitable[bool]]:
    if row.health == "http":
        assert row.service is not None
        return http_probe(row.service)
    if row.health == "worker":
        return worker_probe
    return heartbeat_probe(row.name)


def _app_part(row: AppProcess) -> Part:
    service = row.service
    part = app_part(
        row.name,
        lambda s: [sys.executable, *(a.format(**_fields(s, row)) for a in row.args)],
        _probe(row),
        port=(lambda s: s.api_port(service)) if service else (lambda s: None),
        urls=lambda s: [u.format(**_fields(s, row)) for u in row.urls],
        kafka_principal=row.kafka_principal,
    )
    part.local_only = row.local_only
    return part


def parts() -> list[Part]:
    infra = [postgres.part(), kafka.part(), temporal.part()]
    return infra + [idp.part()] + [_app_part(row) for row in app_processes()]


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
    from shared.temporal_codec import ensure_keyring
    from shared.topics import ensure_topics

    await postgres.ensure_database(s)
    await migrate_all(s)
    await ensure_topics(s)
    await kafka.ensure_instance_acls(s)
    ensure_keys(s)
    ensure_pseudonym_key(s)
    ensure_sms_api_key(s)
    ensure_keyring(s.temporal_codec_keys_file())
    # the instance's identity provider: every API verifies tokens against its keys
    await idp.start(s)


def ensure_sms_api_key(s: Settings) -> None:
    """A GOV.UK Notify-format API key ("<name>-<service id>-<secret>") for the local SMS sink,
    made once; elsewhere the real key is mounted at WAYMARK_SMS_API_KEY_PATH."""
    path = s.sms_api_key_file()
    if path.exists():
        return
    from shared.auth import write_private_file

    write_private_file(path, f"waymark_local-{uuid.uuid4()}-{uuid.uuid4()}\n".encode())


async def up(
    s: Settings, *, infra_only: bool = False, apps: bool = True, wait: float = WAIT_SECONDS
) -> None:
    """Start what is not running and healthy. One `up` or `down` of an instance at a time:
    another waits for it (up to `wait` seconds, then refuses with a StackError)."""
    s.home.mkdir(parents=True, exist_ok=True)
    (s.home / "run").mkdir(exist_ok=True)
    s.logs_dir.mkdir(exist_ok=True)
    async with instance_lock_async(s, what="up", wait=wait):
        await _up(s, infra_only=infra_only, apps=apps)


async def _up(s: Settings, *, infra_only: bool, apps: bool) -> None:
    # installs and the Maven fetch happen before anything starts, one at a time
    postgres.install_postgres()
    kafka.kafka_libs(s)
    temporal.temporal_binary()
    infra = [p for p in parts() if p.kind == "infra"]
    await asyncio.gather(*(p.start(s) for p in infra))
    await prepare(s)
    if infra_only or not apps:
        return
    for p in parts():
        if p.kind == "app":
            await p.start(s)


def down(s: Settings, *, infra: bool = True, wait: float = WAIT_SECONDS) -> list[str]:
    """Stop what `up` started (the apps only, unless `infra`), holding the instance's lock."""
    stopped = []
    with instance_lock(s, what="down", wait=wait):
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
