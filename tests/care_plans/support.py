"""What the care plans tests share: organisations of their own, plans made over the API,
reading what a request wrote."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker

from shared.settings import Settings
from tests.conftest import auth
from tests.helpers import relate, synthetic_nhs_number


def new_org(prefix: str = "GP") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8].upper()}"


def new_ics() -> str:
    return f"ICS-{uuid.uuid4().hex[:8].upper()}"


def plan_content(**overrides: Any) -> dict[str, Any]:
    content: dict[str, Any] = {
        "what_matters_to_me": "Getting back to my allotment and sleeping through the night.",
        "goals": [
            {
                "id": "walk",
                "what": "Walk to the allotment twice a week",
                "by_when": "2026-09-01",
                "owner": "person",
                "status": "active",
            }
        ],
        "actions": [
            {
                "id": "pmp",
                "what": "Join the pain management programme",
                "who": "service",
                "service_name": "Pain management programme",
                "directory_service_id": "svc-pain-mgmt",
                "status": "agreed",
            }
        ],
        "resources": [{"directory_service_id": "svc-yoga", "title": "Yoga for healthy backs"}],
        "workplace": {
            "job_status": "off_sick",
            "adjustments_agreed": ["phased return"],
            "fit_note_status": "may_be_fit",
            "return_to_work_goal": "Back to three days a week by autumn",
        },
        "carers": [
            {
                "id": "carer-1",
                "name": "Sam Synthetic",
                "relationship": "partner",
                "contact": "07700 900000",
                "may_see": ["goals", "crisis"],
            }
        ],
        "communication": {
            "interpreter": True,
            "language": "Polish",
            "preferred_channel": "phone",
            "preferred_time": "mornings",
        },
        "crisis": {
            "who_to_call": [{"name": "Crisis line", "phone": "111"}],
            "when": "If I feel unsafe",
        },
        "next_review_date": "2026-12-01",
    }
    content.update(overrides)
    return content


class World:
    """A holder organisation, a consented one, an outsider, in the ICS the deployment serves
    (a plan belongs to it, whatever a token says)."""

    def __init__(self, s: Settings) -> None:
        self.s = s
        self.ics = s.ics
        self.holder = new_org("GP")
        self.consented = new_org("PAIN")
        self.outsider = new_org("TT")

    def as_(
        self, org: str, role: str = "clinician", ics: str | None = None, sub: str | None = None
    ) -> dict[str, str]:
        return auth(self.s, role=role, org=org, ics=ics or self.ics, sub=sub)

    def holder_h(self) -> dict[str, str]:
        return self.as_(self.holder)


async def create_plan(client: httpx.AsyncClient, w: World, **body: Any) -> dict[str, Any]:
    """A plan held by `w.holder`, which referred the person first (its care relationship)."""
    payload = {
        "nhs_number": synthetic_nhs_number(),
        "content": plan_content(),
        "consented_organisations": [w.consented],
        "reason": "first conversation",
        **body,
    }
    await relate(w.s, payload["nhs_number"], w.holder)
    r = await client.post("/care-plans", json=payload, headers=w.holder_h())
    assert r.status_code == 201, r.text
    return {**r.json(), "_nhs_number": payload["nhs_number"]}


async def query(sessions: async_sessionmaker, sql: str, **params: Any) -> list[Any]:
    async with sessions() as session:
        result = await session.exec(text(sql).bindparams(**params))  # type: ignore[call-overload]
        return list(result.all())


async def outbox_of(sessions: async_sessionmaker, patient_id: str) -> list[Any]:
    return await query(sessions, "SELECT * FROM outbox WHERE key = :k ORDER BY seq", k=patient_id)


def phq9(total: int, item9: int = 0) -> dict[str, int]:
    values, remaining = [0] * 9, total - item9
    values[8] = item9
    for i in range(8):
        values[i] = min(3, remaining)
        remaining -= values[i]
    assert remaining == 0
    return {str(i + 1): v for i, v in enumerate(values)}


def gad7(total: int) -> dict[str, int]:
    values, remaining = [0] * 7, total
    for i in range(7):
        values[i] = min(3, remaining)
        remaining -= values[i]
    return {str(i + 1): v for i, v in enumerate(values)}
