"""Journeys whose workflow tasks keep failing (HAZ-100): found, counted by the worker's watch,
and repaired by a reset to their first workflow task. The shape test reads real histories (the
committed ones and the one the 100,000-journey run recorded); the repair runs on the real
Temporal dev server with a journey made to fail as a deploy of changed code makes it fail."""

from __future__ import annotations

import asyncio
import logging
import uuid
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowHandle, WorkflowHistory
from temporalio.worker import Worker

from shared.temporal_client import connect as connect_temporal
from tests.helpers import eventually
from tests.journeys.earlier_journey import EarlierJourney
from tests.journeys.split_tasks import split_after_local_activities
from tests.journeys.test_workflow import _event
from workflows.journeys import workflow_id
from workflows.journeys.activities import JourneyActivities
from workflows.journeys.repair import (
    Finding,
    find,
    replay_all,
    reset_to_first_task,
    reset_unreplayable,
    split_before_patches,
    watch_failing,
)
from workflows.journeys.workflows import JourneyInput, PatientJourney

ROOT = Path(__file__).resolve().parents[2]
HISTORIES = ROOT / "tests" / "journeys" / "histories"
RECORDED_BY_THE_100K_RUN = ROOT / "bench" / "results" / "journey-nondeterminism-2026-12-04.json"


def history(path: Path) -> WorkflowHistory:
    return WorkflowHistory.from_json(path.stem, path.read_text())


class TestTheShape:
    def test_the_journey_the_100k_run_could_not_replay_is_found(self):
        assert split_before_patches(history(RECORDED_BY_THE_100K_RUN).events)

    @pytest.mark.parametrize("path", sorted(HISTORIES.glob("*.json")), ids=lambda p: p.stem)
    def test_a_history_recorded_in_one_task_is_not(self, path: Path):
        assert not split_before_patches(history(path).events)

    def test_an_old_history_split_after_its_local_activity_is(self):
        split, _ = split_after_local_activities(
            history(HISTORIES / "contacts-frequent-attender-while-waiting.json")
        )
        assert split_before_patches(split.events)

    def test_a_history_that_decided_its_patches_first_is_not_even_split(self):
        split, _ = split_after_local_activities(
            history(HISTORIES / "patches-first-contacts-frequent-attender.json")
        )
        assert not split_before_patches(split.events)

    def test_a_history_with_no_patch_after_its_activity_is_not(self):
        # recorded before any patch: nothing a later task could decide differently
        split, _ = split_after_local_activities(
            history(HISTORIES / "stall-return-rereferral-pingpong.json")
        )
        assert not split_before_patches(split.events)


@pytest.fixture(scope="module")
async def client(infra) -> Client:  # type: ignore[no-untyped-def]
    return await connect_temporal(infra)


@pytest.fixture(scope="module")
async def activities(journey_sessions, infra):  # type: ignore[no-untyped-def]
    return JourneyActivities(settings=infra, sessions=journey_sessions)


async def test_a_journey_failing_its_tasks_is_reported_and_repaired_by_a_reset(
    client: Client, activities, caplog
):
    queue = f"test-repair-{uuid.uuid4().hex[:8]}"
    patient = f"pt_repair_{uuid.uuid4().hex[:8]}"
    acts = [activities.load_journey_rules, activities.record_alert_change]
    async with Worker(client, task_queue=queue, workflows=[EarlierJourney], activities=acts):
        handle = await _start(client, queue, patient)
        await _timer_started(handle)
    # today's code deployed: the journey's next task replays its history and fails, every time
    async with Worker(client, task_queue=queue, workflows=[PatientJourney], activities=acts):
        await handle.signal(PatientJourney.referral_event, _event("r1", "accepted"))

        async def flagged() -> list[Finding]:
            return [f async for f in find(client) if f.workflow_id == handle.id]

        # the check before a deploy names it: today's code cannot replay it
        count, failures = await replay_all(client, f'WorkflowId = "{handle.id}"')
        assert count == 1 and [workflow_id_ for workflow_id_, _ in failures] == [handle.id]
        findings = await eventually(flagged, timeout=60)
        (finding,) = findings
        assert finding.repairable
        assert not finding.split_before_patches  # another shape, repaired the same way

        caplog.set_level(logging.ERROR, logger="workflows.journeys.repair")
        stop = asyncio.Event()
        watching = asyncio.create_task(watch_failing(client, stop, every_seconds=60))
        await eventually(lambda: "failing their workflow tasks" in caplog.text, timeout=30)
        stop.set()
        await watching

        (new_run,) = await reset_unreplayable(client, failures)
        assert new_run != finding.run_id
        # a second repair of the same run resets nothing more
        assert await reset_to_first_task(client, finding, "test repair") == new_run
        fresh = client.get_workflow_handle(handle.id)

        async def both_events_applied() -> bool:
            view = await fresh.query(PatientJourney.journey)
            return view.events_applied == 2

        await eventually(both_events_applied, timeout=60)
        assert (await fresh.describe()).run_id == new_run
        assert await replay_all(client, f'WorkflowId = "{handle.id}"') == (1, [])
        await eventually(lambda: _not_flagged(client, handle.id), timeout=60)
        await fresh.terminate("test done")


async def _not_flagged(client: Client, workflow_id_: str) -> bool:
    return not [f async for f in find(client) if f.workflow_id == workflow_id_]


async def test_a_journey_queried_before_its_first_task_replays_after_eviction(
    client: Client, activities
):
    # how the 100,000-journey run split its journeys: a query waiting for a journey's first
    # workflow task (a backlog) is answered with that task, which then completes with the
    # rules' local activity marker, leaving what follows it to a second task. Once evicted, the
    # journey must replay (HAZ-100: it failed for ever)
    queue = f"test-queried-{uuid.uuid4().hex[:8]}"
    patient = f"pt_queried_{uuid.uuid4().hex[:8]}"
    acts = [activities.load_journey_rules, activities.record_alert_change]
    handle = await _start(client, queue, patient)
    queried = asyncio.create_task(handle.query(PatientJourney.journey))
    await asyncio.sleep(1)  # the query waits on the journey's first task: no worker yet
    async with Worker(client, task_queue=queue, workflows=[PatientJourney], activities=acts):
        assert (await queried).events_applied == 1
        await _timer_started(handle)
    # a new worker: nothing cached, the next task replays the history
    async with Worker(client, task_queue=queue, workflows=[PatientJourney], activities=acts):
        await handle.signal(PatientJourney.referral_event, _event("r1", "accepted"))

        async def both_events_applied() -> bool:
            return (await handle.query(PatientJourney.journey)).events_applied == 2

        await eventually(both_events_applied, timeout=30)
        assert not [f async for f in find(client) if f.workflow_id == handle.id]
    await handle.terminate("test done")


async def _start(client: Client, queue: str, patient: str) -> WorkflowHandle:
    """A journey started with its first referral event, as the bridge starts one."""
    return await client.start_workflow(
        PatientJourney.run,
        JourneyInput(patient_id=patient),
        id=workflow_id(patient),
        task_queue=queue,
        start_signal="referral_event",
        start_signal_args=[_event("r1")],
    )


async def _timer_started(handle: WorkflowHandle) -> None:
    """Until the journey's first task has completed and started its settle timer."""

    async def started() -> bool:
        events = [e async for e in handle.fetch_history_events()]
        return any(e.HasField("timer_started_event_attributes") for e in events)

    await eventually(started, timeout=30)
