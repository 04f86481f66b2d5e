"""People's messages end to end on the running stack: a referral changes over HTTP, the
referrals relay publishes the event, the notifications consumer queues the message, the
dispatcher fetches the personal details from the owning APIs and sends it through the dev
sinks - a real SMTP server (aiosmtpd) keeping .eml files and a GOV.UK Notify-shaped SMS API
checking its JWT - or into the in-app inbox; the delivery log says what happened."""

from __future__ import annotations

import json
import socket
import uuid
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from aiokafka import AIOKafkaProducer
from sqlalchemy import text

from services.notifications.messages.domain import appointment_words, staff_key
from services.notifications.messages.sender import Claimed, MessageSender
from shared.db import unit_of_work
from shared.kafka_security import client_options
from shared.topics import REFERRALS
from tests.conftest import auth
from tests.helpers import eventually, read_topic
from tests.notifications.message_support import (
    mails_to,
    message_when,
    messages_of,
    move,
    new_care_plan,
    new_referral,
    one_mail,
    running,
    set_preferences,
    texts_to,
    unique_email,
    unique_mobile,
)
from tests.referrals.support import new_parties


async def sql(sessions, statement: str, **params):  # type: ignore[no-untyped-def]
    async with unit_of_work(sessions) as session:
        result = await session.exec(text(statement).bindparams(**params))  # type: ignore[call-overload]
        return list(result.all()) if result.returns_rows else []


class TestTheReferrer:
    async def test_hears_of_acceptance_by_email_exactly_once(
        self, running_apps, referrals_sessions
    ) -> None:  # type: ignore[no-untyped-def]
        s = running_apps
        p = await new_parties(s, referrals_sessions)
        address = unique_email("referrer")
        await set_preferences(s, p, channels=["email", "in_app"], email=address)
        referral = await new_referral(s, p)
        await move(s, p, referral, "accept")
        mail = await one_mail(s, address)
        ref = referral["id"][:8].upper()
        assert mail.subject == f"Referral {ref} accepted by pain management programme"
        assert (
            f"Your referral of {referral['given_name']} to pain management programme "
            "has been accepted." in mail.text
        )
        assert referral["family_name"] not in mail.text  # no more than the message needs
        assert mail.message["Auto-Submitted"] == "auto-generated"
        logged = await message_when(
            s, referral["id"], template="referral-accepted", audience="referrer", status="sent"
        )
        [delivery] = logged["deliveries"]
        assert (delivery["recipient"], delivery["channel"], delivery["status"]) == (
            f"user:{p.referrer_user}",
            "email",
            "sent",
        )
        # the provider's reference is the SMTP server's queue id: here, the file it kept
        assert delivery["provider_ref"] == mail.path.name
        assert mail.message["X-Waymark-Delivery"] == delivery["id"]
        # sent: nothing more goes out for it, and the in-app fallback was not used
        async with running(s, "notifications") as http:
            inbox = (await http.get("/inbox", headers=p.referrer(s))).json()
        assert inbox["total"] == 0
        assert len(mails_to(s, address)) == 1

    async def test_the_same_event_twice_on_kafka_is_still_one_mail(
        self, running_apps, referrals_sessions
    ) -> None:  # type: ignore[no-untyped-def]
        s = running_apps
        p = await new_parties(s, referrals_sessions)
        address = unique_email("twice")
        await set_preferences(s, p, channels=["email"], email=address)
        referral = await new_referral(s, p)
        referral = await move(s, p, referral, "accept")
        await one_mail(s, address)
        topic = s.topic(REFERRALS)

        def accepted(rec) -> bool:  # type: ignore[no-untyped-def]
            try:  # tests/faults puts messages on the topic that are not events at all
                e = json.loads(rec.value)
                return e["data"]["referral_id"] == referral["id"] and e["type"].endswith(
                    ".accepted"
                )
            except (ValueError, TypeError, KeyError, AttributeError):
                return False

        records = await read_topic(s, topic, until=lambda rs: any(accepted(r) for r in rs))
        original = next(r for r in records if accepted(r))
        producer = AIOKafkaProducer(**client_options(s), acks="all")
        await producer.start()
        try:  # the very same record again, as a relay restarted mid-batch would send it
            await producer.send_and_wait(
                topic,
                value=original.value,
                key=original.key,
                partition=original.partition,
                headers=list(original.headers),
            )
        finally:
            await producer.stop()
        # a later event of the same patient, on the same partition, is consumed after the
        # duplicate: once its message exists, the duplicate has been seen
        await move(s, p, referral, "book")
        await message_when(
            s,
            referral["id"],
            template="appointment-booked",
            audience="person",
            status=("sent", "failed"),
        )
        accepted_msgs = [
            m for m in await messages_of(s, referral["id"]) if m["template"] == "referral-accepted"
        ]
        assert len(accepted_msgs) == 1 and accepted_msgs[0]["status"] == "sent"
        assert len(accepted_msgs[0]["deliveries"]) == 1
        assert len(mails_to(s, address)) == 1

    async def test_a_provider_refusing_the_number_fails_at_once_and_visibly(
        self, running_apps, referrals_sessions, notifications_sessions
    ) -> None:  # type: ignore[no-untyped-def]
        s = running_apps
        p = await new_parties(s, referrals_sessions)
        # a number recorded before today's checks (the API refuses it now): only the
        # provider can say no, with a 400
        await sql(
            notifications_sessions,
            """
            INSERT INTO preference (user_id, org, channels, mobile)
            VALUES (:u, :o, ARRAY['sms'], '+15551234567')""",
            u=staff_key(p.referrer_user, p.referrer_org),
            o=p.referrer_org,
        )
        referral = await new_referral(s, p)
        await move(s, p, referral, "accept")
        logged = await message_when(
            s,
            referral["id"],
            template="referral-accepted",
            audience="referrer",
            status=("failed", "sent"),
        )
        assert logged["status"] == "failed"
        [delivery] = logged["deliveries"]  # permanent: no retries
        assert (delivery["channel"], delivery["status"]) == ("sms", "failed")
        assert "answered 400" in delivery["error"]
        assert "Not a UK mobile number" in delivery["error"]
        assert "Not a UK mobile number" in logged["last_error"]
        assert texts_to(s, "+15551234567") == []


