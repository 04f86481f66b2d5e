"""How the supervisor tells a Waymark process is healthy: an HTTP GET of its /health, a fresh
heartbeat file written by the very process the supervisor started, or the journeys worker
polling its task queue. Each probe is real."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

from devtools.stack.process_control import read_pid
from shared.heartbeat import read_heartbeat
from shared.settings import Settings


def app_pid_file(s: Settings, name: str) -> Path:
    return s.run_dir / f"{name}.pid"


def app_log(s: Settings, name: str) -> Path:
    return s.logs_dir / f"{s.instance}-{name}.log"


def heartbeat_file(s: Settings, name: str) -> Path:
    return s.run_dir / f"{name}.alive"


def heartbeat_probe(name: str, max_age: float = 15) -> Callable[[Settings], Awaitable[bool]]:
    async def probe(s: Settings) -> bool:
        pid = read_pid(app_pid_file(s, name))
        if pid is None:
            return False
        beat = read_heartbeat(heartbeat_file(s, name))
        # only the tracked process's own heartbeat counts: one killed with SIGKILL leaves its
        # last heartbeat behind, fresh for a while, and it must not vouch for its replacement
        return beat is not None and beat.pid == pid and time.time() - beat.at < max_age

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

    from shared.temporal_client import connect
    from workflows.journeys import TASK_QUEUE

    if read_pid(app_pid_file(s, "journeys-worker")) is None:
        return False
    try:
        client = await asyncio.wait_for(connect(s, encrypted=False), 5)
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
