"""Every journey rule on Temporal's time-skipping test server: weeks pass in milliseconds.
Activities are the real ones, writing to the real PostgreSQL read model and outbox."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text
from temporalio.client import Client, WorkflowHandle
from temporalio.worker import Replayer

from shared.db import unit_of_work
from shared.settings import Settings
from shared.temporal_codec import ensure_keyring
from tests.helpers import eventually
from tests.journeys.split_tasks import patch_ids, split_after_local_activities
from workflows.journeys import workflow_id
from workflows.journeys.rules import load_rules
from workflows.journeys.stalls import add_working_days
from workflows.journeys.state import AlertAction, AssessmentEvent, JourneyEvent
from workflows.journeys.workflows import JourneyInput, PatientJourney

RULES = load_rules()
HISTORIES = Path(__file__).with_name("histories")


def ev(
    referral_id: str,
    state: str,
    at: datetime,
    *,
    category: str = "pain_management_programme",
    service: str = "svc-pain",
    priority: str = "routine",
    reason: str | None = None,
    appointment_at: datetime | None = None,
    event_id: str | None = None,
) -> JourneyEvent:
    name = state.replace("_", "-")
    return JourneyEvent(
        event_id=event_id or str(uuid.uuid4()),
        event_type=f"uk.waymark.referral.{name}",
        occurred_at=at.isoformat(),
        referral_id=referral_id,
        state=state,
        from_org="GP-1",
        to_org="ORG-" + service[-6:].upper().replace("_", "-"),
        to_service_id=service,
        service_category=category,
        priority=priority,
        transition_reason=reason,
        appointment_at=appointment_at.isoformat() if appointment_at else None,
    )


async def start(
    client: Client,
    queue: str,
    patient: str,
    first: JourneyEvent | None = None,
    max_history: int = 2000,
) -> WorkflowHandle:
    kwargs = {}
    if first is not None:
        kwargs = {"start_signal": "referral_event", "start_signal_args": [first]}
    return await client.start_workflow(
        PatientJourney.run,
        JourneyInput(patient_id=patient, max_history_events=max_history),
        id=workflow_id(patient),
        task_queue=queue,
        **kwargs,
    )


async def rules_loaded(handle: WorkflowHandle) -> None:
    """Until the journey's first workflow task has completed with its rules' marker. A worker
    standing in for code from before HAZ-100's fix is not queried before then: a query waiting
    on the first task can split it, and that code cannot replay the split (HAZ-100)."""

    async def loaded() -> bool:
        events = [e async for e in handle.fetch_history_events()]
        return any(
            e.marker_recorded_event_attributes.marker_name == "core_local_activity" for e in events
        )

    await eventually(loaded, timeout=30)


async def alerts(handle: WorkflowHandle, rule: str | None = None):  # type: ignore[no-untyped-def]
    view = await handle.query(PatientJourney.journey)
    return [a for a in view.alerts if rule is None or a.rule == rule]


async def read_model(sessions, patient: str):  # type: ignore[no-untyped-def]
    async with unit_of_work(sessions) as s:
        return (
            await s.exec(
                text(
                    "SELECT alert_id, rule, status, seq, explanation FROM "
                    "journey_alert WHERE patient_id = :p ORDER BY raised_at"
                ).bindparams(p=patient)
            )
        ).all()


def patient() -> str:
    return f"pt_ts_{uuid.uuid4().hex[:12]}"


class TestStalls:
    async def test_not_triaged_is_raised_at_the_deadline_and_not_a_second_before(
        self, ts_worker, journey_sessions
    ):
        env, queue, _ = ts_worker
        t0 = await env.get_current_time()
        p = patient()
        handle = await start(env.client, queue, p, ev("r1", "submitted", t0))
        deadline = add_working_days(t0, RULES.triage_working_days_routine, RULES.bank_holidays)
        await env.sleep(deadline - t0 - timedelta(seconds=1))
        assert await alerts(handle, "stalled.not_triaged") == []
        await env.sleep(timedelta(seconds=2))
        found = await eventually(lambda: alerts(handle, "stalled.not_triaged"), timeout=20)
        assert found[0].status == "open" and found[0].severity == "high"
        assert "not triaged" in found[0].explanation
        rows = await eventually(lambda: read_model(journey_sessions, p), timeout=20)
        assert [(r.rule, r.status) for r in rows] == [("stalled.not_triaged", "open")]

    async def test_progress_cancels_the_triage_timer_and_moves_the_deadline(
        self, ts_worker, journey_sessions
    ):
        env, queue, _ = ts_worker
        t0 = await env.get_current_time()
        p = patient()
        handle = await start(env.client, queue, p, ev("r1", "submitted", t0))
        await env.sleep(timedelta(days=2))
        await handle.signal(
            PatientJourney.referral_event, ev("r1", "accepted", t0 + timedelta(days=2))
        )
        await env.sleep(timedelta(days=20))  # long past the triage deadline
        assert await alerts(handle, "stalled.not_triaged") == []
        # the new deadline is booking: 6 weeks after acceptance
        booking_due = t0 + timedelta(days=2) + timedelta(weeks=RULES.booking_weeks_default)
        now = await env.get_current_time()
        await env.sleep(booking_due - now - timedelta(seconds=1))
        assert await alerts(handle, "stalled.not_booked") == []
        await env.sleep(timedelta(seconds=2))
        found = await eventually(lambda: alerts(handle, "stalled.not_booked"), timeout=20)
        assert found[0].referral_id == "r1"

    async def test_a_stall_alert_closes_itself_when_the_referral_moves_on(self, ts_worker):
        env, queue, _ = ts_worker
        t0 = await env.get_current_time()
        handle = await start(env.client, queue, patient(), ev("r1", "submitted", t0))
        await env.sleep(timedelta(days=20))
        await eventually(lambda: alerts(handle, "stalled.not_triaged"), timeout=20)
        await handle.signal(
            PatientJourney.referral_event, ev("r1", "accepted", await env.get_current_time())
        )
        # stalls are judged once the referral's events have settled
        await env.sleep(timedelta(seconds=RULES.settle_seconds + 1))

        async def resolved():  # type: ignore[no-untyped-def]
            found = await alerts(handle, "stalled.not_triaged")
            return found if found and found[0].status == "resolved" else None

        found = await eventually(resolved, timeout=20)
        assert "moved on" in (found[0].resolution or "")

    async def test_booked_with_no_outcome_after_the_appointment(self, ts_worker):
        env, queue, _ = ts_worker
        t0 = await env.get_current_time()
        appt = t0 + timedelta(days=7)
        handle = await start(env.client, queue, patient(), ev("r1", "submitted", t0))
        await handle.signal(PatientJourney.referral_event, ev("r1", "accepted", t0))
        await handle.signal(
            PatientJourney.referral_event, ev("r1", "booked", t0, appointment_at=appt)
        )
        due = add_working_days(appt, RULES.outcome_grace_working_days, RULES.bank_holidays)
        await env.sleep(due - t0 - timedelta(seconds=1))
        assert await alerts(handle, "stalled.no_outcome") == []
        await env.sleep(timedelta(seconds=2))
        await eventually(lambda: alerts(handle, "stalled.no_outcome"), timeout=20)

    async def test_referral_to_treatment_beyond_18_weeks(self, ts_worker):
        env, queue, _ = ts_worker
        t0 = await env.get_current_time()
        handle = await start(env.client, queue, patient(), ev("r1", "submitted", t0))
        # keep it moving so only the pathway clock is late
        for week, state in (
            (1, "accepted"),
            (5, "booked"),
            (9, "did_not_attend"),
            (10, "booked"),
            (15, "did_not_attend"),
            (16, "booked"),
        ):
            await env.sleep(t0 + timedelta(weeks=week) - await env.get_current_time())
            await handle.signal(
                PatientJourney.referral_event,
                ev(
                    "r1",
                    state,
                    t0 + timedelta(weeks=week),
                    appointment_at=t0 + timedelta(weeks=week + 3),
                ),
            )
        await env.sleep(t0 + timedelta(weeks=18, seconds=1) - await env.get_current_time())
        found = await eventually(lambda: alerts(handle, "stalled.rtt_breach"), timeout=20)
        assert "18 weeks" in found[0].explanation


class TestEscalationAndActions:
    async def test_an_unacknowledged_alert_escalates_after_its_hours(self, ts_worker):
        env, queue, _ = ts_worker
        t0 = await env.get_current_time()
        handle = await start(env.client, queue, patient())
        await handle.signal(
            PatientJourney.assessment,
            AssessmentEvent(
                event_id=str(uuid.uuid4()),
                occurred_at=t0.isoformat(),
                assessment_id="a1",
                instrument="PHQ-9",
                band="moderate",
                total=12,
                item9=1,
            ),
        )
        found = await eventually(lambda: alerts(handle, "safety.phq9_item9"), timeout=20)
        assert found[0].severity == "urgent" and found[0].status == "open"
        await env.sleep(timedelta(hours=RULES.escalation_hours["urgent"]) - timedelta(seconds=2))
        assert (await alerts(handle, "safety.phq9_item9"))[0].status == "open"
        await env.sleep(timedelta(seconds=4))

        async def escalated():  # type: ignore[no-untyped-def]
            a = (await alerts(handle, "safety.phq9_item9"))[0]
            return a if a.status == "escalated" else None

        await eventually(escalated, timeout=20)

    async def test_a_start_back_high_result_is_a_pathway_prompt_on_a_new_journey(self, ts_worker):
        """The missed alert of issue #15: STarT Back's high-risk band is `high` (the one
        vocabulary); a journey started today prompts the stratified-care pathway at the care
        plan's severity, and its history replays."""
        env, queue, _ = ts_worker
        t0 = await env.get_current_time()
        handle = await start(env.client, queue, patient())
        await handle.signal(
            PatientJourney.assessment,
            AssessmentEvent(
                event_id=str(uuid.uuid4()),
                occurred_at=t0.isoformat(),
                assessment_id="sb1",
                instrument="STarT-Back",
                band="high",
                total=8,
            ),
        )
        await handle.signal(
            PatientJourney.assessment,
            AssessmentEvent(
                event_id=str(uuid.uuid4()),
                occurred_at=t0.isoformat(),
                assessment_id="sb2",
                instrument="STarT-Back",
                band="medium",
                total=5,
            ),
        )
        found = await eventually(lambda: alerts(handle, "pathway.start_back_high"), timeout=20)
        assert [(a.kind, a.severity, "high risk band" in a.explanation) for a in found] == [
            ("pathway", "high", True)
        ]
        await Replayer(workflows=[PatientJourney]).replay_workflow(await handle.fetch_history())

    async def test_an_acknowledged_alert_does_not_escalate_and_a_resolution_records_why(
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
                assessment_id="a1",
                instrument="PHQ-9",
                band="severe",
                total=22,
                item9=0,
            ),
        )
        alert = (await eventually(lambda: alerts(handle, "pathway.severe_mood"), timeout=20))[0]
        ack = AlertAction(
            event_id=str(uuid.uuid4()),
            alert_id=alert.alert_id,
            action="acknowledge",
            actor="coord-1",
            occurred_at=t0.isoformat(),
        )
        await handle.signal(PatientJourney.alert_action, ack)
        await handle.signal(PatientJourney.alert_action, ack)  # a repeat changes nothing
        await env.sleep(timedelta(days=3))
        a = (await alerts(handle, "pathway.severe_mood"))[0]
        assert a.status == "acknowledged" and a.assignee == "coord-1"
        await handle.signal(
            PatientJourney.alert_action,
            AlertAction(
                event_id=str(uuid.uuid4()),
                alert_id=alert.alert_id,
                action="resolve",
                actor="coord-1",
                occurred_at=(await env.get_current_time()).isoformat(),
                reason="spoke to the person; crisis plan in place",
            ),
        )

        async def resolved_in_read_model():  # type: ignore[no-untyped-def]
            rows = await read_model(journey_sessions, p)
            return rows if rows and rows[0].status == "resolved" else None

        rows = await eventually(resolved_in_read_model, timeout=20)
        assert rows[0].seq == 3  # raised, acknowledged, resolved
        async with unit_of_work(journey_sessions) as s:
            changes = (
                (
                    await s.exec(
                        text(
                            "SELECT change FROM journey_alert_change WHERE alert_id = :a "
                            "ORDER BY seq"
                        ).bindparams(a=alert.alert_id)
                    )
                )
                .scalars()
                .all()
            )
            events = (
                (
                    await s.exec(
                        text(
                            "SELECT event_type FROM outbox WHERE key = :p ORDER BY seq"
                        ).bindparams(p=p)
                    )
                )
                .scalars()
                .all()
            )
        assert changes == ["raised", "acknowledged", "resolved"]
        assert events == [
            "uk.waymark.journey.alert.raised",
            "uk.waymark.journey.alert.acknowledged",
            "uk.waymark.journey.alert.resolved",
        ]
        assert (await alerts(handle, "pathway.severe_mood"))[
            0
        ].resolution == "spoke to the person; crisis plan in place"

    async def test_a_snoozed_alert_reopens_when_the_snooze_ends(self, ts_worker):
        env, queue, _ = ts_worker
        t0 = await env.get_current_time()
        handle = await start(env.client, queue, patient())
        await handle.signal(
            PatientJourney.assessment,
            AssessmentEvent(
                event_id=str(uuid.uuid4()),
                occurred_at=t0.isoformat(),
                assessment_id="a1",
                instrument="GAD-7",
                band="severe",
                total=18,
            ),
        )
        alert = (await eventually(lambda: alerts(handle, "pathway.severe_mood"), timeout=20))[0]
        await handle.signal(
            PatientJourney.alert_action,
            AlertAction(
                event_id=str(uuid.uuid4()),
                alert_id=alert.alert_id,
                action="snooze",
                actor="coord-1",
                occurred_at=t0.isoformat(),
                until=(t0 + timedelta(hours=6)).isoformat(),
            ),
        )
        await env.sleep(timedelta(hours=5))
        assert (await alerts(handle, "pathway.severe_mood"))[0].status == "snoozed"
        await env.sleep(timedelta(hours=1, seconds=5))

        async def reopened():  # type: ignore[no-untyped-def]
            a = (await alerts(handle, "pathway.severe_mood"))[0]
            return a if a.status == "open" else None

        await eventually(reopened, timeout=20)