class TestTheReceivingService:
    async def test_a_new_referral_lands_in_the_teams_inbox(
        self, running_apps, referrals_sessions
    ) -> None:  # type: ignore[no-untyped-def]
        s = running_apps
        p = await new_parties(s, referrals_sessions)
        referral = await new_referral(s, p, priority="urgent")
        ref = referral["id"][:8].upper()

        async def inbox() -> dict | None:  # type: ignore[type-arg]
            async with running(s, "notifications") as http:
                page = (await http.get("/inbox", headers=p.receiver(s))).json()
            return page if page["total"] else None

        page = await eventually(inbox, timeout=120, interval=0.5)
        [item] = page["items"]
        assert item["owner"] == f"org:{p.receiver_org}" and item["read_at"] is None
        assert item["subject"] == f"New urgent referral {ref} from {p.referrer_org}"
        assert referral["given_name"] in item["body"] and item["referral_id"] == referral["id"]
        assert page["unread"] == 1
        logged = await message_when(
            s,
            referral["id"],
            template="referral-received",
            audience="receiving_service",
            status="sent",
        )
        # the directory does not list this service, so the team inbox is the only recipient
        assert [(d["recipient"], d["channel"], d["status"]) for d in logged["deliveries"]] == [
            (f"org:{p.receiver_org}", "in_app", "sent")
        ]
        assert logged["deliveries"][0]["provider_ref"] == item["id"]
        # the referrer's organisation is not the team: nothing in its inbox
        async with running(s, "notifications") as http:
            assert (await http.get("/inbox", headers=p.referrer(s))).json()["total"] == 0

    async def test_the_services_own_mailbox_from_the_directory_too(
        self, running_apps, referrals_sessions
    ) -> None:  # type: ignore[no-untyped-def]
        s = running_apps
        code = f"PHYS-{uuid.uuid4().hex[:8].upper()}"
        staff = auth(s, role="service_staff", org=code, sub=f"staff-{uuid.uuid4().hex[:6]}")
        mailbox = unique_email("physio-team")
        async with running(s, "directory") as http:
            r = await http.put(
                f"/organizations/{code}",
                headers=staff,
                json={"name": f"Physio {code}", "description": "Synthetic."},
            )
            assert r.status_code == 201, r.text
            r = await http.post(
                "/services",
                headers=staff,
                json={
                    "name": "Wayford Back Physio",
                    "description": "Exercise for back pain.",
                    "category": "msk_physiotherapy",
                    "conditions": ["persistent_pain"],
                    "delivery_modes": ["phone"],
                    "how_to_refer": "Through Waymark.",
                    "email": mailbox,
                },
            )
            assert r.status_code == 201, r.text
            service_id = r.json()["id"]
            r = await http.post(f"/services/{service_id}/publish", headers=staff)
            assert r.status_code == 200, r.text

        async def in_referrals_replica() -> bool:
            rows = await sql(
                referrals_sessions,
                "SELECT status FROM directory_service WHERE service_id = :i",
                i=service_id,
            )
            return bool(rows) and rows[0].status == "active"

        await eventually(in_referrals_replica, timeout=120, interval=0.5)
        p = await new_parties(s, referrals_sessions)
        async with running(s, "referrals") as http:
            from tests.helpers import referral_body

            r = await http.post(
                "/referrals",
                headers=p.referrer(s),
                json=referral_body(to_service_id=service_id, to_org=code),
            )
            assert r.status_code == 201, r.text
            referral = r.json()
        mail = await one_mail(s, mailbox)
        assert mail.subject.startswith("New referral ")
        assert "sent to Wayford Back Physio" in mail.text  # the directory's name
        logged = await message_when(
            s,
            referral["id"],
            template="referral-received",
            audience="receiving_service",
            status="sent",
        )
        assert sorted((d["recipient"], d["channel"]) for d in logged["deliveries"]) == [
            (f"org:{code}", "in_app"),
            (f"service:{service_id}", "email"),
        ]


