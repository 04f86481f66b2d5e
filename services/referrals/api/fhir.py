"""The FHIR R4 face of referrals: ServiceRequest (create, read, search) and Task (read,
search, and the receiver's status write-back)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from services.referrals import domain, fhir, handlers
from services.referrals.api.reads import list_scope, readable
from services.referrals.fhir_in import resolve_performer
from services.referrals.repository import ReferralRepository
from shared.audit import record_audit
from shared.auth import CurrentPrincipal
from shared.errors import NotFound, ValidationFailed, WaymarkError
from shared.fhir import FHIR_ERRORS, FHIR_JSON, fhir_response, minimal_patient, pseudonym_of
from shared.fhir_rest import location, page_of, search_bundle
from shared.identifiers import normalise_nhs_number
from shared.web import (
    IdempotencyKey,
    Outcome,
    SessionDep,
    client_ip,
    once_per_key,
    weak_etag,
)

router = APIRouter()

#: a FHIR resource in the body: FHIR's JSON (or plain JSON)
RESOURCE_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            media: {"schema": {"type": "object", "additionalProperties": True}}
            for media in (FHIR_JSON, "application/json")
        },
    }
}


class UnreadableBody(WaymarkError):
    status, title, slug = 400, "Bad request", "unreadable-body"


class UnsupportedMediaType(WaymarkError):
    status, title, slug = 415, "Unsupported media type", "unsupported-media-type"


async def fhir_resource(request: Request) -> Any:
    """The body as JSON: 415 for another media type, 400 when it does not parse (FHIR's
    answer to a resource it cannot read); what it holds is checked by the caller."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in (FHIR_JSON, "application/json"):
        raise UnsupportedMediaType(
            f"send the resource as {FHIR_JSON} (or application/json), not {media or 'nothing'}"
        )
    raw = await request.body()
    try:
        value = json.loads(raw)
        json.dumps(value, ensure_ascii=False).encode()  # a lone surrogate cannot be stored
    except (ValueError, UnicodeError) as exc:
        raise UnreadableBody(f"the body is not readable JSON: {str(exc)[:200]}") from None
    return value


