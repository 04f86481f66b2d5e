"""Personal details for a message, fetched at send time from the services that own them, with
the notifications service's own credential (they never travel in events):

- the referral (`GET /referrals/{id}/message-context`): the person's given name, who referred
  and from where, the receiving service, the appointment, the advice given, the person's
  consent to carer sharing;
- the person's contact (`GET /patients/{patient_id}/contact` on care plans): communication
  needs, email, mobile, carers and what each may see;
- the directory service (`GET /services/{id}`): its name and email.

A network error, a 5xx or a refused credential is `DetailsUnavailable` (try again later); a
referral that does not exist is `DetailsGone` (permanent).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx

from shared.auth import service_token
from shared.errors import WaymarkError
from shared.settings import Settings

SERVICE_NAME = "notifications"


class DetailsUnavailable(Exception):
    """The owning service could not answer now."""


class DetailsGone(Exception):
    """The owning service says there is nothing to fetch."""


def api_base(settings: Settings, service: str) -> str:
    """Where a service's API answers: WAYMARK_API_URLS in Compose/Kubernetes (one host per
    service), 127.0.0.1 at the service's port locally."""
    return settings.api_url(service)


@dataclass(frozen=True)
class ReferralDetails:
    referral_id: str
    patient_id: str
    given_name: str
    referrer_user: str
    referrer_org: str
    from_practitioner: str
    to_org: str
    to_service_id: str
    service_category: str
    state: str
    appointment_at: datetime | None
    note: str | None
    reason_code: str | None
    communication_needs: list[str]
    consent_to_carer_sharing: bool

    def template_values(self) -> dict[str, Any]:
        return {
            "referral_id": self.referral_id,
            "given_name": self.given_name,
            "from_practitioner": self.from_practitioner,
            "from_org": self.referrer_org,
            "to_org": self.to_org,
            "service_category": self.service_category,
            "appointment_at": self.appointment_at,
            "note": self.note,
            "reason_code": self.reason_code,
        }


@dataclass(frozen=True)
class CarerContact:
    id: str
    name: str
    relationship: str
    contact: str
    may_see: list[str]


@dataclass(frozen=True)
class PersonContact:
    communication: dict[str, Any]
    carers: list[CarerContact] = field(default_factory=list)

    @property
    def email(self) -> str | None:
        return self.communication.get("email")

    @property
    def mobile(self) -> str | None:
        return self.communication.get("mobile")


@dataclass(frozen=True)
class ServiceDetails:
    id: str
    name: str
    email: str | None
    org_code: str


class Contacts:
    """Reads from the owning APIs; `http` is shared and closed by its owner."""

    def __init__(self, settings: Settings, http: httpx.AsyncClient) -> None:
        self.settings = settings
        self.http = http

    async def _get(
        self, service: str, path: str, params: dict[str, str] | None = None
    ) -> dict[str, Any] | None:
        """The JSON body, or None on 404."""
        url = f"{api_base(self.settings, service)}{path}"
        try:
            headers = {
                "Authorization": f"Bearer {await service_token(self.settings, SERVICE_NAME)}"
            }
        except (OSError, RuntimeError, WaymarkError) as exc:
            raise DetailsUnavailable(f"no service credential: {exc}") from None
        try:
            r = await self.http.get(url, params=params, headers=headers, timeout=15)
        except httpx.HTTPError as exc:
            raise DetailsUnavailable(f"{service} API unreachable: {type(exc).__name__}") from None
        if r.status_code == 404:
            return None
        if r.status_code != 200:
            # 401/403 is a credential or permission problem an operator can fix: retried
            raise DetailsUnavailable(f"{service} API answered {r.status_code} to {path}")
        try:
            body: dict[str, Any] = r.json()
        except ValueError:
            raise DetailsUnavailable(f"{service} API answered with something not JSON") from None
        return body

    async def referral(self, referral_id: str, event_id: str | None = None) -> ReferralDetails:
        body = await self._get(
            "referrals",
            f"/referrals/{referral_id}/message-context",
            {"event_id": event_id} if event_id else None,
        )
        if body is None:
            raise DetailsGone(f"the referrals service has no referral {referral_id}")
        at = body.get("appointment_at")
        return ReferralDetails(
            referral_id=body["referral_id"],
            patient_id=body["patient_id"],
            given_name=body["given_name"],
            referrer_user=body["referrer_user"],
            referrer_org=body["referrer_org"],
            from_practitioner=body["from_practitioner"],
            to_org=body["to_org"],
            to_service_id=body["to_service_id"],
            service_category=body["service_category"],
            state=body["state"],
            appointment_at=datetime.fromisoformat(at) if at else None,
            note=body.get("note"),
            reason_code=body.get("reason_code"),
            communication_needs=list(body.get("communication_needs") or []),
            consent_to_carer_sharing=bool(body.get("consent_to_carer_sharing")),
        )

    async def person(self, patient_id: str) -> PersonContact | None:
        """The person's contact from their care plan; None if they have no plan."""
        body = await self._get("care_plans", f"/patients/{patient_id}/contact")
        if body is None:
            return None
        carers = [
            CarerContact(
                id=c["id"],
                name=c["name"],
                relationship=c["relationship"],
                contact=c["contact"],
                may_see=list(c.get("may_see") or []),
            )
            for c in body.get("carers") or []
        ]
        return PersonContact(communication=dict(body.get("communication") or {}), carers=carers)

    async def service(self, service_id: str) -> ServiceDetails | None:
        """The directory's entry; None if the directory does not list it."""
        body = await self._get("directory", f"/services/{service_id}")
        if body is None:
            return None
        return ServiceDetails(
            id=body["id"], name=body["name"], email=body.get("email"), org_code=body["org_code"]
        )