class TestDedupeOrderAndContinuity:
    async def test_repeated_and_out_of_order_events_apply_once_in_time_order(self, ts_worker):
        env, queue, _ = ts_worker
        t0 = await env.get_current_time()
        handle = await start(env.client, queue, patient())
        accepted = ev("r1", "accepted", t0 + timedelta(hours=3))
        submitted = ev("r1", "submitted", t0)
        for e in (accepted, submitted, accepted, submitted):  # later one first, then repeats
            await handle.signal(PatientJourney.referral_event, e)
        await env.sleep(timedelta(days=30))
        view = await handle.query(PatientJourney.journey)
        assert view.events_applied == 2 and view.duplicates_ignored == 2
        assert [s.state for s in view.episodes[0].steps] == ["submitted", "accepted"]
        assert [a.rule for a in view.alerts if a.rule == "stalled.not_triaged"] == []

    async def test_continue_as_new_keeps_the_journey_and_its_alerts(self, ts_worker):
        env, queue, _ = ts_worker
        t0 = await env.get_current_time()
        p = patient()
        handle = await start(env.client, queue, p, max_history=40)
        first_run = (await handle.describe()).run_id
        ids = []
        for i in range(25):
            e = ev(
                f"r{i}",
                "submitted",
                t0 + timedelta(minutes=i),
                category=f"cat_{i % 2}",
                service=f"svc-{i % 2}",
            )
            ids.append(e.event_id)
            await handle.signal(PatientJourney.referral_event, e)
        # a repeat of an early event after the hand-over is still recognised
        await handle.signal(
            PatientJourney.referral_event, ev("r0", "submitted", t0, event_id=ids[0])
        )

        async def carried_over():  # type: ignore[no-untyped-def]
            desc = await env.client.get_workflow_handle(workflow_id(p)).describe()
            return desc if desc.run_id != first_run else None

        await eventually(carried_over, timeout=30)
        view = await env.client.get_workflow_handle(workflow_id(p)).query(PatientJourney.journey)
        assert len(view.episodes) == 25 and view.events_applied == 25
        assert view.duplicates_ignored == 1
        # 25 episodes minutes apart: a frequent-contact alert for every run of 4, carried over
        assert len([a for a in view.alerts if a.rule == "looping.frequent_contact"]) == 25 // 4