class TestThePersonAndCarers:
    async def test_booked_by_sms_in_easy_read_and_the_carer_they_allow_by_email(
        self, running_apps, referrals_sessions
    ) -> None:  # type: ignore[no-untyped-def]
        s = running_apps
        p = await new_parties(s, referrals_sessions)
        mobile = unique_mobile()
        allowed, not_allowed = unique_email("carer-ok"), unique_email("carer-no")
        referral = await new_referral(s, p, consent_to_carer_sharing=True, communication_needs=[])
        await new_care_plan(
            s,
            p,
            referral["_nhs_number"],
            communication={
                "easy_read": True,
                "learning_disability": True,
                "preferred_channel": "sms",
                "mobile": mobile,
                "email": unique_email("person"),
            },
            carers=[
                {
                    "id": "sam",
                    "name": "Sam Carer",
                    "relationship": "sister",
                    "contact": allowed,
                    "may_see": ["goals"],
                },
                {
                    "id": "jo",
                    "name": "Jo Carer",
                    "relationship": "friend",
                    "contact": not_allowed,
                    "may_see": [],
                },
            ],
        )
        booked = await move(s, p, referral, "accept", "book")
        words = appointment_words(
            datetime.fromisoformat(booked["appointment_at"]), s.quiet_hours_timezone
        )
        [sms] = await eventually(lambda: texts_to(s, mobile), timeout=120)
        body = sms["personalisation"]["body"]
        assert body.startswith(f"Hello {referral['given_name']}.\n")  # easy read words
        assert f"Day: {words['appointment_date']}." in body
        assert f"Time: {words['appointment_time']}." in body
        assert sms["template_id"] == s.sms_template_id
        person = await message_when(
            s, referral["id"], template="appointment-booked", audience="person", status="sent"
        )
        [d] = person["deliveries"]
        assert (d["recipient"], d["channel"], d["variant"], d["language"]) == (
            "person",
            "sms",
            "easy_read",
            "en",
        )
        assert d["provider_ref"] == sms["id"] and sms["reference"] == d["id"]
        carer_mail = await one_mail(s, allowed)
        assert carer_mail.text.startswith("Dear Sam Carer,")
        assert f"{referral['given_name']} has an appointment with" in carer_mail.text
        carers = await message_when(
            s, referral["id"], template="appointment-booked", audience="carers", status="sent"
        )
        assert [(x["recipient"], x["channel"]) for x in carers["deliveries"]] == [
            ("carer:sam", "email")
        ]
        assert mails_to(s, not_allowed) == []  # named without access: never told

    async def test_without_consent_no_carer_hears_and_large_print_by_email(
        self, running_apps, referrals_sessions
    ) -> None:  # type: ignore[no-untyped-def]
        s = running_apps
        p = await new_parties(s, referrals_sessions)
        person_mail, carer = unique_email("person"), unique_email("carer")
        referral = await new_referral(s, p, consent_to_carer_sharing=False, communication_needs=[])
        await new_care_plan(
            s,
            p,
            referral["_nhs_number"],
            communication={
                "large_print": True,
                "preferred_channel": "email",
                "email": person_mail,
                "language": "Polish",
            },
            carers=[
                {
                    "id": "sam",
                    "name": "Sam Carer",
                    "relationship": "partner",
                    "contact": carer,
                    "may_see": ["goals", "crisis"],
                }
            ],
        )
        await move(s, p, referral, "accept", "book")
        mail = await one_mail(s, person_mail)
        assert mail.text.startswith(f"Dear {referral['given_name']},")
        assert mail.html is not None and "font-size:24px" in mail.html
        assert referral["given_name"] in mail.html
        person = await message_when(
            s, referral["id"], template="appointment-booked", audience="person", status="sent"
        )
        [d] = person["deliveries"]
        assert (d["channel"], d["variant"], d["language"]) == ("email", "large_print", "en")
        # no Polish template yet: sent in English, and the log says so
        assert d["note"] == "no Polish (pl) template for appointment-booked; sent in English"
        carers = await message_when(
            s, referral["id"], template="appointment-booked", audience="carers", status="skipped"
        )
        assert carers["deliveries"] == []
        assert "not consented" in carers["last_error"]
        assert mails_to(s, carer) == []

    async def test_no_reachable_channel_fails_visibly(
        self, running_apps, referrals_sessions
    ) -> None:  # type: ignore[no-untyped-def]
        s = running_apps
        p = await new_parties(s, referrals_sessions)
        referral = await new_referral(s, p, communication_needs=[])
        await new_care_plan(
            s, p, referral["_nhs_number"], communication={"preferred_channel": "letter"}
        )
        await move(s, p, referral, "accept", "book")
        person = await message_when(
            s,
            referral["id"],
            template="appointment-booked",
            audience="person",
            status=("failed", "sent"),
        )
        assert person["status"] == "failed"
        [d] = person["deliveries"]
        assert (d["recipient"], d["channel"], d["status"]) == ("person", "none", "failed")
        assert d["error"].startswith("no reachable channel")
        assert "letter" in d["error"] and "no reachable channel" in person["last_error"]


