"""The person's crisis plan on a safety alert (#15): a PHQ-9 item 9 alert shows what to do in a
crisis and who to call, read from the care plans API when the alert is read.

The read is made with the caller's own token, so the care plans service decides whether this
coordinator may see the plan (coordination in the person's ICS) and audits the read as theirs
(`CarePlanCrisis`); nothing of the plan is stored here. When care plans cannot answer, the
alert still answers, with `crisis_plan_unavailable` saying why (never a 500).
"""

from __future__ import annotations

import re
from datetime import datetime
from urllib.parse import quote

from fastapi import Request
from pydantic import BaseModel, Field, ValidationError

from services.notifications import service_apis
from services.notifications.alerts.schemas import AlertDetail

#: the rules whose alerts show the person's crisis plan
CRISIS_PLAN_RULES = frozenset({"safety.phq9_item9"})
_BEARER = re.compile(r"^Bearer\s+(\S+)$", re.IGNORECASE)


class CrisisContactView(BaseModel):
    name: str
    relationship: str | None = None
    role: str | None = None
    phone: str


class CrisisPlanView(BaseModel):
    plan_id: str
    version: int
    updated_at: datetime
    when: str | None = None
    plan: str | None = None
    contacts: list[CrisisContactView] = Field(default_factory=list)


class AlertWithCrisisPlan(AlertDetail):
    """An alert's detail; on a PHQ-9 item 9 alert, the person's crisis plan too."""

    crisis_plan: CrisisPlanView | None = Field(
        default=None,
        description="a PHQ-9 item 9 alert: the person's crisis plan and who to "
        "call, read from their care plan now",
    )
    crisis_plan_unavailable: str | None = Field(
        default=None, description="set when a crisis plan should show and cannot: why"
    )


def unavailable_words(exc: service_apis.ApiError) -> str:
    if exc.status == 404:
        return (
            "no care plan is recorded for this person, or it is not one you may see: "
            "ask their GP practice for their crisis plan"
        )
    if exc.status == 403:
        return f"the care plans service did not let you see the plan: {exc.message}"
    if exc.status == 401:
        return "the care plans service did not accept your sign-in"
    return exc.message


async def crisis_plan(
    api: service_apis.Apis, token: str, patient_id: str
) -> tuple[CrisisPlanView | None, str | None]:
    """The person's crisis plan as the caller may see it, or None and why not."""
    if not service_apis.PATIENT_ID_RE.fullmatch(patient_id):
        return None, "the alert names no person whose care plan could be looked up"
    try:
        body, _ = await api.get(
            "care_plans", f"/patients/{quote(patient_id, safe='')}/crisis-plan", token
        )
        return CrisisPlanView.model_validate(body), None
    except service_apis.ApiError as exc:
        return None, unavailable_words(exc)
    except ValidationError:
        return None, "the care plans service sent an answer that could not be read"


async def for_alert(
    request: Request, *, rule: str, patient_id: str
) -> tuple[CrisisPlanView | None, str | None]:
    """On an alert read over the API: the crisis plan, if the rule shows one (else nothing)."""
    if rule not in CRISIS_PLAN_RULES:
        return None, None
    m = _BEARER.match(request.headers.get("authorization", ""))
    if m is None:
        return None, "the crisis plan is read with your own sign-in, and none was sent"
    return await crisis_plan(service_apis.apis(request), m.group(1), patient_id)
