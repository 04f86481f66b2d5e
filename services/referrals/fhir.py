"""The FHIR R4 face of referrals: ServiceRequest in and out, the referral's status as a Task,
errors as OperationOutcome.

Resources are validated with `fhir.resources` (its R4B package: ServiceRequest, Task, Patient
and Bundle are unchanged between R4 4.0.1 and R4B 4.3.0). BaRS semantics where they apply: a
new referral is a ServiceRequest with status `active` (`draft` saves a draft); a cancelled
referral reads back `revoked`.

Two shapes come in (docs/integration/referrals.md):
- Waymark's own: a contained Patient (NHS number, name, birth date), the performer by directory
  service id, Waymark's extensions under EXT: consent-to-referral and consent-to-carer-sharing
  (valueBoolean), communication-need (valueString, repeating), referral-source (valueCode);
- the standard one other systems send: subject by NHS number identifier, requester by ODS code,
  performer by ODS code plus a service code the directory maps (fhir_in.py), no extensions.
  Without consent-to-referral the referral is one for direct care under implied consent
  (consent_basis `implied`); consent to share with carers is never implied.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from pydantic import ValidationError

from services.referrals.domain import Priority, ReferralState, Source
from services.referrals.models import Referral
from services.referrals.schemas import PatientIn, PatientRef, ReferralFromEhr
from shared.errors import ValidationFailed
from shared.fhir import NHS_NUMBER_SYSTEM, ODS_SYSTEM, PSEUDONYM_SYSTEM, patient_reference
from shared.identifiers import ORG_CODE
from shared.vocabulary import Category

SNOMED = "http://snomed.info/sct"
BASE = "https://waymark.nhs.example/fhir"
EXT = f"{BASE}/StructureDefinition/"
DIRECTORY_SERVICE_SYSTEM = f"{BASE}/Id/directory-service"
REFERRAL_SYSTEM = f"{BASE}/Id/referral"
#: an imported referral's id in its source system: <this>/<source_system>
SOURCE_REF_SYSTEM = f"{BASE}/Id/source-referral"
STATE_SYSTEM = f"{BASE}/CodeSystem/referral-state"
REASON_SYSTEM = f"{BASE}/CodeSystem/transition-reason"
CATEGORY_SYSTEM = f"{BASE}/CodeSystem/service-category"

SERVICE_REQUEST_STATUS: dict[str, str] = {
    "draft": "draft",
    "submitted": "active",
    "accepted": "active",
    "booked": "active",
    "attended": "active",
    "did_not_attend": "active",
    "on_hold": "on-hold",
    "rejected": "revoked",
    "returned": "revoked",
    "cancelled": "revoked",
    "discharged": "completed",
}

# FHIR workflow Task states; businessStatus carries the finer Waymark state
TASK_STATUS: dict[str, str] = {
    "draft": "draft",
    "submitted": "requested",
    "accepted": "accepted",
    "rejected": "rejected",
    "returned": "rejected",
    "booked": "in-progress",
    "attended": "in-progress",
    "did_not_attend": "in-progress",
    "on_hold": "on-hold",
    "discharged": "completed",
    "cancelled": "cancelled",
}

FHIR_PRIORITY_TO_WAYMARK = {
    "routine": Priority.ROUTINE,
    "urgent": Priority.URGENT,
    "asap": Priority.URGENT,
    "stat": Priority.URGENT,
}


class FhirInvalid(ValidationFailed):
    """A resource Waymark cannot accept; rendered as an OperationOutcome."""


def _invalid(what: str, root: str, exc: ValidationError) -> FhirInvalid:
    """The model's errors as an OperationOutcome's issues, each at its FHIRPath from `root`
    (ServiceRequest.reasonCode[0].coding), and in words."""
    errors = [{"location": [root, *e["loc"]], "message": e["msg"]} for e in exc.errors()[:20]]
    words = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5])
    return FhirInvalid(f"{what}: {words}", errors=errors)


def _ext(resource: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [e for e in resource.get("extension", []) or [] if e.get("url") == EXT + name]


def _one_bool(resource: dict[str, Any], name: str, *, required: bool) -> bool:
    found = _ext(resource, name)
    if not found:
        if required:
            raise FhirInvalid(f"ServiceRequest.extension {EXT + name} (valueBoolean) is required")
        return False
    value = found[0].get("valueBoolean")
    if not isinstance(value, bool):
        raise FhirInvalid(f"extension {EXT + name} needs valueBoolean")
    return value


@dataclass(frozen=True)
class Performer:
    """Who a ServiceRequest is for: Waymark's directory id (Waymark's own shape), or the
    receiving organisation's ODS code and a service code the directory maps (the standard
    shape), and the service category if the sender coded one in Waymark's system."""

    directory_id: str | None
    ods: str | None
    service_code: tuple[str, str] | None  # (system, value)
    category: str | None