class TestBadInput:
    async def test_a_missing_template_variable_fails_naming_it(
        self, running_apps, referrals_sessions, notifications_sessions
    ) -> None:  # type: ignore[no-untyped-def]
        s = running_apps
        p = await new_parties(s, referrals_sessions)
        referral = await new_referral(s, p)  # submitted: no appointment
        await message_when(
            s,
            referral["id"],
            template="referral-received",
            audience="receiving_service",
            status="sent",
        )
        # a message whose template needs a value this referral does not have
        mid = f"msg_{uuid.uuid4().hex}"
        await sql(
            notifications_sessions,
            """
            INSERT INTO message (id, event_id, event_type, audience, template, patient_id,
                                 referral_id, org, context)
            VALUES (:id, :e, 'uk.waymark.referral.booked', 'referrer', 'appointment-booked',
                    :pid, :rid, :org, CAST(:ctx AS JSONB))""",
            id=mid,
            e=str(uuid.uuid4()),
            pid=referral["patient_id"],
            rid=referral["id"],
            org=p.referrer_org,
            ctx=json.dumps({"referral_id": referral["id"]}),
        )
        failed = await message_when(
            s,
            referral["id"],
            template="appointment-booked",
            audience="referrer",
            status=("failed", "sent"),
        )
        assert failed["id"] == mid and failed["status"] == "failed"
        assert "template variable 'appointment' is missing" in failed["last_error"]
        [d] = failed["deliveries"]
        assert (d["recipient"], d["channel"], d["status"]) == (
            f"user:{p.referrer_user}",
            "none",
            "failed",
        )
        assert "'appointment'" in d["error"] and "appointment-booked" in d["error"]
        # the referrer's organisation sees the failure in the log too
        async with running(s, "notifications") as http:
            r = await http.get(f"/messages/{mid}", headers=p.referrer(s))
            assert r.status_code == 200 and r.json()["status"] == "failed"
            inbox = (await http.get("/inbox", headers=p.referrer(s))).json()
        assert inbox["total"] == 0  # nothing half-rendered went out


def _hhmm(t: datetime) -> str:
    return t.strftime("%H:%M")


