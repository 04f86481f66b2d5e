"""What the referrals tests share: organisations, ICSs and directory services of their own,
reading what a request wrote, and driving a referral through its lifecycle over the API.

Every test makes its own organisations (and usually its own ICS and directory service), so no
test sees another's rows and list totals can be compared exactly.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jsonschema
from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker

from shared.errors import PROBLEM_BASE, PROBLEM_JSON
from shared.events.registry import SCHEMA_DIR
from shared.settings import Settings
from tests.conftest import auth, publish_directory_state
from tests.helpers import referral_body

# --- identities --------------------------------------------------------------------------------


def new_org(prefix: str = "GP") -> str:
    """A unique organisation code (letters, digits, '-', at most 20 characters)."""
    code = f"{prefix}-{uuid.uuid4().hex[:8].upper()}"
    assert len(code) <= 20, code
    return code


def new_ics() -> str:
    return f"ICS-{uuid.uuid4().hex[:8].upper()}"


def new_user() -> str:
    return f"user-{uuid.uuid4().hex[:10]}"


# --- the directory replica ---------------------------------------------------------------------


@dataclass(frozen=True)
class Service:
    id: str
    org: str
    category: str
    status: str = "active"


async def new_service(
    s: Settings,
    sessions: async_sessionmaker,
    *,
    org: str | None = None,
    category: str = "pain_management_programme",
    status: str = "active",
) -> Service:
    """A directory service of its own, put into the referrals service's replica."""
    svc = Service(
        id=f"svc-{uuid.uuid4().hex[:12]}",
        org=org or new_org("SVC"),
        category=category,
        status=status,
    )
    await publish_directory_state(s, sessions, [(svc.id, svc.org, svc.category, svc.status)])
    return svc


# --- reading what was written ------------------------------------------------------------------


async def query(sessions: async_sessionmaker, sql: str, **params: Any) -> list[Any]:
    async with sessions() as session:
        result = await session.exec(text(sql).bindparams(**params))  # type: ignore[call-overload]
        return list(result.all())


async def referrals_of(sessions: async_sessionmaker, patient_id: str) -> list[Any]:
    return await query(sessions, "SELECT * FROM referral WHERE patient_id = :p", p=patient_id)


async def referral_row(sessions: async_sessionmaker, referral_id: str) -> Any:
    [row] = await query(sessions, "SELECT * FROM referral WHERE id = :r", r=referral_id)
    return row


async def outbox_of(sessions: async_sessionmaker, patient_id: str) -> list[Any]:
    return await query(sessions, "SELECT * FROM outbox WHERE key = :p ORDER BY seq", p=patient_id)


async def events_of(sessions: async_sessionmaker, referral_id: str) -> list[Any]:
    """The outbox rows of one referral, in the order they were written."""
    return await query(
        sessions,
        "SELECT * FROM outbox WHERE payload->'data'->>'referral_id' = :r ORDER BY seq",
        r=referral_id,
    )


async def audit_of(sessions: async_sessionmaker, patient_id: str) -> list[Any]:
    return await query(
        sessions, "SELECT * FROM audit_log WHERE patient_id = :p ORDER BY at", p=patient_id
    )


async def audit_of_referral(sessions: async_sessionmaker, referral_id: str) -> list[Any]:
    return await query(
        sessions,
        "SELECT * FROM audit_log WHERE resource_id = :r ORDER BY at, action",
        r=referral_id,
    )


async def transitions_of(sessions: async_sessionmaker, referral_id: str) -> list[Any]:
    return await query(
        sessions,
        "SELECT * FROM referral_transition WHERE referral_id = :r ORDER BY id",
        r=referral_id,
    )


def assert_problem(r: httpx.Response, status: int, *words: str) -> dict[str, Any]:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].split(";")[0] == PROBLEM_JSON
    body = r.json()
    assert body["status"] == status
    assert body["type"].startswith(PROBLEM_BASE)
    assert body["title"] and body["detail"]
    for w in words:
        assert w in body["detail"], (w, body["detail"])
    return body


def assert_event_matches_its_schema(payload: dict[str, Any]) -> None:
    """The event's data validates against the JSON Schema its `dataschema` names."""
    name = payload["dataschema"].rsplit("/", 1)[1]
    schema = json.loads((SCHEMA_DIR / name).read_text())
    jsonschema.validate(payload["data"], schema)


def assert_no_personal_data(payload: dict[str, Any], *personal: str | None) -> None:
    dumped = json.dumps(payload)
    for value in personal:
        if value:
            assert value not in dumped, value


def personal_data(referral: dict[str, Any]) -> list[str]:
    """What an event must never carry of a referral (as the API returned it)."""
    return [
        referral["nhs_number"],
        referral["given_name"],
        referral["family_name"],
        referral["birth_date"],
        referral["clinical_summary"],
        referral["from_practitioner"],
        *referral["communication_needs"],
    ]


# --- the parties to a referral, and driving it -------------------------------------------------


