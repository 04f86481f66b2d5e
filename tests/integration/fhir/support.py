"""Builders of the FHIR test resources (synthetic data only: NHS numbers in the 999 range that
is never issued, made-up ODS codes)."""

from __future__ import annotations

import copy
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.fhir import NHS_NUMBER_SYSTEM, ODS_SYSTEM

SNOMED = "http://snomed.info/sct"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
VISIT_SYSTEM = "https://pas.example.org/Id/visit"
BACK_PAIN = "279039007"  # SNOMED CT: Low back pain (finding)


def when(hours_ago: float) -> str:
    return (datetime.now(UTC) - timedelta(hours=hours_ago)).isoformat(timespec="seconds")


def encounter(nhs: str, **kw: Any) -> dict[str, Any]:
    """An A&E attendance for low back pain, the patient named by identifier."""
    body: dict[str, Any] = {
        "resourceType": "Encounter",
        "identifier": [{"system": VISIT_SYSTEM, "value": f"V{uuid.uuid4().hex[:10]}"}],
        "status": "finished",
        "class": {"system": ACT_CODE, "code": "EMER", "display": "emergency"},
        "subject": {"identifier": {"system": NHS_NUMBER_SYSTEM, "value": nhs}},
        "period": {"start": when(5), "end": when(2)},
        "reasonCode": [{"coding": [{"system": SNOMED, "code": BACK_PAIN}]}],
        "serviceProvider": {"identifier": {"system": ODS_SYSTEM, "value": "RX1"}},
    }
    body.update(kw)
    return body


def appointment(nhs: str, **kw: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "Appointment",
        "identifier": [{"system": "https://gp.example.org/Id/slot", "value": uuid.uuid4().hex}],
        "status": "booked",
        "start": (datetime.now(UTC) + timedelta(days=3)).isoformat(timespec="seconds"),
        "end": (datetime.now(UTC) + timedelta(days=3, minutes=10)).isoformat(timespec="seconds"),
        "participant": [
            {
                "actor": {"identifier": {"system": NHS_NUMBER_SYSTEM, "value": nhs}},
                "status": "accepted",
            },
            {
                "actor": {"identifier": {"system": ODS_SYSTEM, "value": "A81001"}},
                "status": "accepted",
            },
        ],
    }
    body.update(kw)
    return body


def entry(resource: dict[str, Any], method: str = "POST") -> dict[str, Any]:
    return {
        "fullUrl": f"urn:uuid:{uuid.uuid4()}",
        "resource": resource,
        "request": {"method": method, "url": resource["resourceType"]},
    }


def bundle(kind: str, *resources: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": [entry(r) for r in resources]}


def contained_patient(nhs: str) -> dict[str, Any]:
    return {
        "contained": [
            {
                "resourceType": "Patient",
                "id": "p1",
                "identifier": [{"system": NHS_NUMBER_SYSTEM, "value": nhs}],
            }
        ],
        "subject": {"reference": "#p1"},
    }


def changed(resource: dict[str, Any], **kw: Any) -> dict[str, Any]:
    out = copy.deepcopy(resource)
    out.update(kw)
    return out
