"""The notifications consumer: what each event leaves behind (messages owed, partner
deliveries, the alert inbox), applied once however often it is delivered — in-process on the
real database, and through the running consumer process killed mid-batch."""

from __future__ import annotations

import json
import os
import signal
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer
from sqlalchemy import text

from devtools import stack
from services.notifications.effects import apply_event
from shared.db import unit_of_work
from shared.events.envelope import CloudEvent, make_event
from shared.events.journeys import ALERT_EVENTS
from shared.events.referrals import EVENT_FOR_STATE, ReferralFlagged
from shared.events.registry import REGISTRY, load_all
from shared.kafka_security import client_options
from shared.settings import Settings
from shared.topics import REFERRALS
from tests.conftest import auth
from tests.helpers import eventually, structured

load_all()


def _org() -> str:
    return f"ORG-{uuid.uuid4().hex[:8]}"


def referral_event(
    state: str,
    *,
    from_org: str = "GP-1",
    to_org: str = "PAIN-1",
    referral_id: str | None = None,
    patient: str | None = None,
    **extra: Any,
) -> CloudEvent:
    cls = EVENT_FOR_STATE.get(state, ReferralFlagged)
    data = cls(
        referral_id=referral_id or f"ref-{uuid.uuid4().hex[:10]}",
        from_org=from_org,
        to_org=to_org,
        to_service_id="svc-pain-mgmt",
        service_category="pain_management_programme",
        priority="routine",
        state=state,
        **extra,
    )
    return make_event(data, subject=patient or f"pt-{uuid.uuid4().hex[:16]}")


def alert_event(change: str, *, alert_id: str, seq: int, status: str, patient: str) -> CloudEvent:
    data = ALERT_EVENTS[change](
        alert_id=alert_id,
        kind="stalled",
        rule="not_triaged",
        severity="high",
        status=status,
        referral_ids=["ref-1"],
        seq=seq,
    )
    return make_event(data, subject=patient)


async def apply(sessions, settings: Settings, event: CloudEvent) -> None:  # type: ignore[no-untyped-def]
    async with unit_of_work(sessions) as session:
        await apply_event(
            session=session, event=event, data=REGISTRY.parse(event), settings=settings
        )


async def rows(sessions, sql: str, **params: Any) -> list[Any]:  # type: ignore[no-untyped-def]
    async with sessions() as session:
        return list((await session.exec(text(sql).bindparams(**params))).all())


async def subscribe(
    sessions,
    *,
    org: str,
    event_types: list[str],
    url: str,  # type: ignore[no-untyped-def]
    filters: dict[str, Any] | None = None,
    status: str = "active",
    deleted: bool = False,
) -> str:
    sub_id = f"sub_{uuid.uuid4().hex[:12]}"
    async with unit_of_work(sessions) as session:
        await session.exec(
            text(
                "INSERT INTO webhook_subscription (id, org, url, event_types, filters, status, "
                "secret, created_by, deleted_at) VALUES (:id, :org, :url, :types, "
                "CAST(:filters AS JSONB), :status, :secret, 'test', :deleted)"
            ).bindparams(
                id=sub_id,
                org=org,
                url=url,
                types=event_types,
                filters=json.dumps(filters or {}),
                status=status,
                secret="whsec_" + "A" * 32,
                deleted=datetime.now(UTC) if deleted else None,
            )
        )
    return sub_id