@dataclass(frozen=True)
class ParsedServiceRequest:
    fields: dict[str, Any]  # a ReferralFromEhr's fields but the directory service
    performer: Performer


def _performer(sr: Any) -> Performer:
    directory, ods, codes = [], [], []
    for p in sr.performer or []:
        ident = p.identifier
        if ident is None or not ident.system or not ident.value:
            raise FhirInvalid(
                "each ServiceRequest.performer must carry an identifier (system and value): "
                f"a directory service ({DIRECTORY_SERVICE_SYSTEM}), the receiving "
                f"organisation's ODS code ({ODS_SYSTEM}), or a service code the directory maps"
            )
        if ident.system == DIRECTORY_SERVICE_SYSTEM:
            directory.append(ident.value)
        elif ident.system == ODS_SYSTEM:
            ods.append(ident.value)
        else:
            codes.append((ident.system, ident.value))
    if len(directory) > 1 or len(ods) > 1 or len(codes) > 1 or (directory and codes):
        raise FhirInvalid(
            "ServiceRequest.performer must name exactly one service: one directory service "
            f"({DIRECTORY_SERVICE_SYSTEM}) or one service code, with at most one ODS code"
        )
    if not directory and not codes:
        raise FhirInvalid(
            "ServiceRequest.performer must name the service: a directory service "
            f"({DIRECTORY_SERVICE_SYSTEM}), or a service code the directory maps (e.g. an "
            "e-RS service id) with the receiving organisation's ODS code"
        )
    if ods and not ORG_CODE.fullmatch(ods[0]):
        raise FhirInvalid(f"ServiceRequest.performer ODS code {ods[0][:30]!r} is not an ODS code")
    categories = [
        c.code
        for cc in (sr.category or [])
        for c in (cc.coding or [])
        if c.system == CATEGORY_SYSTEM and c.code
    ]
    if len(set(categories)) > 1:
        raise FhirInvalid(f"ServiceRequest.category names more than one {CATEGORY_SYSTEM} code")
    if categories and categories[0] not in {c.value for c in Category}:
        raise FhirInvalid(
            f"ServiceRequest.category {categories[0][:40]!r} is not a code of {CATEGORY_SYSTEM}; "
            f"one of: {', '.join(c.value for c in Category)}"
        )
    return Performer(
        directory_id=directory[0] if directory else None,
        ods=ods[0] if ods else None,
        service_code=codes[0] if codes else None,
        category=categories[0] if categories else None,
    )


def _requester(sr: Any, requester_org: str) -> str:
    req = sr.requester
    ident = req.identifier if req is not None else None
    if ident is not None and ident.system == ODS_SYSTEM and ident.value != requester_org:
        raise FhirInvalid(
            f"ServiceRequest.requester's ODS code {str(ident.value)[:20]!r} is not your "
            f"organisation ({requester_org}): a system refers for its own organisation"
        )
    return req.display if req is not None and req.display else "unknown practitioner"


def parse_service_request(raw: Any, *, requester_org: str) -> ParsedServiceRequest:
    """Validate an incoming R4 ServiceRequest (Waymark's shape or the standard one)."""
    from fhir.resources.R4B.servicerequest import ServiceRequest

    if not isinstance(raw, dict) or raw.get("resourceType") != "ServiceRequest":
        raise FhirInvalid("the body must be a FHIR ServiceRequest resource")
    try:
        sr = ServiceRequest.model_validate(raw)
    except ValidationError as exc:
        raise _invalid("not a valid R4 ServiceRequest", "ServiceRequest", exc) from None
    if sr.status not in ("active", "draft"):
        raise FhirInvalid(
            f"a new referral is a ServiceRequest with status 'active' (or "
            f"'draft'), not {sr.status!r}"
        )
    if sr.intent not in ("order", "original-order", "proposal", "plan"):
        raise FhirInvalid(f"intent {sr.intent!r} is not supported; use 'order'")
    patient = _patient(sr)
    performer = _performer(sr)
    reasons = [
        c.code
        for rc in (sr.reasonCode or [])
        for c in (rc.coding or [])
        if c.system == SNOMED and c.code
    ]
    if not reasons:
        raise FhirInvalid(f"ServiceRequest.reasonCode needs at least one coding from {SNOMED}")
    summary = " ".join(n.text for n in (sr.note or []) if n.text).strip()
    if not summary:
        raise FhirInvalid("ServiceRequest.note[].text must carry the clinical summary")
    based_on = [
        r.reference.split("/", 1)[1]
        for r in (sr.basedOn or [])
        if r.reference and r.reference.startswith("ServiceRequest/")
    ]
    source_ext = _ext(raw, "referral-source")
    try:
        source = (
            Source(source_ext[0].get("valueCode"))
            if source_ext
            else (Source.ONWARD if based_on else Source.GP)
        )
    except ValueError:
        raise FhirInvalid(f"referral-source must be one of {[s.value for s in Source]}") from None
    priority = FHIR_PRIORITY_TO_WAYMARK.get(sr.priority or "routine")
    if priority is None:
        raise FhirInvalid(f"priority {sr.priority!r} is not supported")
    # consent: Waymark's extension when sent (explicit, as before); absent, a referral for
    # direct care made by a clinical system under implied consent (docs/integration)
    explicit = bool(_ext(raw, "consent-to-referral"))
    fields: dict[str, Any] = dict(
        patient=patient.model_dump(),
        source=source,
        from_practitioner=_requester(sr, requester_org),
        reason_codes=reasons,
        clinical_summary=summary,
        priority=priority,
        consent_to_referral=_one_bool(raw, "consent-to-referral", required=False)
        if explicit
        else True,
        consent_basis="explicit" if explicit else "implied",
        consent_to_carer_sharing=_one_bool(raw, "consent-to-carer-sharing", required=False),
        communication_needs=[e.get("valueString", "") for e in _ext(raw, "communication-need")],
        referred_from=based_on[0] if based_on else None,
        as_draft=sr.status == "draft",
        to_org=performer.ods,
        service_category=performer.category,
    )
    return ParsedServiceRequest(fields, performer)


