"""PatientJourney on the real Temporal dev server (namespace waymark-test)."""

from __future__ import annotations

import uuid

import pytest
from temporalio.client import Client, WorkflowHistory
from temporalio.worker import Replayer, Worker

from shared.db import make_engine, make_sessionmaker
from shared.temporal_client import connect as connect_temporal
from tests.helpers import eventually
from workflows.journeys import workflow_id
from workflows.journeys.activities import JourneyActivities
from workflows.journeys.state import JourneyEvent
from workflows.journeys.workflows import JourneyInput, PatientJourney


def _event(
    referral_id: str,
    state: str = "submitted",
    at: str = "2026-01-05T09:00:00+00:00",
    event_id: str | None = None,
) -> JourneyEvent:
    return JourneyEvent(
        event_id=event_id or str(uuid.uuid4()),
        event_type=f"uk.waymark.referral.{state}",
        occurred_at=at,
        referral_id=referral_id,
        state=state,
        from_org="GP-1",
        to_org="PAIN-1",
        to_service_id="svc-1",
        service_category="pain_management",
        priority="routine",
        reason_codes=["279039007"],
    )


@pytest.fixture(scope="module")
async def client(infra) -> Client:  # type: ignore[no-untyped-def]
    return await connect_temporal(infra)


@pytest.fixture(scope="module")
async def activities(infra):  # type: ignore[no-untyped-def]
    engine = make_engine(infra, "journeys")
    yield JourneyActivities(settings=infra, sessions=make_sessionmaker(engine))
    await engine.dispose()


@pytest.fixture
async def worker(client: Client, activities):  # type: ignore[no-untyped-def]
    queue = f"test-journeys-{uuid.uuid4().hex[:8]}"
    async with Worker(
        client,
        task_queue=queue,
        workflows=[PatientJourney],
        activities=[activities.load_journey_rules, activities.record_alert_change],
    ):
        yield queue


async def _signal(client: Client, queue: str, patient: str, event: JourneyEvent) -> None:
    await client.start_workflow(
        PatientJourney.run,
        JourneyInput(patient_id=patient),
        id=workflow_id(patient),
        task_queue=queue,
        start_signal="referral_event",
        start_signal_args=[event],
    )


class TestPatientJourney:
    async def test_signal_with_start_creates_the_journey_and_a_query_shows_the_referral(
        self, client, worker
    ):
        patient = f"pt_{uuid.uuid4().hex[:12]}"
        await _signal(client, worker, patient, _event("r-1"))
        view = await client.get_workflow_handle(workflow_id(patient)).query(PatientJourney.journey)
        assert view.patient_id == patient
        assert [(e.referral_id, e.current.state) for e in view.episodes] == [("r-1", "submitted")]
        assert view.events_applied == 1

    async def test_a_repeated_signal_with_the_same_event_id_is_ignored(self, client, worker):
        patient = f"pt_{uuid.uuid4().hex[:12]}"
        event = _event("r-1")
        for _ in range(3):
            await _signal(client, worker, patient, event)
        handle = client.get_workflow_handle(workflow_id(patient))
        view = await handle.query(PatientJourney.journey)
        assert view.events_applied == 1
        assert view.duplicates_ignored == 2
        assert [st.event_type for st in view.episodes[0].steps] == ["uk.waymark.referral.submitted"]

    async def test_later_events_move_the_state_and_an_older_one_does_not_move_it_back(
        self, client, worker
    ):
        patient = f"pt_{uuid.uuid4().hex[:12]}"
        for rid, state, day in [
            ("r-1", "submitted", 5),
            ("r-1", "accepted", 7),
            ("r-2", "submitted", 8),
            ("r-1", "submitted", 6),
        ]:
            at = f"2026-01-{day:02d}T09:00:00+00:00"
            await _signal(client, worker, patient, _event(rid, state, at))
        view = await client.get_workflow_handle(workflow_id(patient)).query(PatientJourney.journey)
        states = {e.referral_id: e.current.state for e in view.episodes}
        assert states == {"r-1": "accepted", "r-2": "submitted"}
        assert [e.referral_id for e in view.episodes] == ["r-1", "r-2"]

    async def test_the_workflow_replays_deterministically_from_its_history(self, client, worker):
        patient = f"pt_{uuid.uuid4().hex[:12]}"
        for i in range(3):
            await _signal(client, worker, patient, _event(f"r-{i}"))
        handle = client.get_workflow_handle(workflow_id(patient))
        await handle.query(PatientJourney.journey)  # all signals applied
        history: WorkflowHistory = await handle.fetch_history()
        # raises if today's workflow code would make different decisions on this history
        # the history is encrypted: the replayer reads it through the same codec as the worker
        replayer = Replayer(workflows=[PatientJourney], data_converter=client.data_converter)
        await replayer.replay_workflow(history)

    async def test_renew_moves_every_running_journey_onto_a_new_run_with_its_journey(
        self, client, worker
    ):
        """`python -m workflows.journeys.renew`: how running journeys take up new rules."""
        from workflows.journeys.renew import renew_all

        patient = f"pt_{uuid.uuid4().hex[:12]}"
        await _signal(client, worker, patient, _event("r-1"))
        handle = client.get_workflow_handle(workflow_id(patient))
        first = (await handle.describe()).run_id

        async def listed() -> int | None:  # visibility catches up within moments
            n = await renew_all(client, dry_run=True)
            seen = [
                wf async for wf in client.list_workflows(f'WorkflowId = "{workflow_id(patient)}"')
            ]
            return n if seen else None

        assert await eventually(listed, timeout=20) >= 1
        await renew_all(client)

        async def renewed() -> str | None:
            run = (await handle.describe()).run_id
            return run if run != first else None

        await eventually(renewed, timeout=20)
        view = await handle.query(PatientJourney.journey)
        assert [(e.referral_id, e.current.state) for e in view.episodes] == [("r-1", "submitted")]
        assert view.events_applied == 1