class TestMessagesOwed:
    async def test_a_new_referral_owes_the_receiving_service_one_message_with_codes_only(
        self, infra, notifications_sessions
    ):
        to_org = _org()
        event = referral_event("submitted", to_org=to_org)
        await apply(notifications_sessions, infra, event)
        msgs = await rows(
            notifications_sessions,
            "SELECT audience, template, org, referral_id, patient_id, context, "
            "status FROM message WHERE event_id = :e",
            e=event.id,
        )
        assert len(msgs) == 1
        m = msgs[0]
        assert (m.audience, m.template, m.org, m.status) == (
            "receiving_service",
            "referral-received",
            to_org,
            "pending",
        )
        assert m.referral_id == event.data["referral_id"]
        assert m.patient_id == event.subject
        assert set(m.context) <= {
            "referral_id",
            "from_org",
            "to_org",
            "to_service_id",
            "service_category",
            "priority",
            "state",
        }

    async def test_the_same_event_applied_twice_owes_one_message(
        self, infra, notifications_sessions
    ):
        event = referral_event("accepted")
        await apply(notifications_sessions, infra, event)
        await apply(notifications_sessions, infra, event)
        msgs = await rows(
            notifications_sessions,
            "SELECT audience, org FROM message WHERE event_id = :e",
            e=event.id,
        )
        assert [(m.audience, m.org) for m in msgs] == [("referrer", "GP-1")]

    async def test_booked_owes_the_person_and_their_carers(self, infra, notifications_sessions):
        event = referral_event("booked", appointment_at=datetime.now(UTC) + timedelta(days=9))
        await apply(notifications_sessions, infra, event)
        msgs = await rows(
            notifications_sessions,
            "SELECT audience, template, context FROM message WHERE event_id = :e ORDER BY audience",
            e=event.id,
        )
        assert [(m.audience, m.template) for m in msgs] == [
            ("carers", "appointment-booked"),
            ("person", "appointment-booked"),
        ]
        assert all("appointment_at" in m.context for m in msgs)

    async def test_an_attendance_owes_nobody_a_message_but_is_indexed(
        self, infra, notifications_sessions
    ):
        event = referral_event("attended")
        await apply(notifications_sessions, infra, event)
        assert (
            await rows(
                notifications_sessions, "SELECT 1 FROM message WHERE event_id = :e", e=event.id
            )
            == []
        )
        idx = await rows(
            notifications_sessions,
            "SELECT state, from_org, to_org FROM referral_index WHERE referral_id = :r",
            r=event.data["referral_id"],
        )
        assert [(i.state, i.from_org, i.to_org) for i in idx] == [("attended", "GP-1", "PAIN-1")]

    async def test_the_index_keeps_the_latest_state_when_events_arrive_out_of_order(
        self, infra, notifications_sessions
    ):
        rid = f"ref-{uuid.uuid4().hex[:10]}"
        later = referral_event("accepted", referral_id=rid)
        earlier = referral_event("submitted", referral_id=rid)
        earlier = earlier.model_copy(update={"time": later.time - timedelta(minutes=5)})
        await apply(notifications_sessions, infra, later)
        await apply(notifications_sessions, infra, earlier)
        idx = await rows(
            notifications_sessions, "SELECT state FROM referral_index WHERE referral_id = :r", r=rid
        )
        assert [i.state for i in idx] == ["accepted"]


class TestPartnerDeliveriesOwed:
    async def test_only_matching_subscriptions_of_the_organisations_concerned_get_a_delivery(
        self, infra, notifications_sessions
    ):
        ours, other = _org(), _org()
        submitted = "uk.waymark.referral.submitted"
        wanted = await subscribe(
            notifications_sessions,
            org=ours,
            event_types=[submitted],
            url="https://partner.example/hook",
        )
        wrong_type = await subscribe(
            notifications_sessions,
            org=ours,
            event_types=["uk.waymark.referral.accepted"],
            url="https://partner.example/hook2",
        )
        filtered_out = await subscribe(
            notifications_sessions,
            org=ours,
            event_types=[submitted],
            filters={"priorities": ["urgent"]},
            url="https://partner.example/hook3",
        )
        deleted = await subscribe(
            notifications_sessions,
            org=ours,
            event_types=[submitted],
            url="https://partner.example/hook4",
            deleted=True,
        )
        paused = await subscribe(
            notifications_sessions,
            org=ours,
            event_types=[submitted],
            url="https://partner.example/hook5",
            status="paused",
        )
        stranger = await subscribe(
            notifications_sessions,
            org=other,
            event_types=[submitted],
            url="https://other.example/hook",
        )
        event = referral_event("submitted", to_org=ours)
        await apply(notifications_sessions, infra, event)
        await apply(notifications_sessions, infra, event)  # redelivered: still one each
        got = await rows(
            notifications_sessions,
            "SELECT subscription_id, payload, status FROM webhook_delivery WHERE event_id = :e",
            e=event.id,
        )
        by_sub = {g.subscription_id: g for g in got}
        # a paused subscription's deliveries wait for it to resume
        assert set(by_sub) == {wanted, paused}
        assert not {wrong_type, filtered_out, deleted, stranger} & set(by_sub)
        assert by_sub[wanted].status == "pending"
        assert by_sub[wanted].payload == event.model_dump(mode="json")


