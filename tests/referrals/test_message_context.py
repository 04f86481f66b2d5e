"""GET /referrals/{id}/message-context: what a message needs, for the notifications
service's own credential only (personal details never travel in events)."""

from __future__ import annotations

import uuid

import pytest

from tests.conftest import auth
from tests.helpers import process_token
from tests.referrals.support import (
    assert_problem,
    audit_of_referral,
    drive_to,
    new_parties,
    step,
    transitions_of,
)


def service_headers(s) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {"Authorization": f"Bearer {process_token(s, 'notifications')}"}


class TestMessageContext:
    async def test_the_service_credential_gets_what_a_message_needs(
        self, referrals_client, referrals_sessions, settings
    ) -> None:  # type: ignore[no-untyped-def]
        p = await new_parties(settings, referrals_sessions)
        referral = await drive_to(
            referrals_client,
            settings,
            p,
            "booked",
            consent_to_carer_sharing=True,
            communication_needs=["easy read"],
        )
        r = await referrals_client.get(
            f"/referrals/{referral['id']}/message-context", headers=service_headers(settings)
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["referral_id"] == referral["id"]
        assert body["patient_id"] == referral["patient_id"]
        assert body["given_name"] == referral["given_name"]
        assert body["referrer_user"] == f"{p.referrer_user}"
        assert body["referrer_org"] == p.referrer_org
        assert body["from_practitioner"] == "Dr Test"
        assert (body["to_org"], body["to_service_id"]) == (p.receiver_org, p.service.id)
        assert body["state"] == "booked"
        assert body["appointment_at"] is not None
        assert body["appointment_at"][:16] == referral["appointment_at"][:16]
        assert body["communication_needs"] == ["easy read"]
        assert body["consent_to_carer_sharing"] is True
        # nothing more personal than a message needs
        assert "nhs_number" not in body and "family_name" not in body
        assert "clinical_summary" not in body and "birth_date" not in body

    async def test_the_advice_of_the_transition_that_published_the_event(
        self, referrals_client, referrals_sessions, settings
    ) -> None:  # type: ignore[no-untyped-def]
        p = await new_parties(settings, referrals_sessions)
        referral = await drive_to(referrals_client, settings, p, "submitted")
        await step(
            referrals_client,
            settings,
            p,
            referral,
            "return",
            body={
                "reason_code": "refer-elsewhere",
                "note": "Physiotherapy first, then re-refer if no better.",
            },
        )
        r = await referrals_client.get(
            f"/referrals/{referral['id']}/message-context", headers=service_headers(settings)
        )
        body = r.json()
        assert body["note"] == "Physiotherapy first, then re-refer if no better."
        assert body["reason_code"] == "refer-elsewhere"
        # asking for the submission's event gives that step's (empty) note
        first = (await transitions_of(referrals_sessions, referral["id"]))[0]
        r = await referrals_client.get(
            f"/referrals/{referral['id']}/message-context",
            params={"event_id": first.event_id},
            headers=service_headers(settings),
        )
        assert r.json()["note"] is None and r.json()["reason_code"] is None

    async def test_every_read_is_audited(
        self, referrals_client, referrals_sessions, settings
    ) -> None:  # type: ignore[no-untyped-def]
        p = await new_parties(settings, referrals_sessions)
        referral = await drive_to(referrals_client, settings, p, "submitted")
        r = await referrals_client.get(
            f"/referrals/{referral['id']}/message-context", headers=service_headers(settings)
        )
        assert r.status_code == 200
        rows = [
            a
            for a in await audit_of_referral(referrals_sessions, referral["id"])
            if a.resource_type == "ReferralMessageContext"
        ]
        assert len(rows) == 1
        assert rows[0].actor == "waymark-notifications"
        assert rows[0].actor_roles == "service"
        assert rows[0].patient_id == referral["patient_id"]

    @pytest.mark.parametrize(
        "role,side",
        [
            ("clinician", "referrer"),
            ("service_staff", "receiver"),
            ("partner", "receiver"),
            ("coordinator", "ics"),
        ],
    )
    async def test_everyone_else_is_refused(
        self, referrals_client, referrals_sessions, settings, role, side
    ) -> None:  # type: ignore[no-untyped-def]
        p = await new_parties(settings, referrals_sessions)
        referral = await drive_to(referrals_client, settings, p, "submitted")
        org = {"referrer": p.referrer_org, "receiver": p.receiver_org, "ics": "ICB-1"}[side]
        r = await referrals_client.get(
            f"/referrals/{referral['id']}/message-context",
            headers=auth(settings, role=role, org=org, ics=p.ics),
        )
        assert_problem(r, 403, "service")
        # and they keep their own way in
        assert (
            await referrals_client.get(
                f"/referrals/{referral['id']}",
                headers=auth(settings, role=role, org=org, ics=p.ics),
            )
        ).status_code == 200

    async def test_without_a_token(self, referrals_client, settings) -> None:  # type: ignore[no-untyped-def]
        r = await referrals_client.get(f"/referrals/{uuid.uuid4()}/message-context")
        assert_problem(r, 401)

    @pytest.mark.parametrize("rid", [str(uuid.uuid4()), "not-a-uuid"])
    async def test_an_unknown_referral_is_404(self, referrals_client, settings, rid) -> None:  # type: ignore[no-untyped-def]
        r = await referrals_client.get(
            f"/referrals/{rid}/message-context", headers=service_headers(settings)
        )
        assert_problem(r, 404)

    async def test_a_draft_owes_no_message(
        self, referrals_client, referrals_sessions, settings
    ) -> None:  # type: ignore[no-untyped-def]
        p = await new_parties(settings, referrals_sessions)
        draft = await drive_to(referrals_client, settings, p, "draft")
        r = await referrals_client.get(
            f"/referrals/{draft['id']}/message-context", headers=service_headers(settings)
        )
        assert_problem(r, 404)
