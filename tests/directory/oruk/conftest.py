"""Helpers of the Open Referral UK tests: fully nested HSDS 3 records using every field Waymark
keeps, Waymark's facts as attributes of its taxonomies, and an import over HTTP."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from services.directory.oruk.taxonomies import (
    CATEGORY_TAXONOMY,
    COMMUNICATION_TAXONOMY,
    CONDITION_TAXONOMY,
    DELIVERY_TAXONOMY,
    REFERRAL_TAXONOMY,
    Taxonomy,
)
from shared.settings import Settings
from tests.conftest import auth


def uid() -> str:
    return str(uuid.uuid4())


def waymark_attribute(
    service_id: str, tax: Taxonomy, code: str, value: str | None = None
) -> dict[str, Any]:
    term = next(t for t in tax.terms if t.code == code)
    out: dict[str, Any] = {
        "id": uid(),
        "link_id": service_id,
        "link_type": "service",
        "link_entity": "service",
        "taxonomy_term_id": tax.term_id(code),
        "taxonomy_term": {
            "id": tax.term_id(code),
            "code": code,
            "name": term.name,
            "description": term.description,
            "taxonomy": tax.name,
            "taxonomy_id": tax.id,
            "language": "en",
        },
    }
    if value is not None:
        out["value"] = value
    return out


def oruk_record(
    org_code: str, *, org_id: str | None = None, service_id: str | None = None
) -> dict[str, Any]:
    """A fully nested HSDS 3 service using every field Waymark keeps."""
    sid, org_id = service_id or uid(), org_id or uid()
    loc_id = uid()
    return {
        "id": sid,
        "organization_id": org_id,
        "name": "Wayford Persistent Pain Programme",
        "alternate_name": "WPPP",
        "description": "A twelve week group programme for people "
        "living with persistent pain and low mood.",
        "url": "https://pain.wayford.example/programme",
        "email": "pain@wayford.example",
        "status": "active",
        "interpretation_services": "Interpreters on request.",
        "application_process": "Referral by GP or physiotherapist through Waymark.",
        "fees_description": "Free on the NHS.",
        "accreditations": "CQC registered.",
        "eligibility_description": "Adults with pain for over three months.",
        "minimum_age": 18,
        "maximum_age": 99,
        "assured_date": "2026-02-01",
        "assurer_email": "assurance@wayford.example",
        "alert": "New evening group from May.",
        "organization": {
            "id": org_id,
            "name": f"Provider {org_code}",
            "description": "NHS pain service.",
            "email": "info@wayford.example",
            "website": "https://wayford.example",
            "organization_identifiers": [
                {
                    "id": uid(),
                    "identifier_scheme": "ODS",
                    "identifier_type": "ODS code",
                    "identifier": org_code,
                }
            ],
        },
        "phones": [{"id": uid(), "number": "01632 960123", "type": "voice"}],
        "schedules": [
            {
                "id": uid(),
                "service_id": sid,
                "freq": "WEEKLY",
                "interval": 1,
                "byday": "TU,TH",
                "opens_at": "09:30",
                "closes_at": "16:00",
                "description": "Groups on Tuesday and Thursday.",
                "valid_from": "2026-01-01",
            }
        ],
        "service_areas": [
            {
                "id": uid(),
                "service_id": sid,
                "name": "Wayford and Marsh",
                "description": "Residents of the Wayford and Marsh ICS.",
            }
        ],
        "service_at_locations": [
            {
                "id": uid(),
                "service_id": sid,
                "location_id": loc_id,
                "location": {
                    "id": loc_id,
                    "location_type": "physical",
                    "name": "Wayford Health Centre",
                    "description": "Ground floor, step-free.",
                    "latitude": 53.709534,
                    "longitude": -1.931754,
                    "external_identifier": "100012345678",
                    "external_identifier_type": "UPRN",
                    "addresses": [
                        {
                            "id": uid(),
                            "location_id": loc_id,
                            "address_1": "1 Market St",
                            "city": "Wayford",
                            "postal_code": "WY1 0BG",
                            "country": "GB",
                            "address_type": "physical",
                        }
                    ],
                    "accessibility": [
                        {
                            "id": uid(),
                            "location_id": loc_id,
                            "description": "Hearing loop at reception.",
                        }
                    ],
                },
            }
        ],
        "languages": [
            {"id": uid(), "service_id": sid, "name": "English", "code": "en"},
            {"id": uid(), "service_id": sid, "name": "Polish", "code": "pl"},
        ],
        "funding": [{"id": uid(), "source": "NHS Wayford and Marsh ICB"}],
        "cost_options": [
            {
                "id": uid(),
                "service_id": sid,
                "option": "All sessions",
                "currency": "GBP",
                "amount": 0,
                "amount_description": "free",
            }
        ],
        "contacts": [
            {
                "id": uid(),
                "name": "Programme coordinator",
                "title": "Coordinator",
                "email": "coord@wayford.example",
                "phones": [{"id": uid(), "number": "01632 960124"}],
            }
        ],
        "attributes": [
            waymark_attribute(sid, CATEGORY_TAXONOMY, "pain_management_programme"),
            waymark_attribute(sid, CONDITION_TAXONOMY, "persistent_pain"),
            waymark_attribute(sid, CONDITION_TAXONOMY, "mental_health"),
            waymark_attribute(sid, DELIVERY_TAXONOMY, "in_person"),
            waymark_attribute(sid, DELIVERY_TAXONOMY, "group"),
            waymark_attribute(sid, COMMUNICATION_TAXONOMY, "interpreters"),
            waymark_attribute(sid, REFERRAL_TAXONOMY, "waiting_weeks", "9"),
            {
                "id": uid(),
                "link_id": sid,
                "link_type": "service",
                "link_entity": "service",
                "taxonomy_term_id": "esd-st-1091",
                "taxonomy_term": {
                    "id": "esd-st-1091",
                    "code": "1091",
                    "name": "Pain management",
                    "taxonomy": "esd service types",
                    "taxonomy_id": "esd-service-types",
                    "term_uri": "https://example.org/def/service/1091",
                },
            },
        ],
    }


async def import_(
    client: httpx.AsyncClient, headers: dict[str, str], records: list[Any]
) -> dict[str, Any]:
    r = await client.post("/imports/oruk", json={"contents": records}, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def staff(s: Settings, code: str) -> dict[str, str]:
    return auth(s, role="service_staff", org=code)
