"""The process table: every part `waymark up` runs, as data. Infrastructure first (PostgreSQL,
Kafka, Temporal), then the Waymark processes in start order. The supervisor
(devtools/stack/supervisor.py) turns each row into something it can start, probe and stop; the
Compose file and the Kubernetes manifests deploy the same rows (tests/test_deploy_files.py)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from shared.kafka_principals import principal_of_service
from shared.settings import Settings


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
    # the environment the process runs with (its settings and its own Kafka principal)
    env: Callable[[Settings], dict[str, str]] = lambda s: {}
    # started only by the local stack (e.g. the SMTP/SMS sinks standing in for real providers)
    local_only: bool = False


#: how the supervisor tells a process is healthy: GET /health on its service's API port, a
#: fresh heartbeat file written by the tracked pid, or the worker polling its task queue
Health = Literal["http", "heartbeat", "worker"]


@dataclass(frozen=True)
class AppProcess:
    """One Waymark process. `args` follow the interpreter; `{host}` and `{port}` in them and
    in `urls` are the API host and this service's API port; `{smtp_port}` and `{sms_port}` the
    local message sinks' ports; `{mllp_port}` the HL7 v2 listener's."""

    name: str
    args: tuple[str, ...]
    health: Health
    service: str | None = None  # the service whose API port this process listens on
    urls: tuple[str, ...] = ()
    local_only: bool = False
    #: the Kafka principal it connects as (shared/kafka_principals.py): its service's
    kafka_principal: str = ""


#: services whose API, relay and consumers exist so far (the others arrive with their issues)
BUILT_SERVICES: tuple[str, ...] = (
    "referrals",
    "directory",
    "care_plans",
    "notifications",
    "integration",
)
#: services that consume other parts' events (services/<name>/consumers.py)
CONSUMING_SERVICES: tuple[str, ...] = ("referrals", "care_plans", "notifications")


#: a service's processes beyond its API, relay and consumer: the HL7 v2 listener (MLLP over
#: TCP on Settings.integration_mllp_listen_port), healthy while it accepts connections
EXTRA_PROCESSES: dict[str, tuple[AppProcess, ...]] = {
    "integration": (
        AppProcess(
            "integration-mllp",
            ("-m", "services.integration.hl7"),
            "heartbeat",
            urls=("mllp://127.0.0.1:{mllp_port}",),
            kafka_principal="integration",
        ),
    ),
}


def part_name(service: str, role: str) -> str:
    """Part names are DNS labels (Kubernetes, Compose): care_plans -> care-plans-api."""
    return f"{service.replace('_', '-')}-{role}"


#: uvicorn's fast event loop and HTTP parser, for every API and the benches that start one
UVICORN_SPEED_FLAGS: tuple[str, ...] = ("--loop", "uvloop", "--http", "httptools")


def _api(service: str) -> AppProcess:
    return AppProcess(
        part_name(service, "api"),
        (
            "-m",
            "uvicorn",
            f"services.{service}.api:app",
            "--host",
            "{host}",
            "--port",
            "{port}",
            "--no-access-log",
            # the event loop and HTTP parsing in C (issue #20: the asyncio loop's own work was
            # a visible share of referrals-api's profile)
            *UVICORN_SPEED_FLAGS,
            # open SSE streams would otherwise hold a graceful stop for ever
            "--timeout-graceful-shutdown",
            "5",
        ),
        "http",
        service=service,
        urls=("http://127.0.0.1:{port}/docs",),
        kafka_principal=principal_of_service(service),
    )


def app_processes() -> list[AppProcess]:
    """Every Waymark process, in the order `waymark up` starts them."""
    # local stand-ins for the message providers: a real SMTP server (aiosmtpd) and a GOV.UK
    # Notify-shaped SMS API, keeping what they receive under <home>/sinks/<instance>/
    table = [
        AppProcess(
            "dev-sinks",
            ("-m", "services.notifications.devsinks"),
            "heartbeat",
            urls=("smtp://127.0.0.1:{smtp_port}", "http://127.0.0.1:{sms_port}"),
            local_only=True,
            kafka_principal="notifications",
        )
    ]
    for service in BUILT_SERVICES:
        table.append(_api(service))
        relay = part_name(service, "relay")
        principal = principal_of_service(service)
        table.append(
            AppProcess(
                relay, ("-m", "shared.outbox", service), "heartbeat", kafka_principal=principal
            )
        )
        if service in CONSUMING_SERVICES:
            consumer = part_name(service, "consumer")
            module = f"services.{service}.consumers"
            table.append(
                AppProcess(consumer, ("-m", module), "heartbeat", kafka_principal=principal)
            )
        table += list(EXTRA_PROCESSES.get(service, ()))
    journeys = principal_of_service("journeys")
    table += [
        AppProcess(
            "notifications-dispatcher",
            ("-m", "services.notifications.dispatcher"),
            "heartbeat",
            kafka_principal="notifications",
        ),
        AppProcess(
            "journeys-relay",
            ("-m", "shared.outbox", "journeys"),
            "heartbeat",
            kafka_principal=journeys,
        ),
        AppProcess(
            "journeys-worker",
            ("-m", "workflows.journeys.worker"),
            "worker",
            kafka_principal=journeys,
        ),
        AppProcess(
            "journeys-bridge",
            ("-m", "workflows.journeys.bridge"),
            "heartbeat",
            kafka_principal=journeys,
        ),
    ]
    return table