def to_create(parsed: ParsedServiceRequest, service_id: str) -> ReferralFromEhr:
    """The referral a parsed ServiceRequest makes, to the directory service it names."""
    try:
        return ReferralFromEhr(**parsed.fields, to_service_id=service_id)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5]
        )
        raise FhirInvalid(
            f"the ServiceRequest does not make a valid referral: {problems}"
        ) from None


def _patient(sr: Any) -> PatientIn | PatientRef:
    """A contained Patient (Waymark's shape: NHS number, name and birth date), or the subject
    named by its NHS number identifier (the standard shape: nothing else is needed)."""
    ref = sr.subject.reference if sr.subject else None
    if ref and ref.startswith("#"):
        return _contained_patient(sr)
    ident = sr.subject.identifier if sr.subject else None
    if ident is None or ident.system != NHS_NUMBER_SYSTEM or not ident.value:
        raise FhirInvalid(
            "ServiceRequest.subject must name the person by NHS number (identifier system "
            f"{NHS_NUMBER_SYSTEM}) or reference a contained Patient carrying it"
        )
    try:
        return PatientRef(nhs_number=ident.value)
    except ValidationError as exc:
        raise FhirInvalid(f"ServiceRequest.subject: {exc.errors()[0]['msg']}") from None


def _contained_patient(sr: Any) -> PatientIn:
    ref = sr.subject.reference if sr.subject else None
    if not ref or not ref.startswith("#"):
        raise FhirInvalid(
            "ServiceRequest.subject must reference a contained Patient "
            "(e.g. '#patient') carrying the NHS number, name and birth date"
        )
    patients = [
        c for c in (sr.contained or []) if c.get_resource_type() == "Patient" and c.id == ref[1:]
    ]
    if not patients:
        raise FhirInvalid(f"no contained Patient with id {ref[1:]!r}")
    p = patients[0]
    nhs = [i.value for i in (p.identifier or []) if i.system == NHS_NUMBER_SYSTEM and i.value]
    names = p.name or []
    if not nhs or not names or not names[0].family or not names[0].given or not p.birthDate:
        raise FhirInvalid(
            "the contained Patient needs an NHS number identifier "
            f"({NHS_NUMBER_SYSTEM}), a name (given and family) and birthDate"
        )
    try:
        birth = (
            p.birthDate if isinstance(p.birthDate, date) else date.fromisoformat(str(p.birthDate))
        )
    except ValueError:
        raise FhirInvalid(
            "the contained Patient's birthDate must be a full date (YYYY-MM-DD)"
        ) from None
    try:
        return PatientIn(
            nhs_number=nhs[0],
            given_name=" ".join(names[0].given),
            family_name=names[0].family,
            birth_date=birth,
        )
    except ValidationError as exc:
        raise FhirInvalid(f"the contained Patient is not valid: {exc.errors()[0]['msg']}") from None


def _meta(r: Referral) -> dict[str, Any]:
    return {"versionId": str(r.version), "lastUpdated": r.updated_at.isoformat()}