class TestReplay:
    async def test_a_recorded_run_replays_with_todays_code(self, ts_worker):
        env, queue, _ = ts_worker
        t0 = await env.get_current_time()
        handle = await start(env.client, queue, patient(), ev("r1", "submitted", t0))
        await env.sleep(timedelta(days=15))
        await eventually(lambda: alerts(handle, "stalled.not_triaged"), timeout=20)
        await handle.signal(
            PatientJourney.referral_event,
            ev("r1", "returned", await env.get_current_time(), reason="refer-elsewhere"),
        )
        await handle.signal(
            PatientJourney.referral_event, ev("r2", "submitted", await env.get_current_time())
        )
        await eventually(lambda: alerts(handle, "looping.re_referral"), timeout=20)
        history = await handle.fetch_history()
        await Replayer(workflows=[PatientJourney]).replay_workflow(history)

    async def test_a_run_replays_when_a_task_ended_right_after_the_rules_were_loaded(
        self, ts_worker
    ):
        # HAZ-100: a busy worker can complete a workflow task with the rules' local activity
        # marker and run the code after it in the next task; today's code must replay that
        env, queue, _ = ts_worker
        t0 = await env.get_current_time()
        handle = await start(env.client, queue, patient(), ev("r1", "submitted", t0))
        await env.sleep(timedelta(days=15))
        await eventually(lambda: alerts(handle, "stalled.not_triaged"), timeout=20)
        split, boundaries = split_after_local_activities(await handle.fetch_history())
        assert boundaries >= 1
        await Replayer(workflows=[PatientJourney]).replay_workflow(split)

    async def test_the_split_is_the_shape_the_100k_run_recorded(self, tmp_path: Path):
        # histories recorded before the fix decided their patches after the local activity:
        # split the same way, they fail to replay exactly as the bench's journeys did (those
        # journeys are repaired by a reset: workflows/journeys/repair.py)
        from temporalio.client import WorkflowHistory

        recorded = HISTORIES / "contacts-frequent-attender-while-waiting.json"
        history = WorkflowHistory.from_json("old", recorded.read_text())
        split, boundaries = split_after_local_activities(history)
        assert boundaries >= 1
        await Replayer(workflows=[PatientJourney]).replay_workflow(history)
        with pytest.raises(Exception, match="patch marker encountered"):
            await Replayer(workflows=[PatientJourney]).replay_workflow(split)

    async def test_every_committed_history_replays(self, tmp_path: Path):
        files = sorted(HISTORIES.glob("*.json"))
        assert files, "recorded histories live in tests/journeys/histories"
        from temporalio.client import WorkflowHistory

        from shared.temporal_client import data_converter

        # through the payload codec, as the worker reads: recorded histories are plaintext,
        # which the codec passes through
        keys = tmp_path / "ring.json"
        ensure_keyring(keys)
        codec = data_converter(Settings(temporal_codec_keys_path=keys))
        replayer = Replayer(workflows=[PatientJourney], data_converter=codec)
        patches_first = 0
        for f in files:
            # raises if today's code would decide differently on this recorded history
            history = WorkflowHistory.from_json(f.stem, f.read_text())
            await replayer.replay_workflow(history)
            if "patches-before-rules" in patch_ids(history):
                # recorded after HAZ-100's fix: it must also replay with its tasks split after
                # the local activity, as a busy worker may have recorded it
                patches_first += 1
                await replayer.replay_workflow(split_after_local_activities(history)[0])
        assert patches_first, "at least one history recorded with the patches first"
