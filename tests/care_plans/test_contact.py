"""GET /patients/{patient_id}/contact: how to reach the person and their carers, for the
notifications service's own credential only; and the Communication section's new optional
email and mobile."""

from __future__ import annotations

import pytest

from tests.care_plans.support import World, create_plan, plan_content, query
from tests.helpers import process_token
from tests.referrals.support import assert_problem


def service_headers(s) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {"Authorization": f"Bearer {process_token(s, 'notifications')}"}


def communication(**kw) -> dict:  # type: ignore[no-untyped-def, type-arg]
    return {
        "easy_read": True,
        "preferred_channel": "sms",
        "mobile": "07700 900123",
        "email": "alex@example.org",
        "language": "Polish",
        **kw,
    }


class TestContact:
    async def test_the_service_credential_gets_needs_contact_and_carers(
        self, care_plans_client, care_plans_sessions, settings
    ) -> None:  # type: ignore[no-untyped-def]
        w = World(settings)
        carers = [
            {
                "id": "c1",
                "name": "Sam Synthetic",
                "relationship": "partner",
                "contact": "sam@example.org",
                "may_see": ["goals", "crisis"],
            },
            {
                "id": "c2",
                "name": "Jo Synthetic",
                "relationship": "son",
                "contact": "0113 496 0000",
                "may_see": [],
            },
        ]
        plan = await create_plan(
            care_plans_client, w, content=plan_content(communication=communication(), carers=carers)
        )
        r = await care_plans_client.get(
            f"/patients/{plan['patient_id']}/contact", headers=service_headers(settings)
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["patient_id"] == plan["patient_id"] and body["plan_id"] == plan["id"]
        assert body["version"] == 1
        c = body["communication"]
        assert (c["easy_read"], c["preferred_channel"], c["mobile"], c["email"], c["language"]) == (
            True,
            "sms",
            "07700 900123",
            "alex@example.org",
            "Polish",
        )
        assert body["carers"] == [
            {
                "id": "c1",
                "name": "Sam Synthetic",
                "relationship": "partner",
                "contact": "sam@example.org",
                "may_see": ["goals", "crisis"],
            },
            {
                "id": "c2",
                "name": "Jo Synthetic",
                "relationship": "son",
                "contact": "0113 496 0000",
                "may_see": [],
            },
        ]
        # the read is audited
        rows = await query(
            care_plans_sessions,
            "SELECT * FROM audit_log WHERE resource_id = :p AND resource_type = 'CarePlanContact'",
            p=plan["id"],
        )
        assert len(rows) == 1 and rows[0].actor == "waymark-notifications"
        assert rows[0].patient_id == plan["patient_id"]

    async def test_the_current_version_is_read(self, care_plans_client, settings) -> None:  # type: ignore[no-untyped-def]
        w = World(settings)
        plan = await create_plan(care_plans_client, w)
        content = plan_content(communication=communication(email="new@example.org"))
        r = await care_plans_client.put(
            f"/care-plans/{plan['id']}",
            json={"content": content, "reason": "new email"},
            headers={**w.holder_h(), "If-Match": 'W/"1"'},
        )
        assert r.status_code == 200, r.text
        r = await care_plans_client.get(
            f"/patients/{plan['patient_id']}/contact", headers=service_headers(settings)
        )
        assert r.json()["version"] == 2
        assert r.json()["communication"]["email"] == "new@example.org"

    async def test_plans_without_contact_details_still_work(
        self, care_plans_client, settings
    ) -> None:  # type: ignore[no-untyped-def]
        w = World(settings)
        plan = await create_plan(care_plans_client, w)  # the support content has no email
        r = await care_plans_client.get(
            f"/patients/{plan['patient_id']}/contact", headers=service_headers(settings)
        )
        assert r.status_code == 200
        assert r.json()["communication"]["email"] is None
        assert r.json()["communication"]["mobile"] is None

    @pytest.mark.parametrize(
        "role", ["clinician", "service_staff", "coordinator", "admin", "partner"]
    )
    async def test_everyone_else_is_refused(self, care_plans_client, settings, role) -> None:  # type: ignore[no-untyped-def]
        w = World(settings)
        plan = await create_plan(care_plans_client, w)
        r = await care_plans_client.get(
            f"/patients/{plan['patient_id']}/contact", headers=w.as_(w.holder, role=role)
        )
        assert_problem(r, 403, "service")

    async def test_no_plan_is_404(self, care_plans_client, settings) -> None:  # type: ignore[no-untyped-def]
        r = await care_plans_client.get(
            "/patients/pt_nobody/contact", headers=service_headers(settings)
        )
        assert_problem(r, 404)


class TestCommunicationContactFields:
    @pytest.mark.parametrize(
        "field,value",
        [
            ("email", "not-an-email"),
            ("email", "a@b"),
            ("mobile", "0113 496 0000"),
            ("mobile", "+1 555 123 4567"),
            ("mobile", "0770090012"),
        ],
    )
    async def test_invalid_contact_details_are_refused(
        self, care_plans_client, settings, field, value
    ) -> None:  # type: ignore[no-untyped-def]
        w = World(settings)
        r = await care_plans_client.post(
            "/care-plans",
            headers=w.holder_h(),
            json={
                "nhs_number": "9434765919",
                "content": plan_content(communication={field: value}),
            },
        )
        assert_problem(r, 422)
        assert value not in r.text  # never echoed back

    @pytest.mark.parametrize("mobile", ["07700900123", "+44 7700 900123", "07700-900-123"])
    async def test_uk_mobiles_in_common_forms_are_accepted(
        self, care_plans_client, settings, mobile
    ) -> None:  # type: ignore[no-untyped-def]
        w = World(settings)
        plan = await create_plan(
            care_plans_client, w, content=plan_content(communication={"mobile": mobile})
        )
        assert plan["content"]["communication"]["mobile"] == mobile
