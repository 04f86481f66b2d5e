"""The Temporal worker for patient journeys: `waymark run journeys-worker`."""

from __future__ import annotations

import asyncio
import logging

from temporalio.client import Client
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.worker import PollerBehaviorSimpleMaximum, Worker

from shared import temporal_client
from shared.db import make_engine, make_sessionmaker
from shared.outbox import install_stop_signals
from shared.settings import Settings, get_settings
from shared.telemetry import setup_telemetry
from workflows.journeys import TASK_QUEUE
from workflows.journeys.activities import JourneyActivities
from workflows.journeys.repair import watch_failing
from workflows.journeys.workflows import PatientJourney

logger = logging.getLogger(__name__)


async def connect(settings: Settings) -> Client:
    # the tracing interceptor carries the trace from the bridge's signal into the workflow
    return await temporal_client.connect(settings, interceptors=[TracingInterceptor()])


def build_worker(
    client: Client,
    activities: JourneyActivities,
    task_queue: str = TASK_QUEUE,
    *,
    max_cached_workflows: int = 1000,
    workflow_task_polls: int = 5,
    nonsticky_poll_ratio: float = 0.2,
) -> Worker:
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[PatientJourney],
        activities=[activities.load_journey_rules, activities.record_alert_change],
        max_cached_workflows=max_cached_workflows,
        workflow_task_poller_behavior=PollerBehaviorSimpleMaximum(maximum=workflow_task_polls),
        nonsticky_to_sticky_poll_ratio=nonsticky_poll_ratio,
    )


async def run_worker(settings: Settings | None = None) -> None:
    settings = settings or get_settings()
    setup_telemetry("journeys-worker", settings)
    client = await connect(settings)
    engine = make_engine(settings, "journeys", pool_size=4)
    activities = JourneyActivities(settings=settings, sessions=make_sessionmaker(engine))
    worker = build_worker(
        client,
        activities,
        max_cached_workflows=settings.journeys_worker_max_cached_workflows,
        workflow_task_polls=settings.journeys_worker_workflow_task_polls,
        nonsticky_poll_ratio=settings.journeys_worker_nonsticky_poll_ratio,
    )
    stop = asyncio.Event()
    install_stop_signals(stop)
    running = asyncio.create_task(worker.run())
    stopping = asyncio.create_task(stop.wait())
    watching = None
    if settings.journeys_failing_check_seconds:
        watching = asyncio.create_task(
            watch_failing(client, stop, settings.journeys_failing_check_seconds)
        )
    logger.info("journeys worker polling %s in %s", TASK_QUEUE, settings.temporal_namespace)
    # a worker that fails on its own ends the process (so a supervisor or probe sees it);
    # a stop signal shuts it down gracefully, letting running tasks finish
    await asyncio.wait([running, stopping], return_when=asyncio.FIRST_COMPLETED)
    if not running.done():
        await worker.shutdown()
    stopping.cancel()
    if watching is not None:
        watching.cancel()
    try:
        await running
    finally:
        await engine.dispose()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    asyncio.run(run_worker())


if __name__ == "__main__":
    main()
