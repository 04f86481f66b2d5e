"""A validated FHIR R4 Encounter or Appointment as a `ContactReport`, and a stored contact back
as a minimal Encounter. Pure: no I/O.

Each refusal is an `UnmappableReport` whose text starts with the FHIRPath of the problem
(`Encounter.subject: ...`), so the answer's OperationOutcome can point at it.

The mapping (docs/integration/fhir.md is the partner's version):
- contact kind: a coding of CONTACT_KIND_SYSTEM in Encounter.serviceType / Encounter.type /
  Appointment.serviceType / Appointment.serviceCategory wins; else Encounter.class (v3 ActCode):
  EMER -> A&E attendance, IMP/ACUTE/NONAC -> admission, AMB -> GP appointment at a GP
  practice's ODS code, outpatient appointment elsewhere; an Appointment without a kind coding
  is a GP appointment at a GP practice, an outpatient appointment elsewhere.
- planned: EMER is unplanned; Encounter.priority (v3 ActPriority) EM/UR/S/A unplanned, EL/R
  planned; Appointment.appointmentType (v2 0276) EMERGENCY/WALKIN unplanned, others planned.
- status: STATUS tables below (FHIR R4 Encounter.status and Appointment.status).
- patient: the NHS number (NHS_NUMBER_SYSTEM) of the subject / Patient participant: its
  `identifier`, or a contained Patient, or a Patient elsewhere in the same Bundle.
- organisation: serviceProvider (Encounter) or an Organization participant (Appointment) by its
  ODS code (ODS_SYSTEM), by identifier or as a contained / bundled Organization; else the
  source's own organisation.
- codes: SNOMED CT only (http://snomed.info/sct): chief complaint from reasonCode, diagnoses
  from Encounter.diagnosis -> Condition.code, discharge destination from
  Encounter.hospitalization.dischargeDisposition. Codings of other systems are ignored.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from typing import Any

from services.integration.domain import ContactReport, UnmappableReport
from shared.fhir import NHS_NUMBER_SYSTEM, ODS_SYSTEM
from shared.vocabulary import ContactKind, ContactStatus

SNOMED = "http://snomed.info/sct"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
ACT_PRIORITY = "http://terminology.hl7.org/CodeSystem/v3-ActPriority"
APPOINTMENT_TYPE = "http://terminology.hl7.org/CodeSystem/v2-0276"
BASE = "https://waymark.nhs.example/fhir"
#: Waymark's contact kinds as a code system (the codes are shared/vocabulary.py ContactKind)
CONTACT_KIND_SYSTEM = f"{BASE}/CodeSystem/contact-kind"
ENCOUNTER_ID_SYSTEM = f"{BASE}/Id/encounter"
#: an ODS code of a GP practice: one letter, five digits (e.g. A81001)
GP_PRACTICE = re.compile(r"[A-Z][0-9]{5}")

#: FHIR R4 Encounter.status (required binding) -> Waymark; `unknown` is refused
ENCOUNTER_STATUS: dict[str, ContactStatus] = {
    "planned": ContactStatus.BOOKED,
    "arrived": ContactStatus.ARRIVED,
    "triaged": ContactStatus.ARRIVED,
    "in-progress": ContactStatus.IN_PROGRESS,
    "onleave": ContactStatus.IN_PROGRESS,
    "finished": ContactStatus.FINISHED,
    "cancelled": ContactStatus.CANCELLED,
    "entered-in-error": ContactStatus.ENTERED_IN_ERROR,
}
ENCOUNTER_STATUS_CODES = (*ENCOUNTER_STATUS, "unknown")
#: FHIR R4 Appointment.status -> Waymark; proposed / pending / waitlist are not yet contacts
APPOINTMENT_STATUS: dict[str, ContactStatus] = {
    "booked": ContactStatus.BOOKED,
    "arrived": ContactStatus.ARRIVED,
    "checked-in": ContactStatus.ARRIVED,
    "fulfilled": ContactStatus.FINISHED,
    "cancelled": ContactStatus.CANCELLED,
    "noshow": ContactStatus.DID_NOT_ATTEND,
    "entered-in-error": ContactStatus.ENTERED_IN_ERROR,
}
APPOINTMENT_STATUS_CODES = (*APPOINTMENT_STATUS, "proposed", "pending", "waitlist")
#: Encounter.class (v3 ActCode) -> kind, where the class alone says it
CLASS_KIND: dict[str, ContactKind] = {
    "EMER": ContactKind.AE_ATTENDANCE,
    "IMP": ContactKind.ADMISSION,
    "ACUTE": ContactKind.ADMISSION,
    "NONAC": ContactKind.ADMISSION,
}
UNPLANNED_PRIORITY = {"EM", "UR", "S", "A", "CR"}
PLANNED_PRIORITY = {"EL", "R"}
UNPLANNED_APPOINTMENT_TYPE = {"EMERGENCY", "WALKIN"}

#: Waymark -> FHIR R4 Encounter.status, for the answer
TO_ENCOUNTER_STATUS: dict[ContactStatus, str] = {
    ContactStatus.BOOKED: "planned",
    ContactStatus.ARRIVED: "arrived",
    ContactStatus.IN_PROGRESS: "in-progress",
    ContactStatus.FINISHED: "finished",
    ContactStatus.CANCELLED: "cancelled",
    ContactStatus.DID_NOT_ATTEND: "cancelled",
    ContactStatus.ENTERED_IN_ERROR: "entered-in-error",
}
TO_CLASS: dict[ContactKind, str] = {
    ContactKind.AE_ATTENDANCE: "EMER",
    ContactKind.ADMISSION: "IMP",
    ContactKind.NHS_111: "VR",
}


def refuse(path: str, reason: str) -> UnmappableReport:
    return UnmappableReport(f"{path}: {reason}")


def resource_key(resource: Mapping[str, Any]) -> str | None:
    """The contact's identity at the source: its first identifier as `system|value`, failing
    that its logical id as `Type/id`."""
    idents = resource.get("identifier") or []
    for ident in [idents] if isinstance(idents, Mapping) else idents:  # Bundle: one identifier
        if ident.get("value"):
            return f"{ident.get('system', '')}|{ident['value']}"
    if resource.get("id"):  # a logical id is unique within its resource type only
        return f"{resource.get('resourceType', 'Resource')}/{resource['id']}"
    return None


def canonical(raw: Any) -> str:
    return json.dumps(raw, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def control_id(resource: Mapping[str, Any], *, key: str | None = None) -> str | None:
    """The message's control id: the resource's key with its version (meta.versionId), or,
    without one, with a digest of its content; so the same resource sent again is the same
    message, and a changed one (a new status) is a new message about the same contact."""
    key = key or resource_key(resource)
    if key is None:
        return None
    kind = resource.get("resourceType", "Resource")
    name = key if key.startswith(f"{kind}/") else f"{kind}/{key}"
    version = (resource.get("meta") or {}).get("versionId")
    if version:
        return f"{name}/_history/{version}"
    digest = hashlib.sha256(canonical(resource).encode()).hexdigest()[:32]
    return f"{name}#sha256:{digest}"


class Context:
    """The resources a reference may point at: the resource's contained ones, and the other
    entries of its Bundle (by fullUrl and by Type/id)."""

    def __init__(self, entries: Iterable[Mapping[str, Any]] = ()) -> None:
        self.by_ref: dict[str, Mapping[str, Any]] = {}
        for entry in entries:
            resource = entry.get("resource")
            if not isinstance(resource, Mapping):
                continue
            if entry.get("fullUrl"):
                self.by_ref[str(entry["fullUrl"])] = resource
            if resource.get("id"):
                self.by_ref[f"{resource['resourceType']}/{resource['id']}"] = resource

    def resolve(self, resource: Mapping[str, Any], ref: str | None) -> Mapping[str, Any] | None:
        if not ref:
            return None
        if ref.startswith("#"):
            for c in resource.get("contained") or []:
                if c.get("id") == ref[1:]:
                    return c  # type: ignore[no-any-return]
            return None
        if ref in self.by_ref:
            return self.by_ref[ref]
        tail = "/".join(ref.rstrip("/").split("/")[-2:])  # https://x/fhir/Patient/1 -> Patient/1
        return self.by_ref.get(tail)


def _codes(concepts: Iterable[Mapping[str, Any]] | None, system: str) -> list[str]:
    return [
        str(c["code"])
        for concept in concepts or []
        for c in concept.get("coding") or []
        if c.get("system") == system and c.get("code")
    ]


def _when(value: Any, path: str) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value
    text = str(value)
    if len(text) <= 10:
        raise refuse(path, f"{text!r} is a date: Waymark needs the time and its time zone")
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise refuse(path, f"{text!r} is not a date and time") from None
    if isinstance(at, date) and not isinstance(at, datetime):  # pragma: no cover
        raise refuse(path, "Waymark needs the time and its time zone")
    if at.tzinfo is None:
        raise refuse(path, f"{text!r} has no time zone")
    return at


def _nhs_number(patient: Mapping[str, Any] | None) -> str | None:
    for ident in (patient or {}).get("identifier") or []:
        if ident.get("system") == NHS_NUMBER_SYSTEM and ident.get("value"):
            return str(ident["value"]).replace(" ", "")
    return None


def _patient_nhs(
    resource: Mapping[str, Any], ref: Mapping[str, Any] | None, path: str, ctx: Context
) -> str:
    ref = ref or {}
    ident = ref.get("identifier") or {}
    if ident.get("system") == NHS_NUMBER_SYSTEM and ident.get("value"):
        return str(ident["value"]).replace(" ", "")
    target = ctx.resolve(resource, ref.get("reference"))
    if target is not None and target.get("resourceType") == "Patient":
        nhs = _nhs_number(target)
        if nhs:
            return nhs
        raise refuse(path, f"the Patient has no identifier of system {NHS_NUMBER_SYSTEM}")
    if ref.get("reference"):
        raise refuse(
            path,
            f"{ref['reference']!r} is neither a contained Patient nor a Patient in this Bundle; "
            f"name the patient by identifier ({NHS_NUMBER_SYSTEM})",
        )
    raise refuse(path, f"the patient's NHS number is required ({NHS_NUMBER_SYSTEM})")


def _ods(resource: Mapping[str, Any], ref: Mapping[str, Any] | None, ctx: Context) -> str | None:
    if not ref:
        return None
    ident = ref.get("identifier") or {}
    if ident.get("system") == ODS_SYSTEM and ident.get("value"):
        return str(ident["value"]).upper()
    target = ctx.resolve(resource, ref.get("reference"))
    for i in (target or {}).get("identifier") or []:
        if i.get("system") == ODS_SYSTEM and i.get("value"):
            return str(i["value"]).upper()
    return None


def _kind_coding(path: str, *concepts: Iterable[Mapping[str, Any]] | None) -> ContactKind | None:
    for group in concepts:
        for code in _codes(group, CONTACT_KIND_SYSTEM):
            try:
                return ContactKind(code)
            except ValueError:
                known = ", ".join(k.value for k in ContactKind)
                raise refuse(path, f"{code!r} is not a contact kind ({known})") from None
    return None


def _one(value: Any) -> list[Any]:
    return [value] if isinstance(value, Mapping) else list(value or [])


def _diagnoses(resource: Mapping[str, Any], ctx: Context) -> tuple[str, ...]:
    out: list[str] = []
    for d in resource.get("diagnosis") or []:
        condition = ctx.resolve(resource, (d.get("condition") or {}).get("reference"))
        if condition is not None and condition.get("resourceType") == "Condition":
            out += _codes([condition.get("code") or {}], SNOMED)[:1]
    return tuple(out)


def encounter_report(
    resource: Mapping[str, Any], *, source_org: str, ctx: Context | None = None
) -> ContactReport:
    """A validated R4 Encounter as a contact report, or UnmappableReport."""
    ctx = ctx or Context()
    status_code = resource.get("status")
    if status_code not in ENCOUNTER_STATUS:
        if status_code in ENCOUNTER_STATUS_CODES:
            raise refuse("Encounter.status", "status 'unknown' says nothing Waymark can use")
        raise refuse(
            "Encounter.status", f"{status_code!r} is not an R4 Encounter status (encounter-status)"
        )
    cls = resource.get("class") or {}
    org = _ods(resource, resource.get("serviceProvider"), ctx) or source_org
    kind = _kind_coding(
        "Encounter.serviceType",
        _one(resource.get("serviceType")),
        resource.get("type"),
    )
    if kind is None:
        code = cls.get("code") if cls.get("system") in (None, ACT_CODE) else None
        if code in CLASS_KIND:
            kind = CLASS_KIND[code]
        elif code == "AMB":
            kind = (
                ContactKind.GP_APPOINTMENT
                if GP_PRACTICE.fullmatch(org)
                else ContactKind.OUTPATIENT_APPOINTMENT
            )
        else:
            raise refuse(
                "Encounter.class",
                f"class {code or cls.get('code')!r} does not say which kind of contact this "
                f"is: add a serviceType coding of {CONTACT_KIND_SYSTEM}",
            )
    planned: bool | None = None
    priority = _codes([resource.get("priority") or {}], ACT_PRIORITY)
    if cls.get("code") == "EMER" or set(priority) & UNPLANNED_PRIORITY:
        planned = False
    elif set(priority) & PLANNED_PRIORITY:
        planned = True
    period = resource.get("period") or {}
    started = _when(period.get("start"), "Encounter.period.start")
    if started is None:
        raise refuse("Encounter.period.start", "when the contact started is required")
    key = resource_key(resource)
    if key is None:
        raise refuse("Encounter.identifier", "an identifier (or an id) of the visit is required")
    complaint = _codes(resource.get("reasonCode"), SNOMED)
    hospitalization = resource.get("hospitalization") or {}
    destination = _codes([hospitalization.get("dischargeDisposition") or {}], SNOMED)
    return ContactReport(
        source_ref=key,
        nhs_number=_patient_nhs(resource, resource.get("subject"), "Encounter.subject", ctx),
        contact_kind=kind,
        status=ENCOUNTER_STATUS[status_code],
        started_at=started,
        ended_at=_when(period.get("end"), "Encounter.period.end"),
        source_org=org,
        planned=planned,
        chief_complaint=complaint[0] if complaint else None,
        diagnosis_codes=_diagnoses(resource, ctx),
        discharge_destination=destination[0] if destination else None,
    )


def appointment_report(
    resource: Mapping[str, Any], *, source_org: str, ctx: Context | None = None
) -> ContactReport:
    """A validated R4 Appointment as a contact report, or UnmappableReport."""
    ctx = ctx or Context()
    status_code = resource.get("status")
    if status_code not in APPOINTMENT_STATUS:
        if status_code in APPOINTMENT_STATUS_CODES:
            raise refuse(
                "Appointment.status",
                f"a {status_code} appointment is not booked yet: send it once it is booked",
            )
        raise refuse(
            "Appointment.status",
            f"{status_code!r} is not an R4 Appointment status (appointmentstatus)",
        )
    patient_ref = org_ref = None
    for i, p in enumerate(resource.get("participant") or []):
        actor = p.get("actor") or {}
        target = ctx.resolve(resource, actor.get("reference"))
        kind_of = (target or {}).get("resourceType") or actor.get("type")
        ref_text = str(actor.get("reference") or "")
        ident = (actor.get("identifier") or {}).get("system")
        if kind_of == "Patient" or ref_text.startswith("Patient/") or ident == NHS_NUMBER_SYSTEM:
            patient_ref = patient_ref or (i, actor)
        elif kind_of == "Organization" or ident == ODS_SYSTEM:
            org_ref = org_ref or actor
    if patient_ref is None:
        raise refuse(
            "Appointment.participant",
            f"no participant is the patient (a Patient with an identifier of {NHS_NUMBER_SYSTEM})",
        )
    index, actor = patient_ref
    nhs = _patient_nhs(resource, actor, f"Appointment.participant[{index}].actor", ctx)
    org = _ods(resource, org_ref, ctx) or source_org
    kind = _kind_coding(
        "Appointment.serviceType", resource.get("serviceType"), resource.get("serviceCategory")
    )
    if kind is None:
        kind = (
            ContactKind.GP_APPOINTMENT
            if GP_PRACTICE.fullmatch(org)
            else ContactKind.OUTPATIENT_APPOINTMENT
        )
    types = _codes([resource.get("appointmentType") or {}], APPOINTMENT_TYPE)
    planned = not (set(types) & UNPLANNED_APPOINTMENT_TYPE)
    started = _when(resource.get("start"), "Appointment.start")
    if started is None:
        raise refuse("Appointment.start", "when the appointment starts is required")
    key = resource_key(resource)
    if key is None:
        raise refuse("Appointment.identifier", "an identifier (or an id) is required")
    complaint = _codes(resource.get("reasonCode"), SNOMED)
    return ContactReport(
        source_ref=key,
        nhs_number=nhs,
        contact_kind=kind,
        status=APPOINTMENT_STATUS[status_code],
        started_at=started,
        ended_at=_when(resource.get("end"), "Appointment.end"),
        source_org=org,
        planned=planned,
        chief_complaint=complaint[0] if complaint else None,
    )


def report(resource: Mapping[str, Any], *, source_org: str, ctx: Context | None = None) -> Any:
    if resource.get("resourceType") == "Appointment":
        return appointment_report(resource, source_org=source_org, ctx=ctx)
    return encounter_report(resource, source_org=source_org, ctx=ctx)


def as_encounter(
    *,
    encounter_id: str,
    revision: int,
    updated_at: datetime | None,
    contact_kind: str,
    status: str,
    started_at: datetime,
    ended_at: datetime | None,
    source_org: str,
) -> dict[str, Any]:
    """A stored contact as a minimal R4 Encounter: Waymark's id and version, the status, class,
    kind, period and organisation. No patient, no identifier of the source's, no free text."""
    kind = ContactKind(contact_kind)
    period: dict[str, str] = {"start": started_at.isoformat()}
    if ended_at is not None:
        period["end"] = ended_at.isoformat()
    meta: dict[str, str] = {"versionId": str(revision)}
    if updated_at is not None:
        meta["lastUpdated"] = updated_at.isoformat()
    return {
        "resourceType": "Encounter",
        "id": encounter_id,
        "meta": meta,
        "identifier": [{"system": ENCOUNTER_ID_SYSTEM, "value": encounter_id}],
        "status": TO_ENCOUNTER_STATUS[ContactStatus(status)],
        "class": {"system": ACT_CODE, "code": TO_CLASS.get(kind, "AMB")},
        "serviceType": {"coding": [{"system": CONTACT_KIND_SYSTEM, "code": kind.value}]},
        "period": period,
        "serviceProvider": {"identifier": {"system": ODS_SYSTEM, "value": source_org}},
    }
