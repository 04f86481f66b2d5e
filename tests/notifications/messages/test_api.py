"""The messages API (services/notifications/messages/api.py) in-process on the real database:
a staff user's own preferences, the in-app inbox (own and team items), and who may read the
delivery log. Rows the dispatcher would write are put in directly, finished (never pending),
so a running dispatcher has nothing to do with them."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text

from shared.db import unit_of_work
from shared.errors import PROBLEM_JSON
from tests.conftest import auth


def org(prefix: str = "ORG") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8].upper()}"


def user() -> str:
    return f"user-{uuid.uuid4().hex[:10]}"


def problem(r: Any, status: int, *words: str) -> dict[str, Any]:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].split(";")[0] == PROBLEM_JSON
    body: dict[str, Any] = r.json()
    for w in words:
        assert w in body["detail"], (w, body["detail"])
    return body


async def sql(sessions: Any, statement: str, **params: Any) -> list[Any]:
    async with unit_of_work(sessions) as session:
        result = await session.exec(text(statement).bindparams(**params))  # type: ignore[call-overload]
        return list(result.all()) if result.returns_rows else []


# --- preferences ---------------------------------------------------------------------------------


def prefs(**kw: Any) -> dict[str, Any]:
    body = {
        "channels": ["email", "in_app"],
        "email": "dr.who@example.nhs.uk",
        "mobile": "07700 900456",
        "quiet_start": "22:00",
        "quiet_end": "07:00",
        "language": "en",
        "variant": "large_print",
    }
    body.update(kw)
    return body


class TestPreferences:
    async def test_defaults_until_set(self, notifications_client, settings) -> None:  # type: ignore[no-untyped-def]
        u, o = user(), org("GP")
        r = await notifications_client.get(
            "/preferences/me", headers=auth(settings, role="clinician", org=o, sub=u)
        )
        assert r.status_code == 200 and r.headers["etag"] == 'W/"0"'
        assert r.json() == {
            "user_id": u,
            "org": o,
            "channels": ["in_app"],
            "email": None,
            "mobile": None,
            "quiet_start": None,
            "quiet_end": None,
            "language": "en",
            "variant": "plain",
            "version": 0,
        }

    async def test_set_then_change_with_if_match(self, notifications_client, settings) -> None:  # type: ignore[no-untyped-def]
        h = auth(settings, role="service_staff", org=org(), sub=user())
        r = await notifications_client.put(
            "/preferences/me", json=prefs(), headers={**h, "If-Match": 'W/"0"'}
        )
        assert r.status_code == 200, r.text
        assert r.headers["etag"] == 'W/"1"'
        body = r.json()
        assert body["mobile"] == "+447700900456"  # normalised for the SMS provider
        assert (body["quiet_start"], body["quiet_end"], body["variant"]) == (
            "22:00",
            "07:00",
            "large_print",
        )
        r = await notifications_client.put(
            "/preferences/me",
            json=prefs(channels=["sms"], quiet_start=None, quiet_end=None),
            headers={**h, "If-Match": 'W/"1"'},
        )
        assert r.status_code == 200 and r.json()["version"] == 2
        got = (await notifications_client.get("/preferences/me", headers=h)).json()
        assert got["channels"] == ["sms"] and got["quiet_start"] is None

    async def test_a_stale_or_missing_if_match_is_refused(
        self, notifications_client, settings
    ) -> None:  # type: ignore[no-untyped-def]
        h = auth(settings, role="clinician", org=org(), sub=user())
        problem(
            await notifications_client.put("/preferences/me", json=prefs(), headers=h),
            428,
            "If-Match",
        )
        assert (
            await notifications_client.put(
                "/preferences/me", json=prefs(), headers={**h, "If-Match": 'W/"0"'}
            )
        ).status_code == 200
        body = problem(
            await notifications_client.put(
                "/preferences/me", json=prefs(), headers={**h, "If-Match": 'W/"0"'}
            ),
            412,
            "version 0",
        )
        assert body["current_version"] == 1

    async def test_each_user_has_their_own(self, notifications_client, settings) -> None:  # type: ignore[no-untyped-def]
        o = org()
        a = auth(settings, role="clinician", org=o, sub=user())
        b = auth(settings, role="clinician", org=o, sub=user())
        await notifications_client.put(
            "/preferences/me", json=prefs(), headers={**a, "If-Match": 'W/"0"'}
        )
        assert (await notifications_client.get("/preferences/me", headers=b)).json()["version"] == 0

    @pytest.mark.parametrize(
        "change",
        [
            {"channels": ["fax"]},
            {"channels": []},
            {"channels": ["email", "email"]},
            {"channels": ["email"], "email": None},
            {"channels": ["sms"], "mobile": None},
            {"email": "not-an-email"},
            {"mobile": "0113 496 0000"},
            {"mobile": "+1 202 555 0100"},
            {"quiet_start": "25:00"},
            {"quiet_start": "7:00"},
            {"quiet_end": None},
            {"quiet_start": "07:00", "quiet_end": "07:00"},
            {"language": "English"},
            {"variant": "braille"},
            {"unknown": 1},
        ],
    )
    async def test_invalid_preferences_are_422(
        self, notifications_client, settings, change
    ) -> None:  # type: ignore[no-untyped-def]
        h = auth(settings, role="clinician", org=org(), sub=user())
        r = await notifications_client.put(
            "/preferences/me", json=prefs(**change), headers={**h, "If-Match": 'W/"0"'}
        )
        problem(r, 422)

    async def test_a_service_credential_has_no_preferences(
        self, notifications_client, settings
    ) -> None:  # type: ignore[no-untyped-def]
        h = auth(settings, role="service", org="WAYMARK")
        problem(await notifications_client.get("/preferences/me", headers=h), 403)


# --- the inbox -----------------------------------------------------------------------------------


async def add_item(sessions: Any, owner: str, item_org: str, subject: str) -> str:
    iid = f"inb_{uuid.uuid4().hex}"
    await sql(
        sessions,
        "INSERT INTO inbox_item (id, owner, org, subject, body) VALUES (:id, :o, :org, :s, 'body')",
        id=iid,
        o=owner,
        org=item_org,
        s=subject,
    )
    return iid


class TestInbox:
    async def test_own_and_team_items_with_counts_and_read(
        self, notifications_client, notifications_sessions, settings
    ) -> None:  # type: ignore[no-untyped-def]
        me, colleague, o, other = user(), user(), org("SVC"), org("SVC")
        mine = await add_item(notifications_sessions, f"user:{me}", o, "mine")
        team = await add_item(notifications_sessions, f"org:{o}", o, "team")
        await add_item(notifications_sessions, f"user:{colleague}", o, "colleague's")
        await add_item(notifications_sessions, f"org:{other}", other, "other team")
        h = auth(settings, role="service_staff", org=o, sub=me)
        page = (await notifications_client.get("/inbox", headers=h)).json()
        assert {i["id"] for i in page["items"]} == {mine, team}
        assert (page["total"], page["unread"]) == (2, 2)
        r = await notifications_client.post(f"/inbox/{team}/read", headers=h)
        assert r.status_code == 200 and r.json()["read_at"] is not None
        first_read = r.json()["read_at"]
        again = await notifications_client.post(f"/inbox/{team}/read", headers=h)
        assert again.json()["read_at"] == first_read  # reading again changes nothing
        unread = (
            await notifications_client.get("/inbox", params={"unread": "true"}, headers=h)
        ).json()
        assert [i["id"] for i in unread["items"]] == [mine]
        assert (unread["total"], unread["unread"]) == (1, 1)
        read = (
            await notifications_client.get("/inbox", params={"unread": "false"}, headers=h)
        ).json()
        assert [i["id"] for i in read["items"]] == [team]
        # the colleague sees the team's item as read too, but not my own
        h2 = auth(settings, role="service_staff", org=o, sub=colleague)
        theirs = (await notifications_client.get("/inbox", headers=h2)).json()
        assert {i["subject"] for i in theirs["items"]} == {"team", "colleague's"}
        reads = await sql(
            notifications_sessions,
            "SELECT * FROM audit_log WHERE resource_type = 'InboxItem' AND resource_id = :i",
            i=team,
        )
        assert len(reads) >= 3

    async def test_someone_elses_item_cannot_be_marked(
        self, notifications_client, notifications_sessions, settings
    ) -> None:  # type: ignore[no-untyped-def]
        o = org()
        theirs = await add_item(notifications_sessions, f"user:{user()}", o, "theirs")
        other_team = await add_item(notifications_sessions, f"org:{org()}", "X", "x")
        h = auth(settings, role="clinician", org=o, sub=user())
        for iid in (theirs, other_team, "inb_nope"):
            problem(await notifications_client.post(f"/inbox/{iid}/read", headers=h), 404)
        rows = await sql(
            notifications_sessions, "SELECT read_at FROM inbox_item WHERE id = :i", i=theirs
        )
        assert rows[0].read_at is None

    async def test_a_service_credential_has_no_inbox(self, notifications_client, settings) -> None:  # type: ignore[no-untyped-def]
        problem(
            await notifications_client.get(
                "/inbox", headers=auth(settings, role="service", org="WAYMARK")
            ),
            403,
        )


# --- the delivery log ---------------------------------------------------------------------------


async def add_referral(sessions: Any, from_org: str, to_org: str) -> str:
    rid = str(uuid.uuid4())
    await sql(
        sessions,
        """
        INSERT INTO referral_index (referral_id, patient_id, from_org, to_org, to_service_id,
                                    service_category, state)
        VALUES (:r, :p, :f, :t, 'svc-x', 'pain_management_programme', 'accepted')""",
        r=rid,
        p=f"pt_{uuid.uuid4().hex[:16]}",
        f=from_org,
        t=to_org,
    )
    return rid


async def add_message(
    sessions: Any,
    referral_id: str,
    *,
    status: str = "sent",
    audience: str = "referrer",
    created: datetime | None = None,
) -> str:
    mid = f"msg_{uuid.uuid4().hex}"
    await sql(
        sessions,
        """
        INSERT INTO message (id, event_id, event_type, audience, template, patient_id,
                             referral_id, context, status, created_at,
                             next_attempt_at)
        VALUES (:id, :e, 'uk.waymark.referral.accepted', :aud, 'referral-accepted',
                'pt_x', :r, CAST(:ctx AS JSONB), :st, :created, now() + interval '1 day')""",
        id=mid,
        e=str(uuid.uuid4()),
        aud=audience,
        r=referral_id,
        ctx=json.dumps({"referral_id": referral_id}),
        st=status,
        created=created or datetime.now(UTC),
    )
    await sql(
        sessions,
        """
        INSERT INTO message_delivery (id, message_id, recipient, channel, variant, language,
                                      attempt, status, provider_ref, error)
        VALUES (:id, :m, 'user:u1', 'email', 'plain', 'en', 1, :st, :ref, :err)""",
        id=f"dlv_{uuid.uuid4().hex}",
        m=mid,
        st="sent" if status == "sent" else "failed",
        ref="Q123" if status == "sent" else None,
        err=None if status == "sent" else "template variable 'appointment' is missing",
    )
    return mid


class TestDeliveryLog:
    @pytest.fixture
    async def world(self, notifications_sessions):  # type: ignore[no-untyped-def]
        gp, svc, gp2, svc2 = org("GP"), org("SVC"), org("GP"), org("SVC")
        r1 = await add_referral(notifications_sessions, gp, svc)
        r2 = await add_referral(notifications_sessions, gp2, svc2)
        sent = await add_message(notifications_sessions, r1)
        failed = await add_message(notifications_sessions, r1, status="failed", audience="person")
        theirs = await add_message(notifications_sessions, r2)
        return {
            "gp": gp,
            "svc": svc,
            "r1": r1,
            "r2": r2,
            "sent": sent,
            "failed": failed,
            "theirs": theirs,
        }

    async def test_the_organisations_a_referral_concerns_see_its_messages(
        self, notifications_client, settings, world
    ) -> None:  # type: ignore[no-untyped-def]
        for role, o in (
            ("clinician", world["gp"]),
            ("service_staff", world["svc"]),
            ("partner", world["svc"]),
        ):
            r = await notifications_client.get(
                "/messages", headers=auth(settings, role=role, org=o)
            )
            assert r.status_code == 200, r.text
            assert {m["id"] for m in r.json()} == {world["sent"], world["failed"]}
            assert r.headers["x-total-count"] == "2"

    async def test_other_organisations_see_nothing_of_them(
        self, notifications_client, settings, world
    ) -> None:  # type: ignore[no-untyped-def]
        h = auth(settings, role="clinician", org=org("GP"))
        r = await notifications_client.get(
            "/messages", params={"referral_id": world["r1"]}, headers=h
        )
        assert r.json() == []
        problem(await notifications_client.get(f"/messages/{world['sent']}", headers=h), 404)

    async def test_coordinators_and_admins_of_the_ics_see_all(
        self, notifications_client, settings, world
    ) -> None:  # type: ignore[no-untyped-def]
        for role in ("coordinator",):
            h = auth(settings, role=role, org="ICB-1", ics=settings.ics)
            for rid, mids in (
                (world["r1"], {world["sent"], world["failed"]}),
                (world["r2"], {world["theirs"]}),
            ):
                r = await notifications_client.get(
                    "/messages", params={"referral_id": rid}, headers=h
                )
                assert {m["id"] for m in r.json()} == mids

    async def test_coordinators_of_another_ics_and_services_are_refused(
        self, notifications_client, settings, world
    ) -> None:  # type: ignore[no-untyped-def]
        for h in (
            auth(settings, role="coordinator", org="ICB-9", ics="ICS-OTHER"),
            auth(settings, role="service", org="WAYMARK"),
        ):
            problem(await notifications_client.get("/messages", headers=h), 403)

    async def test_filters_and_the_failure_is_visible(
        self, notifications_client, settings, world
    ) -> None:  # type: ignore[no-untyped-def]
        h = auth(settings, role="clinician", org=world["gp"])
        r = await notifications_client.get("/messages", params={"status": "failed"}, headers=h)
        [m] = r.json()
        assert m["id"] == world["failed"] and m["status"] == "failed"
        [d] = m["deliveries"]
        assert d["status"] == "failed" and "'appointment'" in d["error"]
        later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        r = await notifications_client.get("/messages", params={"since": later}, headers=h)
        assert r.json() == []
        r = await notifications_client.get(
            "/messages", params=[("status", "sent"), ("status", "failed")], headers=h
        )
        assert len(r.json()) == 2

    async def test_one_message_with_its_deliveries_and_the_read_audited(
        self, notifications_client, notifications_sessions, settings, world
    ) -> None:  # type: ignore[no-untyped-def]
        h = auth(settings, role="service_staff", org=world["svc"])
        r = await notifications_client.get(f"/messages/{world['sent']}", headers=h)
        assert r.status_code == 200
        body = r.json()
        assert body["deliveries"][0]["provider_ref"] == "Q123"
        assert body["context"] == {"referral_id": world["r1"]}
        rows = await sql(
            notifications_sessions,
            "SELECT * FROM audit_log WHERE resource_type = 'Message' AND resource_id = :m",
            m=world["sent"],
        )
        assert len(rows) == 1 and rows[0].patient_id == "pt_x"

    @pytest.mark.parametrize(
        "params",
        [
            {"status": "lost"},
            {"since": "yesterday"},
            {"since": "2026-01-01T00:00:00"},
            {"limit": 0},
            {"referral_id": "x" * 65},
        ],
    )
    async def test_bad_filters_are_422(self, notifications_client, settings, params) -> None:  # type: ignore[no-untyped-def]
        h = auth(settings, role="coordinator", org="ICB-1", ics=settings.ics)
        problem(await notifications_client.get("/messages", params=params, headers=h), 422)

    async def test_unknown_message_is_404(self, notifications_client, settings) -> None:  # type: ignore[no-untyped-def]
        h = auth(settings, role="coordinator", org="ICB-1", ics=settings.ics)
        problem(await notifications_client.get("/messages/msg_nothing", headers=h), 404)
        problem(await notifications_client.get("/messages/%20bad%20id", headers=h), 404)
