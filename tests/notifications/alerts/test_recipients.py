"""Alerts addressed to organisations besides the coordinators (#15): a PHQ-9 item 9 alert
reaches the person's GP practice and the plan holder (team inbox, staff who chose email,
partner subscriptions), exactly once per event; an escalated one reaches the ICS's duty rota.
Texts carry codes and ids, never a name or an NHS number."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy import text

from services.notifications import audience
from services.notifications.config import DutyRota, duty_rota
from services.notifications.effects import apply_event
from services.notifications.messages.templates import Templates
from shared.db import unit_of_work
from shared.events.envelope import CloudEvent, make_event
from shared.events.journeys import ALERT_EVENTS
from shared.kafka_security import client_options
from shared.settings import Settings
from shared.topics import JOURNEYS
from tests.conftest import auth
from tests.helpers import eventually, structured
from tests.notifications.message_support import mails_to, running, unique_email

PREFIX = audience.ALERT_PREFIX
RAISED, ESCALATED = f"{PREFIX}raised", f"{PREFIX}escalated"


def org(prefix: str = "GP") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8].upper()}"


def alert_event(
    change: str,
    *,
    orgs: list[str],
    rule: str = "safety.phq9_item9",
    seq: int = 1,
    patient_id: str | None = None,
    assignee: str | None = None,
) -> CloudEvent:
    pid = patient_id or f"pt_{uuid.uuid4().hex[:16]}"
    model = ALERT_EVENTS[change]
    status = {"raised": "open", "escalated": "escalated"}.get(change, change)
    data = model(
        alert_id=f"{pid}:{rule}",
        kind=rule.split(".")[0],
        rule=rule,  # type: ignore[arg-type]
        severity="urgent",
        status=status,
        seq=seq,
        recipient_orgs=orgs,
        assignee=assignee,
    )
    return make_event(data, subject=pid)


async def apply(sessions, settings: Settings, event: CloudEvent) -> None:  # type: ignore[no-untyped-def]
    from shared.events.registry import REGISTRY, load_all

    load_all()
    async with unit_of_work(sessions) as session:
        await apply_event(
            session=session, event=event, data=REGISTRY.parse(event), settings=settings
        )


async def rows(sessions, sql: str, **params: Any) -> list[Any]:  # type: ignore[no-untyped-def]
    async with sessions() as session:
        return list((await session.exec(text(sql).bindparams(**params))).all())  # type: ignore[call-overload]


class TestRoutes:
    def test_a_new_alert_with_addressees_owes_them_one_message(self) -> None:
        [route] = audience.alert_routes(
            RAISED, rule="safety.phq9_item9", recipient_orgs=["GP-1", "HOLD-1"]
        )
        assert (route.audience, route.template) == ("alert_orgs", "alert-for-organisation")
        assert audience.alert_routes(RAISED, rule="safety.phq9_item9", recipient_orgs=[]) == ()

    @pytest.mark.parametrize(
        "change", ["acknowledged", "assigned", "snoozed", "resolved", "reopened", "progressing"]
    )
    def test_later_changes_owe_the_addressees_no_message(self, change: str) -> None:
        assert (
            audience.alert_routes(
                f"{PREFIX}{change}", rule="safety.phq9_item9", recipient_orgs=["GP-1"]
            )
            == ()
        )

    def test_an_escalated_phq9_item9_alert_goes_to_the_duty_rota_others_do_not(self) -> None:
        [route] = audience.alert_routes(ESCALATED, rule="safety.phq9_item9", recipient_orgs=[])
        assert route.audience == "duty_rota"
        assert audience.alert_routes(ESCALATED, rule="stalled.not_triaged", recipient_orgs=[]) == ()

    def test_partners_get_only_the_types_they_asked_for_of_alerts_addressed_to_them(self) -> None:
        ok = dict(
            org="GP-1", event_types=[RAISED], event_type=RAISED, recipient_orgs=["GP-1", "HOLD-1"]
        )
        assert audience.alert_subscription_matches(**ok)  # type: ignore[arg-type]
        assert not audience.alert_subscription_matches(**{**ok, "org": "GP-2"})  # type: ignore[arg-type]
        assert not audience.alert_subscription_matches(**{**ok, "event_types": [ESCALATED]})  # type: ignore[arg-type]
        assigned = f"{PREFIX}assigned"
        assert not audience.alert_subscription_matches(
            **{**ok, "event_types": [assigned], "event_type": assigned}
        )  # type: ignore[arg-type]

    def test_the_partner_payload_leaves_out_the_coordinator_assigned(self) -> None:
        event = alert_event("raised", orgs=["GP-1"], assignee="coord-1").model_dump(mode="json")
        payload = audience.alert_partner_payload(event)
        assert "assignee" not in payload["data"] and payload["id"] == event["id"]
        assert payload["data"]["recipient_orgs"] == ["GP-1"]


class TestQuietHours:
    @pytest.mark.parametrize(
        ("severity", "waits"), [("urgent", False), ("high", True), ("medium", True), (None, True)]
    )
    def test_only_an_urgent_alert_goes_at_once_in_quiet_hours(self, severity, waits) -> None:
        context = {"severity": severity} if severity else {}
        assert audience.alert_waits_for_quiet_hours(context) is waits


class TestTexts:
    def values(self, **extra: Any) -> dict[str, Any]:
        ctx = audience.alert_message_context(
            alert_event("raised", orgs=["GP-1"]).model_dump(mode="json")["data"]
        )
        return {**ctx, **extra}

    def test_the_team_inbox_names_the_person_by_pseudonym_only(self) -> None:
        r = Templates().render(
            "alert-for-organisation",
            variant="plain",
            language="en",
            values=self.values(org="GP-1", person_ref="pt_abc"),
        )
        assert r.subject == "Urgent: a Waymark alert for GP-1"
        assert "thoughts of being better off dead" in r.text
        assert "crisis plan" in r.text and "pt_abc" in r.text

    def test_an_email_says_where_to_look_without_naming_anyone(self) -> None:
        r = Templates().render(
            "alert-for-organisation", variant="plain", language="en", values=self.values(org="GP-1")
        )
        assert "pt_" not in r.text and "Sign in to Waymark" in r.text

    def test_the_duty_rota_hears_it_was_not_acknowledged(self) -> None:
        r = Templates().render(
            "alert-escalated-duty-rota",
            variant="plain",
            language="en",
            values=self.values(rota_name="North ICS duty rota"),
        )
        assert "North ICS duty rota" in r.subject and "within the hour" in r.text


class TestDutyRotaConfiguration:
    def test_it_is_read_from_waymark_duty_rota_variables(
        self, settings: Settings, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("WAYMARK_DUTY_ROTA_NAME", "North ICS duty rota")
        monkeypatch.setenv("WAYMARK_DUTY_ROTA_ORG", "QXX-DUTY")
        monkeypatch.setenv("WAYMARK_DUTY_ROTA_EMAIL", "duty@example.nhs.uk")
        rota = duty_rota(settings)
        assert (rota.name, rota.org_code(settings), rota.address(settings)) == (
            "North ICS duty rota",
            "QXX-DUTY",
            "duty@example.nhs.uk",
        )

    def test_locally_a_made_up_rota_stands_in(self, settings: Settings) -> None:
        rota = DutyRota(name="x", org="", email="")
        assert rota.org_code(settings) == f"{settings.ics}-DUTY"[:20]
        assert rota.address(settings) == "duty-rota@waymark.invalid"

    def test_production_without_an_email_refuses_to_start(self, settings: Settings) -> None:
        prod = settings.model_copy(update={"deployment_mode": "production"})
        with pytest.raises(ValueError, match="WAYMARK_DUTY_ROTA_EMAIL"):
            DutyRota(email="").address(prod)

    @pytest.mark.parametrize(
        "field,value", [("email", "not-an-address"), ("org", "has spaces"), ("name", "")]
    )
    def test_bad_values_are_refused(self, field: str, value: str) -> None:
        with pytest.raises(ValueError):
            DutyRota(**{field: value})


class TestQueued:
    async def test_a_raised_alert_queues_one_message_and_each_subscribed_partner_once(
        self, settings: Settings, notifications_client, notifications_sessions
    ) -> None:  # type: ignore[no-untyped-def]
        gp, holder, other = org("GP"), org("HOLD"), org("GP")

        async def subscribe(o: str, types: list[str]) -> str:
            r = await notifications_client.post(
                "/webhook-subscriptions",
                headers=auth(settings, role="partner", org=o),
                json={"url": "http://127.0.0.1:9/hooks", "event_types": types},
            )
            assert r.status_code == 201, r.text
            return str(r.json()["id"])

        gp_sub = await subscribe(gp, [RAISED, ESCALATED])
        await subscribe(holder, ["uk.waymark.referral.accepted"])  # not alerts
        await subscribe(other, [RAISED])  # not addressed to it
        event = alert_event("raised", orgs=[gp, holder], assignee="coord-x")
        await apply(notifications_sessions, settings, event)
        await apply(notifications_sessions, settings, event)  # a redelivery changes nothing
        msgs = await rows(
            notifications_sessions,
            "SELECT audience, template, patient_id, context FROM message WHERE event_id = :e",
            e=event.id,
        )
        assert [(m.audience, m.template, m.patient_id) for m in msgs] == [
            ("alert_orgs", "alert-for-organisation", event.subject)
        ]
        assert msgs[0].context["recipient_orgs"] == sorted([gp, holder])
        hooks = await rows(
            notifications_sessions,
            "SELECT subscription_id, payload FROM webhook_delivery WHERE event_id = :e",
            e=event.id,
        )
        assert [h.subscription_id for h in hooks] == [gp_sub]
        assert hooks[0].payload["type"] == RAISED
        assert "assignee" not in hooks[0].payload["data"]

    async def test_an_escalated_phq9_item9_alert_queues_the_duty_rota_message(
        self, settings: Settings, notifications_sessions
    ) -> None:  # type: ignore[no-untyped-def]
        pid = f"pt_{uuid.uuid4().hex[:16]}"
        escalated = alert_event("escalated", orgs=["GP-1"], seq=2, patient_id=pid)
        await apply(notifications_sessions, settings, escalated)
        msgs = await rows(
            notifications_sessions,
            "SELECT audience FROM message WHERE event_id = :e",
            e=escalated.id,
        )
        assert [m.audience for m in msgs] == ["duty_rota"]
        stall = alert_event("escalated", orgs=[], rule="stalled.not_triaged", seq=2)
        await apply(notifications_sessions, settings, stall)
        assert (
            await rows(
                notifications_sessions, "SELECT 1 FROM message WHERE event_id = :e", e=stall.id
            )
            == []
        )


class TestDelivered:
    """On the running stack: the journeys topic on the real broker, the notifications consumer,
    the dispatcher, the dev SMTP sink."""

    async def test_the_practice_and_holder_inboxes_and_opted_in_staff_then_the_rota(
        self, running_apps
    ) -> None:  # type: ignore[no-untyped-def]
        s: Settings = running_apps
        gp, holder = org("GP"), org("HOLD")
        address, quiet_user = unique_email("gp-duty"), unique_email("in-app-only")
        gp_user = auth(s, role="clinician", org=gp, sub=f"gp-{uuid.uuid4().hex[:6]}")
        inbox_only = auth(s, role="clinician", org=gp, sub=f"gp-{uuid.uuid4().hex[:6]}")
        # the GP is in their quiet hours now: an urgent alert's email does not wait for them
        here = datetime.now(ZoneInfo(s.quiet_hours_timezone))
        quiet = {
            "quiet_start": (here - timedelta(hours=1)).strftime("%H:%M"),
            "quiet_end": (here + timedelta(hours=1)).strftime("%H:%M"),
        }
        async with running(s, "notifications") as http:
            for headers, prefs in (
                (gp_user, {"channels": ["in_app", "email"], "email": address, **quiet}),
                (inbox_only, {"channels": ["in_app"], "email": quiet_user}),
            ):
                r = await http.put(
                    "/preferences/me", json=prefs, headers={**headers, "If-Match": 'W/"0"'}
                )
                assert r.status_code == 200, r.text
        pid = f"pt_{uuid.uuid4().hex[:16]}"
        raised = alert_event("raised", orgs=[gp, holder], patient_id=pid)
        started = datetime.now(UTC)
        await publish(s, raised)

        async def team_items(headers: dict[str, str]) -> list[dict[str, Any]] | None:
            async with running(s, "notifications") as http:
                items = (await http.get("/inbox", headers=headers)).json()["items"]
            return [i for i in items if pid in i["body"]] or None

        [gp_item] = await eventually(lambda: team_items(gp_user), timeout=120)
        assert gp_item["owner"] == f"org:{gp}" and gp_item["subject"].startswith("Urgent")
        holder_staff = auth(s, role="service_staff", org=holder)
        [holder_item] = await eventually(lambda: team_items(holder_staff), timeout=60)
        assert holder_item["owner"] == f"org:{holder}"
        [mail] = await eventually(lambda: mails_to(s, address), timeout=60)
        assert mail.subject == f"Urgent: a Waymark alert for {gp}"
        assert pid not in mail.text and "crisis plan" in mail.text
        assert mails_to(s, quiet_user) == []  # chose the inbox only

        await publish(s, alert_event("escalated", orgs=[gp, holder], seq=2, patient_id=pid))
        rota = duty_rota(s)
        rota_org = rota.org_code(s)
        rota_staff = auth(s, role="coordinator", org=rota_org, ics=s.ics)
        [rota_item] = await eventually(lambda: team_items(rota_staff), timeout=120)
        assert rota.name in rota_item["subject"]

        def rota_mails() -> list[Any]:
            return [
                m
                for m in mails_to(s, rota.address(s))
                if rota.name in m.subject
                and datetime.fromtimestamp(m.path.stat().st_mtime, UTC) >= started
            ]

        assert await eventually(rota_mails, timeout=60)
        # exactly once: the team inbox has one item per organisation for the new alert
        assert len(await team_items(gp_user) or []) == 1


async def publish(s: Settings, event: CloudEvent) -> None:
    """Put an alert event on the journeys topic as the journey's activity does (keyed by the
    person)."""
    producer = AIOKafkaProducer(**client_options(s), acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(s.topic(JOURNEYS), **structured(event))
    finally:
        await producer.stop()
