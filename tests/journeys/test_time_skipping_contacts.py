"""Contacts with care (issue #17) on Temporal's time-skipping test server: the `contact` signal,
judged once events settle, exactly one alert for four A&E attendances, revisions and duplicates,
continue-as-new and `renew` carrying contacts, a journey recorded before the contact rules
taking them up, and replay. Activities are the real ones (PostgreSQL read model and outbox)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import pytest
from sqlalchemy import text
from temporalio.client import WorkflowHistory
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, Worker

from shared.db import unit_of_work
from tests.helpers import eventually
from tests.journeys.conftest import test_server_binary as server_binary
from tests.journeys.test_time_skipping import (
    HISTORIES,
    alerts,
    ev,
    patient,
    read_model,
    rules_loaded,
    start,
)
from workflows.journeys import workflow_id
from workflows.journeys.rules import load_rules
from workflows.journeys.rules_contacts import AE_PAIN, FREQUENT, WHILE_WAITING
from workflows.journeys.state import ContactEvent
from workflows.journeys.workflows import PatientJourney

RULES = load_rules()
SETTLE = timedelta(seconds=RULES.settle_seconds)
LOW_BACK_PAIN = "279039007"


def contact(
    encounter: str,
    when: datetime,
    *,
    kind: str = "ae_attendance",
    status: str = "finished",
    revision: int = 1,
    complaint: str | None = LOW_BACK_PAIN,
    event_id: str | None = None,
) -> ContactEvent:
    return ContactEvent(
        event_id=event_id or str(uuid.uuid4()),
        occurred_at=when.isoformat(),
        encounter_id=encounter,
        revision=revision,
        contact_kind=kind,
        planned=False,
        status=status,
        started_at=when.isoformat(),
        source_org="RXX01",
        chief_complaint=complaint if kind == "ae_attendance" else None,
        attendance_category="1" if kind == "ae_attendance" else None,
    )


class TestContacts:
    async def test_four_ae_attendances_for_back_pain_are_one_alert_once_settled(
        self, ts_worker, journey_sessions
    ):
        env, queue, _ = ts_worker
        t0 = await env.get_current_time()
        p = patient()
        handle = await start(env.client, queue, p)
        sent = [contact(f"e{i}", t0 - timedelta(days=40 - 10 * i)) for i in range(4)]
        for c in sent:
            await handle.signal(PatientJourney.contact, c)
        await handle.signal(PatientJourney.contact, sent[1])  # redelivered: applied once
        # a lower revision of the first arriving late changes nothing
        await handle.signal(
            PatientJourney.contact, contact("e0", t0 - timedelta(days=40), status="arrived")
        )
        await env.sleep(SETTLE - timedelta(seconds=5))
        assert await alerts(handle) == []  # judged once the events have settled
        await env.sleep(timedelta(seconds=10))
        found = await eventually(lambda: alerts(handle, FREQUENT), timeout=20)
        assert [e.encounter_id for e in found[0].evidence] == ["e0", "e1", "e2", "e3"]
        view = await handle.query(PatientJourney.journey)
        assert (view.events_applied, view.duplicates_ignored) == (5, 1)
        # the journey view shows the contacts, the latest revision of each, in time order
        assert [(c.encounter_id, c.status) for c in view.contacts] == [
            (f"e{i}", "finished") for i in range(4)
        ]
        await env.sleep(timedelta(hours=2))
        assert [a.rule for a in await alerts(handle)] == [FREQUENT]

        async def one_row():  # type: ignore[no-untyped-def]
            rows = await read_model(journey_sessions, p)
            return rows or None

        rows = await eventually(one_row, timeout=20)
        assert [(r.rule, r.status) for r in rows] == [(FREQUENT, "open")]

    async def test_two_then_two_more_leave_one_open_alert(self, ts_worker):
        env, queue, _ = ts_worker
        t0 = await env.get_current_time()
        handle = await start(env.client, queue, patient())
        for i in range(2):
            await handle.signal(PatientJourney.contact, contact(f"e{i}", t0 + timedelta(days=i)))
        await env.sleep(SETTLE + timedelta(seconds=5))
        found = await eventually(lambda: alerts(handle, AE_PAIN), timeout=20)
        assert found[0].status == "open"
        await env.sleep(timedelta(days=3))
        now = await env.get_current_time()
        for i in range(2, 4):
            await handle.signal(PatientJourney.contact, contact(f"e{i}", now + timedelta(hours=i)))
        await env.sleep(SETTLE + timedelta(seconds=5))
        await eventually(lambda: alerts(handle, FREQUENT), timeout=20)

        async def folded():  # type: ignore[no-untyped-def]
            a = (await alerts(handle, AE_PAIN))[0]
            return a if a.status == "resolved" else None

        a = await eventually(folded, timeout=20)
        assert a.resolution.startswith("included in the frequent-attender alert")
        assert [x.rule for x in await alerts(handle) if x.status != "resolved"] == [FREQUENT]

    async def test_unplanned_care_while_waiting_reaches_the_receiving_service_and_resolves(
        self, ts_worker, journey_sessions
    ):
        env, queue, _ = ts_worker
        t0 = await env.get_current_time()
        p = patient()
        handle = await start(env.client, queue, p, ev("r1", "submitted", t0))
        await handle.signal(
            PatientJourney.referral_event, ev("r1", "accepted", t0 + timedelta(hours=2))
        )
        await env.sleep(timedelta(days=2))
        await handle.signal(
            PatientJourney.contact,
            contact("c1", await env.get_current_time(), kind="crisis_team"),
        )
        await env.sleep(SETTLE + timedelta(seconds=5))
        found = await eventually(lambda: alerts(handle, WHILE_WAITING), timeout=20)
        assert found[0].recipient_orgs == ["ORG-C-PAIN"] and found[0].referral_id == "r1"

        async def outbox():  # type: ignore[no-untyped-def]
            async with unit_of_work(journey_sessions) as s:
                rows = (
                    (
                        await s.exec(
                            text(
                                "SELECT payload FROM outbox WHERE key = :p AND event_type = "
                                "'uk.waymark.journey.alert.raised'"
                            ).bindparams(p=p)
                        )
                    )
                    .scalars()
                    .all()
                )
            data = [(json.loads(x) if isinstance(x, str) else x)["data"] for x in rows]
            return [d for d in data if d["rule"] == WHILE_WAITING] or None

        data = await eventually(outbox, timeout=20)
        assert data[0]["recipient_orgs"] == ["ORG-C-PAIN"] and data[0]["referral_ids"] == ["r1"]
        now = await env.get_current_time()
        for state, hours in (("booked", 1), ("attended", 30)):
            await handle.signal(
                PatientJourney.referral_event, ev("r1", state, now + timedelta(hours=hours))
            )
        await env.sleep(SETTLE + timedelta(seconds=5))

        async def resolved():  # type: ignore[no-untyped-def]
            a = (await alerts(handle, WHILE_WAITING))[0]
            return a if a.status == "resolved" else None

        a = await eventually(resolved, timeout=30)
        assert a.resolution == "the wait is over: the referral is now attended"

    async def test_continue_as_new_keeps_the_contacts(self, ts_worker):
        env, queue, _ = ts_worker
        t0 = await env.get_current_time()
        p = patient()
        # 20 signals are more history events than 20 however a loaded worker batches them
        handle = await start(env.client, queue, p, max_history=20)
        first_run = (await handle.describe()).run_id
        for i in range(20):
            await handle.signal(
                PatientJourney.contact,
                contact(f"e{i}", t0 - timedelta(days=300 - 14 * i), kind="nhs_111"),
            )

        async def carried_over():  # type: ignore[no-untyped-def]
            h = env.client.get_workflow_handle(workflow_id(p))
            return h if (await h.describe()).run_id != first_run else None

        h = await eventually(carried_over, timeout=30)
        await env.sleep(SETTLE + timedelta(seconds=5))

        async def judged():  # type: ignore[no-untyped-def]
            view = await h.query(PatientJourney.journey)
            found = [a for a in view.alerts if a.rule == FREQUENT]
            return found if len(found) == 5 else None

        # twenty calls a fortnight apart: five runs of four, each one alert, across the runs
        found = await eventually(judged, timeout=30)
        assert [len(a.evidence) for a in found] == [4] * 5


@pytest.fixture
async def own_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_time_skipping(test_server_existing_path=server_binary())
    yield env
    await env.shutdown()


class TestPatchAndReplay:
    async def test_a_journey_recorded_before_the_contact_rules_takes_them_up_when_renewed(
        self, own_env, ts_worker
    ):
        """A worker without the contact rules (the patch left off) holds the contacts it is
        sent and raises nothing from them; once renewed, the new run takes the rules up and
        judges the contacts it carried over."""
        _, _, activities = ts_worker
        env = own_env
        queue = f"ts-contacts-{uuid.uuid4().hex[:8]}"
        p = patient()
        t0 = await env.get_current_time()

        def old_code(info):  # type: ignore[no-untyped-def]
            return info.patch_id not in ("contact-rules", "patches-before-rules")

        async with Worker(
            env.client,
            task_queue=queue,
            workflows=[PatientJourney],
            activities=[activities.load_journey_rules, activities.record_alert_change],
            patch_activation_callback=old_code,
            max_cached_workflows=0,
        ):
            handle = await start(env.client, queue, p)
            await rules_loaded(handle)  # old code: no query before (HAZ-100)
            for i in range(4):
                await handle.signal(
                    PatientJourney.contact, contact(f"e{i}", t0 - timedelta(days=10 * i))
                )
            await env.sleep(SETTLE + timedelta(seconds=5))
            view = await handle.query(PatientJourney.journey)
            assert view.events_applied == 4 and view.alerts == []
            first_run = (await handle.describe()).run_id
        async with Worker(
            env.client,
            task_queue=queue,
            workflows=[PatientJourney],
            activities=[activities.load_journey_rules, activities.record_alert_change],
        ):
            await handle.signal(PatientJourney.renew)

            async def new_run():  # type: ignore[no-untyped-def]
                h = env.client.get_workflow_handle(handle.id)
                return h if (await h.describe()).run_id != first_run else None

            renewed = await eventually(new_run, timeout=30)
            # the carried-over contacts are judged at once by the new run; a late contact
            # before them raises no second alert for the same run
            await renewed.signal(
                PatientJourney.contact, contact("e9", t0 - timedelta(days=100), kind="nhs_111")
            )
            await env.sleep(SETTLE + timedelta(seconds=5))
            found = await eventually(lambda: alerts(renewed, FREQUENT), timeout=20)
            assert len(found) == 1
            await renewed.terminate("test over")

    async def test_a_run_with_contacts_replays_and_so_does_every_committed_history(self, ts_worker):
        env, queue, _ = ts_worker
        t0 = await env.get_current_time()
        handle = await start(env.client, queue, patient(), ev("r1", "submitted", t0))
        for i in range(4):
            await handle.signal(PatientJourney.contact, contact(f"e{i}", t0 + timedelta(hours=i)))
        await env.sleep(SETTLE + timedelta(seconds=5))
        await eventually(lambda: alerts(handle, WHILE_WAITING), timeout=30)
        await eventually(lambda: alerts(handle, FREQUENT), timeout=30)
        replayer = Replayer(workflows=[PatientJourney])
        await replayer.replay_workflow(await handle.fetch_history())
        files = sorted(HISTORIES.glob("*.json"))
        assert any(f.stem.startswith("contacts-") for f in files)
        for f in files:
            await replayer.replay_workflow(WorkflowHistory.from_json(f.stem, f.read_text()))
