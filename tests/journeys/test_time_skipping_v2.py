"""Alert rules version 2 (issue #15) on Temporal's time-skipping test server: each new or
changed rule fires at its moment and not a second before; a journey started under version 1
takes up version 2 when renewed. Activities are the real ones (PostgreSQL read model and
outbox)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import text
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from shared.db import unit_of_work
from tests.helpers import eventually
from tests.journeys.conftest import test_server_binary as server_binary
from tests.journeys.test_time_skipping import alerts, ev, patient, read_model, rules_loaded, start
from workflows.journeys.rules import load_rules
from workflows.journeys.state import AssessmentEvent, PlanActivity
from workflows.journeys.words import days_between
from workflows.journeys.workflows import PatientJourney

RULES = load_rules()
SETTLE = timedelta(seconds=RULES.settle_seconds)


class TestClosedDoorsAndNoNextStep:
    async def test_closed_doors_waits_for_the_grace_then_raises(self, ts_worker):
        env, queue, _ = ts_worker
        t0 = await env.get_current_time()
        handle = await start(env.client, queue, patient())
        for rid, cat, svc in (
            ("r1", "pain_management_programme", "svc-pain"),
            ("r2", "talking_therapies_ltc", "svc-tt"),
        ):
            await handle.signal(
                PatientJourney.referral_event, ev(rid, "submitted", t0, category=cat, service=svc)
            )
            await handle.signal(
                PatientJourney.referral_event,
                ev(
                    rid,
                    "rejected",
                    t0 + timedelta(minutes=1),
                    category=cat,
                    service=svc,
                    reason="does-not-meet-criteria",
                ),
            )
        grace = timedelta(days=RULES.closed_doors_grace_days, minutes=1)
        await env.sleep(grace - timedelta(seconds=5))
        assert await alerts(handle, "looping.closed_doors") == []
        await env.sleep(timedelta(seconds=10))
        found = await eventually(lambda: alerts(handle, "looping.closed_doors"), timeout=20)
        assert len(found) == 1 and len(found[0].evidence) == 2

    async def test_no_next_step_reaches_the_referrer_after_eight_weeks(
        self, ts_worker, journey_sessions
    ):
        env, queue, _ = ts_worker
        t0 = await env.get_current_time()
        p = patient()
        handle = await start(env.client, queue, p, ev("r1", "submitted", t0))
        await handle.signal(
            PatientJourney.referral_event,
            ev("r1", "returned", t0 + timedelta(hours=1), reason="refer-elsewhere"),
        )
        due = timedelta(hours=1, weeks=RULES.no_next_step_weeks)
        await env.sleep(due - timedelta(seconds=5))
        assert await alerts(handle, "stalled.no_next_step") == []
        await env.sleep(timedelta(seconds=SETTLE.seconds + 10))
        found = await eventually(lambda: alerts(handle, "stalled.no_next_step"), timeout=20)
        assert found[0].recipient_orgs == ["GP-1"]
        async with unit_of_work(journey_sessions) as s:
            payloads = (
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
        data = [(json.loads(x) if isinstance(x, str) else x)["data"] for x in payloads]
        assert [d["recipient_orgs"] for d in data if d["rule"] == "stalled.no_next_step"] == [
            ["GP-1"]
        ]
        # a referral elsewhere is the next step: the alert resolves itself
        await handle.signal(
            PatientJourney.referral_event,
            ev(
                "r2",
                "submitted",
                await env.get_current_time(),
                category="social_prescribing",
                service="svc-sp",
            ),
        )
        await env.sleep(SETTLE + timedelta(seconds=5))

        async def resolved():  # type: ignore[no-untyped-def]
            a = (await alerts(handle, "stalled.no_next_step"))[0]
            return a if a.status == "resolved" else None

        a = await eventually(resolved, timeout=20)
        assert a.resolution.startswith("a next step followed: referred to social prescribing")

    async def test_a_care_plan_change_is_a_next_step(self, ts_worker):
        env, queue, _ = ts_worker
        t0 = await env.get_current_time()
        handle = await start(env.client, queue, patient(), ev("r1", "submitted", t0))
        await handle.signal(
            PatientJourney.referral_event, ev("r1", "rejected", t0 + timedelta(hours=1))
        )
        await handle.signal(
            PatientJourney.plan_activity,
            PlanActivity(str(uuid.uuid4()), (t0 + timedelta(days=3)).isoformat()),
        )
        await env.sleep(timedelta(weeks=RULES.no_next_step_weeks + 2))
        view = await handle.query(PatientJourney.journey)
        assert [a.rule for a in view.alerts if a.rule == "stalled.no_next_step"] == []


class TestChangedRules:
    async def test_referral_to_treatment_only_where_it_is_the_standard(self, ts_worker):
        env, queue, _ = ts_worker
        t0 = await env.get_current_time()
        handle = await start(env.client, queue, patient())
        far = t0 + timedelta(weeks=30)
        for rid, cat, svc in (
            ("pain", "pain_management_programme", "svc-pain"),
            ("msk", "msk_physiotherapy", "svc-msk"),
        ):
            for state, at in (
                ("submitted", t0),
                ("accepted", t0 + timedelta(days=1)),
                ("booked", t0 + timedelta(days=2)),
            ):
                await handle.signal(
                    PatientJourney.referral_event,
                    ev(
                        rid,
                        state,
                        at,
                        category=cat,
                        service=svc,
                        appointment_at=far if state == "booked" else None,
                    ),
                )
        await env.sleep(
            timedelta(weeks=RULES.rtt_weeks_by_category["pain_management_programme"], seconds=-5)
        )
        assert await alerts(handle, "stalled.rtt_breach") == []
        await env.sleep(timedelta(seconds=10))
        found = await eventually(lambda: alerts(handle, "stalled.rtt_breach"), timeout=20)
        assert [a.referral_id for a in found] == ["pain"]
        await env.sleep(timedelta(weeks=4))
        assert [a.referral_id for a in await alerts(handle, "stalled.rtt_breach")] == ["pain"]

    async def test_ping_pong_and_returns_are_judged_on_what_happened(self, ts_worker):
        env, queue, _ = ts_worker
        t0 = await env.get_current_time()
        handle = await start(env.client, queue, patient())
        pain, tt = ("pain_management_programme", "svc-pain"), ("talking_therapies_ltc", "svc-tt")
        for rid, (cat, svc), steps in (
            ("a", pain, (("submitted", 0), ("rejected", 1))),
            ("b", tt, (("submitted", 2), ("returned", 3))),
            ("c", pain, (("submitted", 4),)),
        ):
            for state, days in steps:
                await handle.signal(
                    PatientJourney.referral_event,
                    ev(
                        rid,
                        state,
                        t0 + timedelta(days=days),
                        category=cat,
                        service=svc,
                        reason={
                            "rejected": "does-not-meet-criteria",
                            "returned": "refer-elsewhere",
                        }.get(state),
                    ),
                )
        found = await eventually(lambda: alerts(handle, "looping.ping_pong"), timeout=20)
        assert [e.referral_id for e in found[0].evidence] == ["a", "b", "c"]
        assert [a.referral_id for a in await alerts(handle, "looping.re_referral")] == ["c"]

    async def test_two_returns_within_the_window_raise_once_on_event_time(self, ts_worker):
        env, queue, _ = ts_worker
        t0 = await env.get_current_time()
        handle = await start(env.client, queue, patient())
        for rid, cat, days in (
            ("r1", "pain_management_programme", 0),
            ("r2", "talking_therapies_ltc", 30),
            ("r3", "social_prescribing", 60),
        ):
            for state, d in (("submitted", 0), ("returned", 2)):
                await handle.signal(
                    PatientJourney.referral_event,
                    ev(
                        rid,
                        state,
                        t0 + timedelta(days=days + d),
                        category=cat,
                        service=f"svc-{rid}",
                        reason="refer-elsewhere" if d else None,
                    ),
                )
        found = await eventually(lambda: alerts(handle, "looping.returned_repeatedly"), timeout=20)
        # r1 and r2 make a run; r3 alone starts the next one: one alert
        assert [[e.referral_id for e in a.evidence] for a in found] == [["r1", "r2"]]
        # UK calendar days (unit-tested in test_rules_v2): 29-31 when the span crosses a change
        # of summer time near midnight, and the test server's clock starts at the real time
        days = days_between(t0 + timedelta(days=2), t0 + timedelta(days=32))
        assert f"Returned to the referrer 2 times in {days} days" in found[0].explanation

    async def test_sessions_are_not_contacts_but_four_episodes_are(self, ts_worker):
        env, queue, _ = ts_worker
        t0 = await env.get_current_time()
        one, four = patient(), patient()
        h1 = await start(env.client, queue, one)
        steps = [("submitted", 0), ("accepted", 1)] + [
            (s, 2 + 7 * i + d) for i in range(5) for s, d in (("booked", 0), ("attended", 3))
        ]
        for state, days in steps:
            await h1.signal(
                PatientJourney.referral_event,
                ev(
                    "r1",
                    state,
                    t0 + timedelta(days=days),
                    category="msk_physiotherapy",
                    service="svc-msk",
                ),
            )
        h4 = await start(env.client, queue, four)
        for i, cat in enumerate(
            (
                "pain_management_programme",
                "talking_therapies_ltc",
                "msk_physiotherapy",
                "social_prescribing",
            )
        ):
            await h4.signal(
                PatientJourney.referral_event,
                ev(
                    f"r{i}",
                    "submitted",
                    t0 + timedelta(days=20 * i),
                    category=cat,
                    service=f"svc-{i}",
                ),
            )
        found = await eventually(lambda: alerts(h4, "looping.frequent_contact"), timeout=20)
        days = days_between(t0, t0 + timedelta(days=60))  # UK calendar days, as above
        assert found[0].explanation.startswith(f"4 episodes of care in {days} days")
        view = await h1.query(PatientJourney.journey)
        assert view.events_applied == len(steps)
        assert [a.rule for a in view.alerts if a.kind == "looping"] == []

    async def test_a_loop_alert_progresses_when_the_person_is_seen(
        self, ts_worker, journey_sessions
    ):
        env, queue, _ = ts_worker
        t0 = await env.get_current_time()
        p = patient()
        handle = await start(env.client, queue, p, ev("r1", "submitted", t0))
        await handle.signal(
            PatientJourney.referral_event, ev("r1", "rejected", t0 + timedelta(hours=1))
        )
        await handle.signal(
            PatientJourney.referral_event, ev("r2", "submitted", t0 + timedelta(days=2))
        )
        await eventually(lambda: alerts(handle, "looping.re_referral"), timeout=20)
        for state, days in (("accepted", 3), ("booked", 4), ("attended", 10)):
            await handle.signal(
                PatientJourney.referral_event, ev("r2", state, t0 + timedelta(days=days))
            )

        async def progressing():  # type: ignore[no-untyped-def]
            rows = await read_model(journey_sessions, p)
            return [
                r for r in rows if r.rule == "looping.re_referral" and r.status == "progressing"
            ] or None

        rows = await eventually(progressing, timeout=20)
        assert rows[0].seq == 2
        await env.sleep(timedelta(days=5))  # a progressing alert does not escalate
        assert (await alerts(handle, "looping.re_referral"))[0].status == "progressing"

    async def test_item9_is_addressed_to_the_practice_and_the_plan_holder(
        self, ts_worker, journey_sessions
    ):
        env, queue, _ = ts_worker
        t0 = await env.get_current_time()
        p = patient()
        handle = await start(env.client, queue, p)
        await handle.signal(
            PatientJourney.assessment,
            AssessmentEvent(
                event_id=str(uuid.uuid4()),
                occurred_at=t0.isoformat(),
                assessment_id="q1",
                instrument="PHQ-9",
                band="moderate",
                total=12,
                safety_flag=True,
                registered_practice="A81001",
                holder_org="RTH",
            ),
        )
        found = await eventually(lambda: alerts(handle, "safety.phq9_item9"), timeout=20)
        assert (found[0].severity, found[0].recipient_orgs) == ("urgent", ["A81001", "RTH"])
        assert found[0].evidence[0].detail == "PHQ-9 q1: item 9 answered above 0"


@pytest.fixture
async def own_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_time_skipping(test_server_existing_path=server_binary())
    yield env
    await env.shutdown()


class TestRunningJourneysTakeUpVersion2:
    async def test_a_journey_started_under_version_1_continues_under_version_2(
        self, own_env, ts_worker
    ):
        """A worker that does not yet know version 2 (the patch left off) starts a journey:
        three sessions of one physiotherapy course are frequent contact under version 1. The
        new worker takes over; `renew` hands the journey over to a new run under version 2,
        with its alerts, and version 2 judges what follows."""
        _, _, activities = ts_worker
        env = own_env  # two workers in turn: kept off the session's time-skipping server
        queue = f"ts-v1-{uuid.uuid4().hex[:8]}"
        p = patient()
        t0 = await env.get_current_time()
        course = [("submitted", 0), ("accepted", 1)] + [
            (s, 2 + 7 * i + d) for i in range(3) for s, d in (("booked", 0), ("attended", 3))
        ]

        def old_code(info):  # type: ignore[no-untyped-def]
            return info.patch_id not in ("alert-rules-v2", "patches-before-rules")

        async with Worker(
            env.client,
            task_queue=queue,
            workflows=[PatientJourney],
            activities=[activities.load_journey_rules, activities.record_alert_change],
            patch_activation_callback=old_code,
            # no sticky cache: the next worker gets the journey's next task at
            # once, as a newly deployed worker does once the old one has gone
            max_cached_workflows=0,
        ):
            handle = await start(env.client, queue, p)
            await rules_loaded(handle)  # old code: no query before (HAZ-100)
            for state, days in course:
                await handle.signal(
                    PatientJourney.referral_event,
                    ev(
                        "r1",
                        state,
                        t0 + timedelta(days=days),
                        category="msk_physiotherapy",
                        service="svc-msk",
                    ),
                )
            v1 = await eventually(lambda: alerts(handle, "looping.frequent_contact"), timeout=20)
            assert len(v1) == 1
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
            # version 2 now: a severe PHQ-9 with no mental health referral open is a pathway
            # prompt at the care plan's severity (version 1 raised an urgent safety alert);
            # the version 1 alert is carried over as it was
            await renewed.signal(
                PatientJourney.assessment,
                AssessmentEvent(
                    event_id=str(uuid.uuid4()),
                    occurred_at=t0.isoformat(),
                    assessment_id="q9",
                    instrument="PHQ-9",
                    band="severe",
                    total=24,
                ),
            )
            found = await eventually(lambda: alerts(renewed, "pathway.severe_mood"), timeout=20)
            assert found[0].severity == "high"
            view = await renewed.query(PatientJourney.journey)
            assert [a.rule for a in view.alerts if a.rule == "looping.frequent_contact"] == [
                "looping.frequent_contact"
            ]
            assert [a.rule for a in view.alerts if a.kind == "safety"] == []
            assert len(view.episodes) == 1
            await renewed.terminate("test over")