def _contained_patient_out(r: Referral) -> dict[str, Any]:
    patient: dict[str, Any] = {
        "resourceType": "Patient",
        "id": "patient",
        "identifier": [
            {"system": NHS_NUMBER_SYSTEM, "value": r.nhs_number},
            {"system": PSEUDONYM_SYSTEM, "value": r.patient_id},
        ],
    }
    # what Waymark was not told (a standard ServiceRequest or an import) is left out
    if r.family_name or r.given_name:
        name: dict[str, Any] = {}
        if r.family_name:
            name["family"] = r.family_name
        if r.given_name:
            name["given"] = r.given_name.split(" ")
        patient["name"] = [name]
    if r.birth_date:
        patient["birthDate"] = r.birth_date
    return patient


def referral_to_service_request(r: Referral) -> dict[str, Any]:
    ext: list[dict[str, Any]] = [
        {"url": EXT + "consent-to-referral", "valueBoolean": r.consent_to_referral},
        {"url": EXT + "consent-basis", "valueCode": r.consent_basis},
        {"url": EXT + "consent-to-carer-sharing", "valueBoolean": r.consent_to_carer_sharing},
        {"url": EXT + "referral-source", "valueCode": r.source},
    ] + [{"url": EXT + "communication-need", "valueString": n} for n in r.communication_needs]
    identifiers = [{"system": REFERRAL_SYSTEM, "value": r.id}]
    if r.source_system and r.source_ref:
        identifiers.append(
            {"system": f"{SOURCE_REF_SYSTEM}/{r.source_system}", "value": r.source_ref}
        )
    requester: dict[str, Any] = {"identifier": {"system": ODS_SYSTEM, "value": r.from_org}}
    if r.from_practitioner:
        requester["display"] = r.from_practitioner
    performer = (
        {
            "identifier": {"system": DIRECTORY_SERVICE_SYSTEM, "value": r.to_service_id},
            "display": r.to_org,
        }
        if r.to_service_id
        # a service the directory does not list: the receiving organisation only
        else {"identifier": {"system": ODS_SYSTEM, "value": r.to_org}}
    )
    resource: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "id": r.id,
        "meta": _meta(r),
        "contained": [_contained_patient_out(r)],
        "extension": ext,
        "identifier": identifiers,
        "status": SERVICE_REQUEST_STATUS[r.state],
        "intent": "order",
        "category": [{"coding": [{"system": CATEGORY_SYSTEM, "code": r.service_category}]}],
        "priority": r.priority,
        "subject": {"reference": "#patient"},
        "authoredOn": r.created_at.isoformat(),
        "requester": requester,
        "performer": [performer],
        "reasonCode": [{"coding": [{"system": SNOMED, "code": c}]} for c in r.reason_codes],
    }
    if r.clinical_summary:
        resource["note"] = [{"text": r.clinical_summary}]
    if r.referred_from:
        resource["basedOn"] = [{"reference": f"ServiceRequest/{r.referred_from}"}]
    return resource


def referral_to_task(r: Referral, last_reason: str | None) -> dict[str, Any]:
    task: dict[str, Any] = {
        "resourceType": "Task",
        "id": r.id,
        "meta": _meta(r),
        "status": TASK_STATUS[r.state],
        "businessStatus": {
            "coding": [{"system": STATE_SYSTEM, "code": r.state}],
            "text": r.state.replace("_", " "),
        },
        "intent": "order",
        "priority": r.priority,
        "focus": {"reference": f"ServiceRequest/{r.id}"},
        "basedOn": [{"reference": f"ServiceRequest/{r.id}"}],
        # a reference the server answers (GET Patient/<pseudonym>: the identifier only), and
        # the identifier for a client that does not follow it
        "for": patient_reference(r.patient_id),
        "authoredOn": r.created_at.isoformat(),
        "lastModified": r.updated_at.isoformat(),
        "requester": {"identifier": {"system": ODS_SYSTEM, "value": r.from_org}},
        "owner": {"identifier": {"system": ODS_SYSTEM, "value": r.to_org}},
    }
    if last_reason and r.state in (
        ReferralState.REJECTED,
        ReferralState.RETURNED,
        ReferralState.CANCELLED,
        ReferralState.ON_HOLD,
        ReferralState.DISCHARGED,
    ):
        task["statusReason"] = {"coding": [{"system": REASON_SYSTEM, "code": last_reason}]}
    if r.appointment_at and r.state == ReferralState.BOOKED:
        task["restriction"] = {"period": {"start": r.appointment_at.isoformat()}}
    return task


def validate_outgoing(resource: dict[str, Any]) -> dict[str, Any]:
    """What Waymark sends is valid FHIR too (checked with the same library)."""
    from fhir.resources.R4B.servicerequest import ServiceRequest
    from fhir.resources.R4B.task import Task

    model = {"ServiceRequest": ServiceRequest, "Task": Task}[resource["resourceType"]]
    model.model_validate(resource)
    return resource
