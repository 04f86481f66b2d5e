"""A PHQ-9 item 9 alert shows the person's crisis plan (#15), read from the care plans API
with the coordinator's own sign-in when the alert is read (audited there as theirs); when care
plans cannot answer, the alert says why and still answers. On the running stack: the care
plans and notifications APIs as separate processes on the real database."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from shared.db import make_engine, make_sessionmaker
from shared.settings import Settings
from tests.care_plans.support import query
from tests.conftest import auth
from tests.helpers import relate, synthetic_nhs_number
from tests.notifications.alerts.test_recipients import alert_event, apply
from tests.notifications.message_support import running

CRISIS: dict[str, Any] = {
    "plan": "Go to my sister's; ring the home treatment team.",
    "when": "If I cannot stop thinking about hurting myself",
    "who_to_call": [
        {
            "id": "sister",
            "name": "Jamie Synthetic",
            "relationship": "sister",
            "phone": "07700 900321",
        },
        {"name": "Samaritans", "role": "listening line", "phone": "116 123"},
    ],
}


@pytest.fixture(scope="module")
async def care_plans_sessions(infra: Settings):  # type: ignore[no-untyped-def]
    """Sessions on the care plans schema, to read its audit log."""
    engine = make_engine(infra, "care_plans")
    yield make_sessionmaker(engine)
    await engine.dispose()


def coordinator(s: Settings, sub: str = "coord-crisis-view") -> dict[str, str]:
    return auth(s, role="coordinator", org="ICB-TEST", ics=s.ics, sub=sub)


async def plan_with_crisis(s: Settings) -> dict[str, Any]:
    nhs, gp = synthetic_nhs_number(), f"GP-{uuid.uuid4().hex[:8].upper()}"
    await relate(s, nhs, gp)
    async with running(s, "care_plans") as http:
        r = await http.post(
            "/care-plans",
            headers=auth(s, role="clinician", org=gp),
            json={"nhs_number": nhs, "content": {"crisis": CRISIS}},
        )
        assert r.status_code == 201, r.text
        return r.json()  # type: ignore[no-any-return]


async def read_alert(s: Settings, alert_id: str, headers: dict[str, str]) -> dict[str, Any]:
    async with running(s, "notifications") as http:
        r = await http.get(f"/alerts/{alert_id}", headers=headers)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


class TestCrisisPlanOnTheAlert:
    async def test_a_phq9_item9_alert_shows_the_crisis_plan_read_as_the_coordinator(
        self, running_apps, notifications_sessions, care_plans_sessions
    ) -> None:  # type: ignore[no-untyped-def]
        s = running_apps
        plan = await plan_with_crisis(s)
        event = alert_event("raised", orgs=[], patient_id=plan["patient_id"])
        await apply(notifications_sessions, s, event)
        body = await read_alert(s, event.data["alert_id"], coordinator(s))
        crisis = body["crisis_plan"]
        assert body["crisis_plan_unavailable"] is None
        assert (crisis["plan_id"], crisis["plan"], crisis["when"]) == (
            plan["id"],
            CRISIS["plan"],
            CRISIS["when"],
        )
        assert [
            (c["name"], c["relationship"], c["role"], c["phone"]) for c in crisis["contacts"]
        ] == [
            ("Jamie Synthetic", "sister", None, "07700 900321"),
            ("Samaritans", None, "listening line", "116 123"),
        ]
        # care plans decided and audited the read as the coordinator who read the alert
        audit = await query(
            care_plans_sessions,
            "SELECT actor, action FROM audit_log WHERE "
            "resource_id = :p AND resource_type = 'CarePlanCrisis'",
            p=plan["id"],
        )
        assert [(a.actor, a.action) for a in audit] == [("coord-crisis-view", "read")]

    async def test_without_a_care_plan_the_alert_says_why(
        self, running_apps, notifications_sessions
    ) -> None:  # type: ignore[no-untyped-def]
        s = running_apps
        event = alert_event("raised", orgs=[], patient_id=f"pt_{uuid.uuid4().hex[:16]}")
        await apply(notifications_sessions, s, event)
        body = await read_alert(s, event.data["alert_id"], coordinator(s))
        assert body["crisis_plan"] is None
        assert "no care plan is recorded" in body["crisis_plan_unavailable"]

    async def test_other_alerts_carry_no_crisis_plan(
        self, running_apps, notifications_sessions
    ) -> None:  # type: ignore[no-untyped-def]
        s = running_apps
        plan = await plan_with_crisis(s)
        event = alert_event(
            "raised", orgs=[], rule="stalled.not_triaged", patient_id=plan["patient_id"]
        )
        await apply(notifications_sessions, s, event)
        body = await read_alert(s, event.data["alert_id"], coordinator(s))
        assert body["crisis_plan"] is None and body["crisis_plan_unavailable"] is None
