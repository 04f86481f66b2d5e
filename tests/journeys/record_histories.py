"""Record PatientJourney histories for the replay test (tests/journeys/histories/*.json).

Run after a deliberate change to the workflow's decisions (and put the change behind
`workflow.patched`), never to make a failing replay pass:

    WAYMARK_INSTANCE=test WAYMARK_DB_NAME=waymark_test python -m tests.journeys.record_histories

Uses the time-skipping test server and the real activities (the test database). A history
already on disk is kept: it is the record of what an older version of the code decided, which
today's code must still replay (delete a file only to retire that version on purpose).
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from pathlib import Path

from temporalio.worker import Worker

from shared.db import make_engine, make_sessionmaker
from shared.settings import get_settings
from tests.journeys.conftest import test_server_binary
from tests.journeys.test_time_skipping import ev
from workflows.journeys import workflow_id
from workflows.journeys.activities import JourneyActivities
from workflows.journeys.state import AlertAction, AssessmentEvent, ContactEvent, PlanActivity
from workflows.journeys.workflows import JourneyInput, PatientJourney

OUT = Path(__file__).with_name("histories")


async def main() -> None:
    from temporalio.testing import WorkflowEnvironment

    settings = get_settings()
    engine = make_engine(settings, "journeys")
    activities = JourneyActivities(settings=settings, sessions=make_sessionmaker(engine))
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=test_server_binary()
    )
    queue = "record-histories"
    async with Worker(
        env.client,
        task_queue=queue,
        workflows=[PatientJourney],
        activities=[activities.load_journey_rules, activities.record_alert_change],
    ):
        t0 = await env.get_current_time()
        # 1: a stalled triage, a return, a re-referral, a ping-pong
        p1 = f"pt_hist_{uuid.uuid4().hex[:8]}"
        h1 = await env.client.start_workflow(
            PatientJourney.run,
            JourneyInput(patient_id=p1),
            id=workflow_id(p1),
            task_queue=queue,
            start_signal="referral_event",
            start_signal_args=[ev("r1", "submitted", t0)],
        )
        await env.sleep(timedelta(days=16))
        now = await env.get_current_time()
        for e in (
            ev("r1", "returned", now, reason="refer-elsewhere"),
            ev("r2", "submitted", now, category="talking_therapies_ltc", service="svc-tt"),
            ev("r3", "submitted", now + timedelta(hours=1)),
        ):
            await h1.signal(PatientJourney.referral_event, e)
        await env.sleep(timedelta(days=3))
        await h1.query(PatientJourney.journey)
        # 2: a safety alert acknowledged, snoozed and resolved, with an escalation between
        p2 = f"pt_hist_{uuid.uuid4().hex[:8]}"
        h2 = await env.client.start_workflow(
            PatientJourney.run, JourneyInput(patient_id=p2), id=workflow_id(p2), task_queue=queue
        )
        await h2.signal(
            PatientJourney.assessment,
            AssessmentEvent(
                event_id="a-1",
                occurred_at=t0.isoformat(),
                assessment_id="phq9-1",
                instrument="PHQ-9",
                band="moderately_severe",
                total=17,
                item9=2,
            ),
        )
        await env.sleep(timedelta(hours=2))
        view = await h2.query(PatientJourney.journey)
        alert = view.alerts[0].alert_id
        now = await env.get_current_time()
        for i, (action, extra) in enumerate(
            [("acknowledge", {}), ("snooze", {"until": (now + timedelta(hours=4)).isoformat()})]
        ):
            await h2.signal(
                PatientJourney.alert_action,
                AlertAction(
                    event_id=f"act-{i}",
                    alert_id=alert,
                    action=action,
                    actor="coord",
                    occurred_at=now.isoformat(),
                    **extra,
                ),
            )
        # past the snooze (4 h) but clear of the escalation that follows it (5 h): the
        # time-skipping server mishandles a timer cancelled in the instant it fires
        await env.sleep(timedelta(hours=4, minutes=30))
        await h2.signal(
            PatientJourney.alert_action,
            AlertAction(
                event_id="act-9",
                alert_id=alert,
                action="resolve",
                actor="coord",
                occurred_at=(await env.get_current_time()).isoformat(),
                reason="safety plan agreed",
            ),
        )
        await env.sleep(timedelta(minutes=5))
        await h2.query(PatientJourney.journey)
        # 3 (alert rules version 2): two doors closed, then nothing; a care-plan change; no
        # next step after a third; a severe PHQ-9 prompt that progresses once talking
        # therapies accept; item 9 addressed to the practice and the plan holder
        p3 = f"pt_hist_{uuid.uuid4().hex[:8]}"
        h3 = await env.client.start_workflow(
            PatientJourney.run, JourneyInput(patient_id=p3), id=workflow_id(p3), task_queue=queue
        )
        t3 = await env.get_current_time()
        for rid, cat, svc in (
            ("d1", "pain_management_programme", "svc-pain"),
            ("d2", "social_prescribing", "svc-sp"),
        ):
            await h3.signal(
                PatientJourney.referral_event, ev(rid, "submitted", t3, category=cat, service=svc)
            )
            await h3.signal(
                PatientJourney.referral_event,
                ev(
                    rid,
                    "rejected",
                    t3 + timedelta(hours=1),
                    category=cat,
                    service=svc,
                    reason="does-not-meet-criteria",
                ),
            )
        await h3.signal(
            PatientJourney.assessment,
            AssessmentEvent(
                event_id="a3-1",
                occurred_at=t3.isoformat(),
                assessment_id="phq9-3",
                instrument="PHQ-9",
                band="severe",
                total=23,
                safety_flag=True,
                registered_practice="A81001",
                holder_org="RTH",
            ),
        )
        await env.sleep(timedelta(days=15))
        now = await env.get_current_time()
        await h3.signal(PatientJourney.plan_activity, PlanActivity("plan-3", now.isoformat()))
        for state, hours in (("submitted", 1), ("accepted", 30), ("booked", 40), ("attended", 200)):
            await h3.signal(
                PatientJourney.referral_event,
                ev(
                    "t1",
                    state,
                    now + timedelta(hours=hours),
                    category="talking_therapies_ltc",
                    service="svc-tt",
                ),
            )
        await env.sleep(timedelta(days=10))
        await h3.signal(
            PatientJourney.referral_event,
            ev(
                "t1",
                "discharged",
                await env.get_current_time(),
                category="talking_therapies_ltc",
                service="svc-tt",
                reason="did-not-attend-discharged",
            ),
        )
        await env.sleep(timedelta(weeks=9))
        await h3.query(PatientJourney.journey)
        # 4 (contact rules, issue #17): a referral waiting, an A&E attendance for back pain while
        # it waits (unplanned care while waiting), three more (frequent attender), a later
        # revision entering one in error, a duplicate, and the wait ending
        p4 = f"pt_hist_{uuid.uuid4().hex[:8]}"
        h4 = await env.client.start_workflow(
            PatientJourney.run, JourneyInput(patient_id=p4), id=workflow_id(p4), task_queue=queue
        )
        t4 = await env.get_current_time()
        await h4.signal(PatientJourney.referral_event, ev("w1", "submitted", t4))
        await h4.signal(
            PatientJourney.referral_event, ev("w1", "accepted", t4 + timedelta(hours=3))
        )

        def contact(i: int, when: object, status: str = "finished", rev: int = 1) -> ContactEvent:
            return ContactEvent(
                event_id=f"c4-{i}-{rev}",
                occurred_at=str(when),
                encounter_id=f"enc-{i}",
                revision=rev,
                contact_kind="ae_attendance" if i % 2 == 0 else "nhs_111",
                planned=False,
                status=status,
                started_at=str(when),
                source_org="RXX01",
                chief_complaint="279039007" if i % 2 == 0 else None,
                attendance_category="1" if i % 2 == 0 else None,
            )

        await env.sleep(timedelta(days=3))
        for i in range(5):
            when = (t4 + timedelta(days=3, hours=i)).isoformat()
            await h4.signal(PatientJourney.contact, contact(i, when))
        await h4.signal(PatientJourney.contact, contact(0, (t4 + timedelta(days=3)).isoformat()))
        await env.sleep(timedelta(minutes=5))
        await h4.signal(
            PatientJourney.contact,
            contact(4, (t4 + timedelta(days=3, hours=4)).isoformat(), "entered_in_error", 2),
        )
        await env.sleep(timedelta(days=2))
        now = await env.get_current_time()
        for state, hours in (("booked", 1), ("attended", 30)):
            await h4.signal(
                PatientJourney.referral_event, ev("w1", state, now + timedelta(hours=hours))
            )
        await env.sleep(timedelta(days=3))
        await h4.query(PatientJourney.journey)
        OUT.mkdir(exist_ok=True)
        for name, handle in (
            ("stall-return-rereferral-pingpong", h1),
            ("safety-ack-snooze-resolve", h2),
            ("v2-doors-next-step-pathway-progressing", h3),
            ("contacts-frequent-attender-while-waiting", h4),
            # the same, recorded after HAZ-100's fix: every patch decided before the rules load
            ("patches-first-contacts-frequent-attender", h4),
        ):
            if (OUT / f"{name}.json").exists():
                print(f"kept {name}: recorded by an earlier version")
                continue
            history = await handle.fetch_history()
            (OUT / f"{name}.json").write_text(history.to_json())
            print(f"recorded {name}: {len(history.events)} events")
    await env.shutdown()
    await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