class TestQuietHours:
    async def test_email_is_held_until_the_window_ends_then_sent(
        self, running_apps, referrals_sessions
    ) -> None:  # type: ignore[no-untyped-def]
        s = running_apps
        p = await new_parties(s, referrals_sessions)
        address = unique_email("night-owl")
        now = datetime.now(ZoneInfo(s.quiet_hours_timezone))
        # the window ends at the start of a minute (quiet hours are HH:MM): the next one when
        # at least 20 s are left of this one, time enough to make and accept the referral,
        # else the one after (the suite waits for the window, not longer)
        ends_in = 1 if now.second <= 40 else 2
        await set_preferences(
            s,
            p,
            channels=["email"],
            email=address,
            quiet_start=_hhmm(now - timedelta(minutes=1)),
            quiet_end=_hhmm(now + timedelta(minutes=ends_in)),
        )
        referral = await new_referral(s, p)
        await move(s, p, referral, "accept")
        held = await message_when(
            s, referral["id"], template="referral-accepted", audience="referrer", status="held"
        )
        [d] = held["deliveries"]
        assert (d["channel"], d["status"]) == ("email", "held")
        assert d["note"].startswith("quiet hours until ")
        assert datetime.fromisoformat(held["next_attempt_at"]) > datetime.now(UTC)
        assert mails_to(s, address) == []
        sent = await message_when(
            s,
            referral["id"],
            template="referral-accepted",
            audience="referrer",
            status="sent",
            timeout=360,
        )
        assert [x["status"] for x in sent["deliveries"]] == ["held", "sent"]
        assert len(mails_to(s, address)) == 1

    async def test_the_in_app_inbox_is_never_held(self, running_apps, referrals_sessions) -> None:  # type: ignore[no-untyped-def]
        s = running_apps
        p = await new_parties(s, referrals_sessions)
        now = datetime.now(ZoneInfo(s.quiet_hours_timezone))
        await set_preferences(
            s,
            p,
            channels=["in_app"],
            quiet_start=_hhmm(now - timedelta(hours=1)),
            quiet_end=_hhmm(now + timedelta(hours=2)),
        )
        referral = await new_referral(s, p)
        await move(
            s,
            p,
            referral,
            "return",
            body={
                "reason_code": "manage-in-primary-care",
                "note": "Self-management leaflet and review in 6 weeks.",
            },
        )
        logged = await message_when(
            s,
            referral["id"],
            template="referral-returned",
            audience="referrer",
            status=("sent", "held"),
        )
        assert logged["status"] == "sent"
        async with running(s, "notifications") as http:
            [item] = (await http.get("/inbox", headers=p.referrer(s))).json()["items"]
        assert item["owner"] == f"user:{p.referrer_user}"
        # the advice given on return, fetched at send time, is in the message
        assert "Self-management leaflet and review in 6 weeks." in item["body"]
        assert "the service advises managing this in primary care" in item["body"]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _leased_message(sessions, referral: dict, org: str, *, lease: str = "1 hour"):  # type: ignore[no-untyped-def, type-arg]
    """A due message that a (pretend) other dispatcher holds the lease of."""
    mid = f"msg_{uuid.uuid4().hex}"
    [row] = await sql(
        sessions,
        f"""
        INSERT INTO message (id, event_id, event_type, audience, template, patient_id,
                             referral_id, org, context, lease_until)
        VALUES (:id, :e, 'uk.waymark.referral.accepted', 'referrer', 'referral-accepted',
                :pid, :rid, :org, CAST(:ctx AS JSONB), now() + interval '{lease}')
        RETURNING *""",
        id=mid,
        e=str(uuid.uuid4()),
        pid=referral["patient_id"],
        rid=referral["id"],
        org=org,
        ctx=json.dumps({"referral_id": referral["id"]}),
    )
    return Claimed(
        id=row.id,
        event_id=row.event_id,
        event_type=row.event_type,
        audience=row.audience,
        template=row.template,
        patient_id=row.patient_id,
        referral_id=row.referral_id,
        org=row.org,
        context=dict(row.context),
        attempts=row.attempts,
        lease=row.lease_until,
    )