@router.post(
    "/fhir/ServiceRequest",
    status_code=201,
    responses=FHIR_ERRORS,
    tags=["fhir"],
    openapi_extra=RESOURCE_BODY,
)
async def fhir_create_service_request(
    request: Request,
    session: SessionDep,
    principal: CurrentPrincipal,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """A new referral from an EHR: an R4 ServiceRequest (status active, or draft), either
    Waymark's shape or the standard one (NHS number and ODS identifiers, the service by a code
    the directory maps); see docs/integration/referrals.md."""
    domain.check_may_create(principal)
    resource = await fhir_resource(request)
    parsed = fhir.parse_service_request(resource, requester_org=principal.org)
    service_id = await resolve_performer(request, parsed.performer)
    cmd = fhir.to_create(parsed, service_id)

    async def create() -> Outcome:
        referral = await handlers.submit_referral(
            session=session,
            principal=principal,
            cmd=cmd,
            settings=request.app.state.settings,
            client_ip=client_ip(request),
        )
        # the content type is part of the remembered answer, so a replay is FHIR JSON too
        return Outcome(
            fhir.referral_to_service_request(referral),
            201,
            {
                "Location": location(request, fhir.referral_to_service_request(referral)),
                "ETag": weak_etag(referral.version),
                "Content-Type": FHIR_JSON,
            },
        )

    return await once_per_key(
        session, principal, idempotency_key, ["fhir-create", resource], create
    )


@router.get("/fhir/ServiceRequest/{referral_id}", responses=FHIR_ERRORS, tags=["fhir"])
async def fhir_read_service_request(
    referral_id: str, request: Request, session: SessionDep, principal: CurrentPrincipal
) -> Response:
    """A referral as an R4 ServiceRequest."""
    referral = await readable(session, principal, referral_id)
    record_audit(
        session,
        principal=principal,
        action="read",
        resource_type="ServiceRequest",
        resource_id=referral.id,
        patient_id=referral.patient_id,
        client_ip=client_ip(request),
    )
    return fhir_response(
        fhir.referral_to_service_request(referral), headers={"ETag": weak_etag(referral.version)}
    )


_LAST_UPDATED = re.compile(r"^(ge|gt|le|lt|eq)?(\d{4}-\d{2}-\d{2}(T[0-9:.+\-Z]+)?)$")


@router.get("/fhir/ServiceRequest", responses=FHIR_ERRORS, tags=["fhir"])
async def fhir_search_service_requests(
    request: Request,
    session: SessionDep,
    principal: CurrentPrincipal,
    patient: Annotated[str | None, Query(max_length=120)] = None,
    status: Annotated[str | None, Query(max_length=40)] = None,
    last_updated: Annotated[str | None, Query(alias="_lastUpdated", max_length=40)] = None,
    count: Annotated[str | None, Query(alias="_count", max_length=12)] = None,
    offset: Annotated[str | None, Query(alias="_offset", max_length=12)] = None,
) -> Response:
    """Search referrals: patient (NHS number as `system|value`, or the pseudonymous id),
    status (FHIR ServiceRequest status), _lastUpdated (ge2026-01-01 and the like); paged by
    _count and _offset, oldest first (follow Bundle.link next)."""
    page = page_of(count, offset)
    patient_id = nhs_number = None
    if patient:
        system, _, value = patient.rpartition("|")
        if system and system != fhir.NHS_NUMBER_SYSTEM:
            raise ValidationFailed(f"patient identifiers are searched by {fhir.NHS_NUMBER_SYSTEM}")
        if system:
            nhs_number = normalise_nhs_number(value)
        else:
            # the pseudonym, or Patient/<id> as Task.for names it (its FHIR id spelling)
            patient_id = pseudonym_of(value.removeprefix("Patient/"))
    states: list[str] = []
    if status:
        states = [s for s, fs in fhir.SERVICE_REQUEST_STATUS.items() if fs == status]
        if not states:
            raise ValidationFailed(f"unknown ServiceRequest status {status!r}")
    since = None
    if last_updated:
        m = _LAST_UPDATED.match(last_updated)
        if m is None or (m.group(1) or "ge") not in ("ge", "gt"):
            raise ValidationFailed(
                "_lastUpdated supports ge/gt with a date or dateTime, e.g. ge2026-01-01"
            )
        try:
            since = datetime.fromisoformat(m.group(2).replace("Z", "+00:00"))
        except ValueError:
            raise ValidationFailed(f"_lastUpdated {m.group(2)!r} is not a date") from None
        if since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
        try:
            since = since.astimezone(UTC)
        except OverflowError:
            raise ValidationFailed(f"_lastUpdated {m.group(2)!r} is out of range") from None
        if not 1900 <= since.year <= 9998:
            raise ValidationFailed("_lastUpdated must be between the years 1900 and 9998")
    rows, total = await ReferralRepository(session).search(
        scope=list_scope(principal),
        states=states,
        patient_id=patient_id,
        nhs_number=nhs_number,
        updated_since=since,
        order_created=True,
        limit=page.count,
        offset=page.offset,
    )
    for r in rows:
        record_audit(
            session,
            principal=principal,
            action="read",
            resource_type="ServiceRequest",
            resource_id=r.id,
            patient_id=r.patient_id,
            client_ip=client_ip(request),
            detail="search",
        )
    resources = [fhir.referral_to_service_request(r) for r in rows]
    return fhir_response(search_bundle(request, resources, total=total, page=page))


@router.get("/fhir/Task/{referral_id}", responses=FHIR_ERRORS, tags=["fhir"])
async def fhir_read_task(
    referral_id: str, request: Request, session: SessionDep, principal: CurrentPrincipal
) -> Response:
    """Where a referral stands, as an R4 Task (businessStatus: the Waymark state)."""
    referral = await readable(session, principal, referral_id)
    history = await ReferralRepository(session).history(referral.id)
    last_reason = history[-1].reason_code if history else None
    record_audit(
        session,
        principal=principal,
        action="read",
        resource_type="Task",
        resource_id=referral.id,
        patient_id=referral.patient_id,
        client_ip=client_ip(request),
    )
    return fhir_response(
        fhir.referral_to_task(referral, last_reason), headers={"ETag": weak_etag(referral.version)}
    )


@router.get("/fhir/Patient/{patient_id}", responses=FHIR_ERRORS, tags=["fhir"])
async def fhir_read_patient(
    patient_id: str, request: Request, session: SessionDep, principal: CurrentPrincipal
) -> Response:
    """The person a Task.for names, as a minimal Patient: the pseudonymous id only (their name
    and NHS number are in the ServiceRequest's contained Patient, for whoever may read it).
    Served to whoever may read one of the person's referrals; otherwise a 404."""
    rows, _ = await ReferralRepository(session).search(
        scope=list_scope(principal), patient_id=pseudonym_of(patient_id[:120]), limit=1
    )
    if not rows:
        raise NotFound(f"no Patient {patient_id[:120]} that you may see")
    record_audit(
        session,
        principal=principal,
        action="read",
        resource_type="Patient",
        resource_id=rows[0].patient_id,
        patient_id=rows[0].patient_id,
        client_ip=client_ip(request),
    )
    return fhir_response(minimal_patient(rows[0].patient_id))