@dataclass(frozen=True)
class Parties:
    """A referring organisation and a receiving directory service in one ICS, for one test."""

    ics: str
    referrer_org: str
    referrer_user: str
    service: Service
    receiver_user: str

    @property
    def receiver_org(self) -> str:
        return self.service.org

    def referrer(self, s: Settings, role: str = "clinician") -> dict[str, str]:
        return auth(s, role=role, org=self.referrer_org, ics=self.ics, sub=self.referrer_user)

    def receiver(self, s: Settings, role: str = "service_staff") -> dict[str, str]:
        return auth(s, role=role, org=self.receiver_org, ics=self.ics, sub=self.receiver_user)

    def side(self, s: Settings, side: str) -> dict[str, str]:
        return self.referrer(s) if side == "referrer" else self.receiver(s)

    def user(self, side: str) -> str:
        return self.referrer_user if side == "referrer" else self.receiver_user

    def org(self, side: str) -> str:
        return self.referrer_org if side == "referrer" else self.receiver_org


async def new_parties(
    s: Settings, sessions: async_sessionmaker, *, category: str = "pain_management_programme"
) -> Parties:
    return Parties(
        ics=new_ics(),
        referrer_org=new_org("GP"),
        referrer_user=new_user(),
        service=await new_service(s, sessions, category=category),
        receiver_user=new_user(),
    )


#: which side takes each action in these tests (cancel: either; the referrer by default)
SIDE = {
    "submit": "referrer",
    "cancel": "referrer",
    "accept": "receiver",
    "reject": "receiver",
    "return": "receiver",
    "book": "receiver",
    "attend": "receiver",
    "did-not-attend": "receiver",
    "discharge": "receiver",
    "hold": "receiver",
    "resume": "receiver",
}

#: a valid reason for each action that needs one
REASON = {
    "reject": "not-appropriate-for-service",
    "return": "advice-and-guidance-given",
    "discharge": "treatment-completed",
    "cancel": "patient-request",
    "hold": "awaiting-information",
}

ALL_ACTIONS = [
    "submit",
    "accept",
    "reject",
    "return",
    "book",
    "attend",
    "did-not-attend",
    "discharge",
    "cancel",
    "hold",
    "resume",
]
ALL_STATES = [
    "draft",
    "submitted",
    "accepted",
    "rejected",
    "returned",
    "booked",
    "attended",
    "did_not_attend",
    "discharged",
    "cancelled",
    "on_hold",
]
OPEN_STATES = ["draft", "submitted", "accepted", "booked", "attended", "did_not_attend", "on_hold"]

#: the shortest way into each state from a new referral (drafts are created as drafts)
PATH_TO: dict[str, list[str]] = {
    "draft": [],
    "submitted": [],
    "accepted": ["accept"],
    "rejected": ["reject"],
    "returned": ["return"],
    "booked": ["accept", "book"],
    "attended": ["accept", "book", "attend"],
    "did_not_attend": ["accept", "book", "did-not-attend"],
    "discharged": ["accept", "book", "attend", "discharge"],
    "cancelled": ["cancel"],
    "on_hold": ["hold"],
}


def appointment(days: int = 14) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).replace(microsecond=0).isoformat()


def valid_body(action: str) -> dict[str, Any]:
    """A body with which `action` is valid in a state that allows it."""
    body: dict[str, Any] = {}
    if action in REASON:
        body["reason_code"] = REASON[action]
    if action == "book":
        body["appointment_at"] = appointment()
    return body


def if_match(version: int) -> dict[str, str]:
    return {"If-Match": f'W/"{version}"'}


async def create(
    client: httpx.AsyncClient,
    s: Settings,
    parties: Parties,
    role: str = "clinician",
    **overrides: Any,
) -> dict[str, Any]:
    body = referral_body(to_service_id=parties.service.id, to_org=parties.receiver_org, **overrides)
    r = await client.post("/referrals", json=body, headers=parties.referrer(s, role))
    assert r.status_code == 201, r.text
    return r.json()


async def act(
    client: httpx.AsyncClient,
    s: Settings,
    parties: Parties,
    referral: dict[str, Any],
    action: str,
    *,
    side: str | None = None,
    version: int | None = None,
    headers: dict[str, str] | None = None,
    body: dict[str, Any] | None = None,
) -> httpx.Response:
    """POST /referrals/{id}/{action} as `side` (or with `headers`) and the referral's current
    ETag; the body is a valid one for the action unless given."""
    payload = valid_body(action) if body is None else body
    h = dict(headers if headers is not None else parties.side(s, side or SIDE[action]))
    h.update(if_match(referral["version"] if version is None else version))
    return await client.post(f"/referrals/{referral['id']}/{action}", json=payload, headers=h)


async def step(
    client: httpx.AsyncClient,
    s: Settings,
    parties: Parties,
    referral: dict[str, Any],
    action: str,
    **kw: Any,
) -> dict[str, Any]:
    r = await act(client, s, parties, referral, action, **kw)
    assert r.status_code == 200, (action, r.text)
    return r.json()


async def drive_to(
    client: httpx.AsyncClient, s: Settings, parties: Parties, state: str, **overrides: Any
) -> dict[str, Any]:
    """A new referral, moved over the API into `state`."""
    referral = await create(client, s, parties, as_draft=state == "draft", **overrides)
    for action in PATH_TO[state]:
        referral = await step(client, s, parties, referral, action)
    assert referral["state"] == state
    return referral