class TestRetriesAndLeases:
    async def test_an_unreachable_mail_server_is_retried_then_the_mail_goes(
        self, running_apps, referrals_sessions, notifications_sessions
    ) -> None:  # type: ignore[no-untyped-def]
        s = running_apps
        p = await new_parties(s, referrals_sessions)
        address = unique_email("retry")
        await set_preferences(s, p, channels=["email"], email=address)
        referral = await new_referral(s, p)
        claimed = await _leased_message(notifications_sessions, referral, p.referrer_org)
        # this sender's mail server is down; the stack's dispatcher's is up
        down = s.model_copy(update={"smtp_host": "127.0.0.1", "smtp_port": _closed_port()})
        sender = await MessageSender.create(down)
        try:
            await sender.process(claimed)
        finally:
            await sender.close()
        sent = await message_when(
            s, referral["id"], template="referral-accepted", audience="referrer", status="sent"
        )
        assert sent["id"] == claimed.id
        first, second = sent["deliveries"]
        assert (first["status"], first["channel"]) == ("retrying", "email")
        assert "could not reach the mail server" in first["error"]
        assert second["status"] == "sent" and second["attempt"] == 2
        assert len(mails_to(s, address)) == 1

    async def test_after_the_last_retry_the_recipient_shows_as_failed(
        self, running_apps, referrals_sessions, notifications_sessions
    ) -> None:  # type: ignore[no-untyped-def]
        s = running_apps
        p = await new_parties(s, referrals_sessions)
        address = unique_email("gives-up")
        await set_preferences(s, p, channels=["email"], email=address)
        referral = await new_referral(s, p)
        claimed = await _leased_message(notifications_sessions, referral, p.referrer_org)
        for n in range(len(s.message_retry_seconds)):  # every retry already spent
            await sql(
                notifications_sessions,
                """
                INSERT INTO message_delivery (id, message_id, recipient, channel, variant,
                                              language, attempt, status, error)
                VALUES (:id, :m, :r, 'email', 'plain', 'en', :n, 'retrying', 'timed out')""",
                id=f"dlv_{uuid.uuid4().hex}",
                m=claimed.id,
                r=f"user:{p.referrer_user}",
                n=n + 1,
            )
        down = s.model_copy(update={"smtp_host": "127.0.0.1", "smtp_port": _closed_port()})
        sender = await MessageSender.create(down)
        try:
            await sender.process(claimed)
        finally:
            await sender.close()
        failed = await message_when(
            s,
            referral["id"],
            template="referral-accepted",
            audience="referrer",
            status="failed",
            timeout=30,
        )
        n = len(s.message_retry_seconds) + 1
        assert failed["last_error"].startswith(
            f"user:{p.referrer_user}: gave up after {n} attempts: could not reach the mail"
        )
        assert failed["deliveries"][-1]["status"] == "failed"
        assert mails_to(s, address) == []

    async def test_a_message_leased_by_another_dispatcher_is_left_until_its_lease_ends(
        self, running_apps, referrals_sessions, notifications_sessions
    ) -> None:  # type: ignore[no-untyped-def]
        s = running_apps
        p = await new_parties(s, referrals_sessions)
        address = unique_email("lease")
        await set_preferences(s, p, channels=["email"], email=address)
        referral = await new_referral(s, p)
        claimed = await _leased_message(notifications_sessions, referral, p.referrer_org)
        # a sender that does not hold the lease sends nothing and changes nothing
        stale = Claimed(**{**claimed.__dict__, "lease": claimed.lease - timedelta(minutes=5)})
        sender = await MessageSender.create(s)
        try:
            await sender.process(stale)
        finally:
            await sender.close()
        # the stack's dispatcher has had its chance: a message queued later has been sent
        await move(s, p, referral, "return")
        await message_when(
            s, referral["id"], template="referral-returned", audience="referrer", status="sent"
        )
        [row] = await sql(
            notifications_sessions, "SELECT status FROM message WHERE id = :i", i=claimed.id
        )
        assert row.status == "pending"
        assert (
            await sql(
                notifications_sessions,
                "SELECT * FROM message_delivery WHERE message_id = :i",
                i=claimed.id,
            )
        ) == []
        assert [m.subject.split()[2] for m in mails_to(s, address)] == ["returned"]
        # the holder was killed: when its lease runs out the message comes back and goes
        await sql(
            notifications_sessions,
            "UPDATE message SET lease_until = now() - interval '1 second' WHERE id = :i",
            i=claimed.id,
        )
        sent = await message_when(
            s, referral["id"], template="referral-accepted", audience="referrer", status="sent"
        )
        assert len(sent["deliveries"]) == 1
        assert sorted(m.subject.split()[2] for m in mails_to(s, address)) == [
            "accepted",
            "returned",
        ]