class TestAlertInbox:
    async def test_the_newest_change_wins_whatever_order_they_arrive_in(
        self, infra, notifications_sessions
    ):
        alert_id = f"al-{uuid.uuid4().hex[:10]}"
        patient = f"pt-{uuid.uuid4().hex[:16]}"
        raised = alert_event("raised", alert_id=alert_id, seq=1, status="open", patient=patient)
        acked = alert_event(
            "acknowledged", alert_id=alert_id, seq=2, status="acknowledged", patient=patient
        )
        await apply(notifications_sessions, infra, raised)
        await apply(notifications_sessions, infra, acked)
        await apply(notifications_sessions, infra, raised)  # late redelivery of seq 1
        row = (
            await rows(
                notifications_sessions,
                "SELECT status, seq, ics, patient_id, acknowledged_at FROM alert "
                "WHERE alert_id = :a",
                a=alert_id,
            )
        )[0]
        assert (row.status, row.seq, row.ics, row.patient_id) == (
            "acknowledged",
            2,
            infra.ics,
            patient,
        )
        assert row.acknowledged_at is not None
        history = await rows(
            notifications_sessions,
            "SELECT change FROM alert_history WHERE alert_id = :a ORDER BY id",
            a=alert_id,
        )
        assert [h.change for h in history] == ["raised", "acknowledged"]

    async def test_a_resolved_alert_records_when(self, infra, notifications_sessions):
        alert_id = f"al-{uuid.uuid4().hex[:10]}"
        patient = f"pt-{uuid.uuid4().hex[:16]}"
        for change, seq, status in [("raised", 1, "open"), ("resolved", 2, "resolved")]:
            await apply(
                notifications_sessions,
                infra,
                alert_event(change, alert_id=alert_id, seq=seq, status=status, patient=patient),
            )
        row = (
            await rows(
                notifications_sessions,
                "SELECT status, resolved_at FROM alert WHERE alert_id = :a",
                a=alert_id,
            )
        )[0]
        assert row.status == "resolved" and row.resolved_at is not None


class TestConsumerKilledMidBatch:
    async def test_kill_9_mid_batch_loses_nothing_and_delivers_nothing_twice(
        self, running_apps, notifications_sessions, receiver
    ):
        """Hundreds of referral events for one partner's organisation; the running
        notifications consumer is killed with SIGKILL while it works through them and
        started again. Every event leaves exactly one message and one partner delivery, and
        the partner's real endpoint accepts each event exactly once."""
        s = running_apps
        org = _org()
        hook = receiver.hook(f"kill-{org}", org)
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{s.api_port('notifications')}", timeout=30
        ) as api:
            r = await api.post(
                "/webhook-subscriptions",
                headers=auth(s, role="partner", org=org),
                json={
                    "url": receiver.url(f"kill-{org}"),
                    "event_types": ["uk.waymark.referral.submitted"],
                },
            )
        assert r.status_code == 201, r.text
        sub, hook.secrets = r.json()["id"], [r.json()["secret"]]
        events = [referral_event("submitted", to_org=org) for _ in range(400)]
        producer = AIOKafkaProducer(
            **client_options(s), acks="all", enable_idempotence=True, linger_ms=20
        )
        await producer.start()
        try:
            for e in events:
                await producer.send(s.topic(REFERRALS), **structured(e))
            await producer.flush()
        finally:
            await producer.stop()

        async def owed() -> int:
            return (
                await rows(
                    notifications_sessions,
                    "SELECT count(*) AS n FROM webhook_delivery WHERE subscription_id = :s",
                    s=sub,
                )
            )[0].n

        # kill while some but not all of the events are done
        await eventually(lambda: _between(owed, 1, len(events) - 1), timeout=120, interval=0.02)
        part = stack.part_by_name("notifications-consumer")
        pid = stack.read_pid(part.pid_file(s))
        assert pid is not None
        os.killpg(pid, signal.SIGKILL)
        await eventually(lambda: stack.read_pid(part.pid_file(s)) is None, timeout=10)
        killed_at = await owed()
        await part.start(s)

        await eventually(lambda: _equals(owed, len(events)), timeout=180)
        ids = {e.id for e in events}
        deliveries = await rows(
            notifications_sessions,
            "SELECT event_id FROM webhook_delivery WHERE subscription_id = :s",
            s=sub,
        )
        messages = await rows(
            notifications_sessions, "SELECT event_id FROM message WHERE org = :o", o=org
        )
        inbox = await rows(
            notifications_sessions,
            "SELECT event_id FROM inbox WHERE event_id = ANY(:ids)",
            ids=list(ids),
        )
        assert sorted(d.event_id for d in deliveries) == sorted(ids)  # none missed, none twice
        assert sorted(m.event_id for m in messages) == sorted(ids)
        assert sorted(i.event_id for i in inbox) == sorted(ids)
        # the partner's endpoint: every event accepted once, every signature verified
        await eventually(lambda: len(hook.accepted()) >= len(ids), timeout=180)
        received = [g.payload["id"] for g in hook.accepted()]
        assert sorted(received) == sorted(ids)
        assert all(g.verified_by == [0] for g in hook.got)
        print(
            f"\nkilled the consumer with {killed_at}/{len(events)} events done; afterwards "
            f"{len(deliveries)} deliveries owed, {len(received)} accepted by the partner, "
            f"{len(messages)} messages for {len(ids)} events"
        )


async def _between(count, low: int, high: int) -> bool:  # type: ignore[no-untyped-def]
    return low <= await count() <= high


async def _equals(count, n: int) -> bool:  # type: ignore[no-untyped-def]
    return await count() == n
