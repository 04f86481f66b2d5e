"""The referrals service's HTTP API (routes only: parse, authorise, call a handler, render)."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Body, Header, Query, Request, Response
from fastapi.responses import JSONResponse

from services.referrals import domain, fhir, handlers
from services.referrals.domain import Action, ReferralState
from services.referrals.models import Referral
from services.referrals.repository import ReferralRepository, scope_for
from services.referrals.schemas import (
    MessageContextOut,
    Page,
    ReferralCreate,
    ReferralOut,
    TransitionIn,
    TransitionOut,
    WorklistItem,
)
from shared.access import Capability, Relationship, may_use, relationships_for, roles_phrase
from shared.audit import record_audit
from shared.auth import CurrentPrincipal, Principal
from shared.errors import Forbidden, NotFound, ValidationFailed
from shared.identifiers import normalise_nhs_number
from shared.web import (
    PROBLEM_RESPONSES,
    IdempotencyKey,
    Outcome,
    SessionDep,
    client_ip,
    create_app,
    expected_version,
    once_per_key,
    weak_etag,
)

app = create_app(
    "referrals",
    title="Waymark referrals",
    description="Closed-loop referrals between GP, pain, talking therapies, "
    "physiotherapy and community services, with a FHIR R4 face.",
    error_renderers={"/fhir": fhir.operation_outcome},
)

ERRORS = PROBLEM_RESPONSES


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _out(r: Referral) -> dict[str, Any]:
    out = ReferralOut.model_validate(r, from_attributes=True)
    out.allowed_actions = [a.value for a in domain.allowed_actions(ReferralState(r.state))]
    return out.model_dump(mode="json")


async def _readable(session: SessionDep, principal: Principal, referral_id: str) -> Referral:
    referral = await ReferralRepository(session).get(referral_id) if _is_uuid(referral_id) else None
    if referral is None or not domain.may_read(
        principal,
        from_org=referral.from_org,
        to_org=referral.to_org,
        ics=referral.ics,
        state=referral.state,
    ):
        # the same answer for "absent" and "not yours", so ids cannot be probed
        raise NotFound(f"no referral {referral_id} that you may see")
    return referral


def _list_scope(principal: Principal) -> Any:
    # the role table: coordinators see their ICS's referrals, acting roles their organisation's
    if Relationship.ICS_COORDINATION in relationships_for(principal, Capability.REFERRAL_READ):
        return scope_for(ics=principal.ics)
    if Relationship.REFERRAL in relationships_for(principal, Capability.REFERRAL_READ):
        return scope_for(org=principal.org)
    raise Forbidden(
        f"listing referrals needs one of the roles: {roles_phrase(Capability.REFERRAL_READ)}"
    )


# --- referrals ------------------------------------------------------------------------------


@app.post(
    "/referrals", status_code=201, response_model=ReferralOut, responses=ERRORS, tags=["referrals"]
)
async def create_referral(
    body: ReferralCreate,
    request: Request,
    session: SessionDep,
    principal: CurrentPrincipal,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Refer a patient to a directory service; it starts `submitted` (or `draft`)."""
    domain.check_may_create(principal)

    async def create() -> Outcome:
        referral = await handlers.submit_referral(
            session=session,
            principal=principal,
            cmd=body,
            settings=request.app.state.settings,
            client_ip=client_ip(request),
        )
        return Outcome(
            _out(referral),
            201,
            {"Location": f"/referrals/{referral.id}", "ETag": weak_etag(referral.version)},
        )

    return await once_per_key(
        session,
        principal,
        idempotency_key,
        ["create", body.model_dump(mode="json", exclude_unset=True)],
        create,
    )


@app.get("/referrals", response_model=list[ReferralOut], responses=ERRORS, tags=["referrals"])
async def list_referrals(
    request: Request,
    session: SessionDep,
    principal: CurrentPrincipal,
    state: Annotated[list[ReferralState] | None, Query()] = None,
    patient_id: Annotated[str | None, Query(max_length=80, pattern=r"^[a-z0-9_]+$")] = None,
    flagged: bool | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=100_000)] = 0,
) -> Response:
    """Referrals to or from your organisation (coordinators: all of your ICS), newest first."""
    rows, total = await ReferralRepository(session).search(
        scope=_list_scope(principal),
        states=[s.value for s in state or []],
        patient_id=patient_id,
        flagged=flagged,
        limit=limit,
        offset=offset,
    )
    for r in rows:
        record_audit(
            session,
            principal=principal,
            action="read",
            resource_type="Referral",
            resource_id=r.id,
            patient_id=r.patient_id,
            client_ip=client_ip(request),
            detail="list",
        )
    return JSONResponse([_out(r) for r in rows], headers={"X-Total-Count": str(total)})


@app.get(
    "/referrals/{referral_id}", response_model=ReferralOut, responses=ERRORS, tags=["referrals"]
)
async def get_referral(
    referral_id: str, request: Request, session: SessionDep, principal: CurrentPrincipal
) -> Response:
    """One referral, to the referrer, the receiving service and the ICS's coordinators."""
    referral = await _readable(session, principal, referral_id)
    record_audit(
        session,
        principal=principal,
        action="read",
        resource_type="Referral",
        resource_id=referral.id,
        patient_id=referral.patient_id,
        client_ip=client_ip(request),
    )
    return JSONResponse(_out(referral), headers={"ETag": weak_etag(referral.version)})


@app.get(
    "/referrals/{referral_id}/history",
    response_model=list[TransitionOut],
    responses=ERRORS,
    tags=["referrals"],
)
async def referral_history(
    referral_id: str, request: Request, session: SessionDep, principal: CurrentPrincipal
) -> list[TransitionOut]:
    """Every state change: who, when, why (append-only)."""
    referral = await _readable(session, principal, referral_id)
    record_audit(
        session,
        principal=principal,
        action="read",
        resource_type="ReferralHistory",
        resource_id=referral.id,
        patient_id=referral.patient_id,
        client_ip=client_ip(request),
    )
    rows = await ReferralRepository(session).history(referral.id)
    return [TransitionOut.model_validate(t, from_attributes=True) for t in rows]


@app.get(
    "/referrals/{referral_id}/message-context",
    response_model=MessageContextOut,
    responses=ERRORS,
    tags=["notifications"],
)
async def referral_message_context(
    referral_id: str,
    request: Request,
    session: SessionDep,
    principal: CurrentPrincipal,
    event_id: Annotated[str | None, Query(max_length=100)] = None,
) -> MessageContextOut:
    """What a message about this referral needs (the notifications service's credential
    only): the person's given name, the referrer, the appointment, the advice given."""
    if not may_use(principal, Capability.MESSAGE_CONTEXT_READ):
        raise Forbidden(
            "only a Waymark service's own credential may read a referral's message context"
        )
    repo = ReferralRepository(session)
    referral = await repo.get(referral_id) if _is_uuid(referral_id) else None
    if referral is None or referral.state == ReferralState.DRAFT:
        raise NotFound(f"no referral {referral_id}")
    history = await repo.history(referral.id)
    step = next(
        (t for t in reversed(history) if event_id and t.event_id == event_id),
        history[-1] if history else None,
    )
    record_audit(
        session,
        principal=principal,
        action="read",
        resource_type="ReferralMessageContext",
        resource_id=referral.id,
        patient_id=referral.patient_id,
        client_ip=client_ip(request),
        detail=f"event {event_id}" if event_id else None,
    )
    return MessageContextOut(
        referral_id=referral.id,
        patient_id=referral.patient_id,
        given_name=referral.given_name,
        referrer_user=referral.created_by,
        referrer_org=referral.from_org,
        from_practitioner=referral.from_practitioner,
        to_org=referral.to_org,
        to_service_id=referral.to_service_id,
        service_category=referral.service_category,
        priority=referral.priority,
        state=referral.state,
        appointment_at=referral.appointment_at,
        note=step.note if step else None,
        reason_code=step.reason_code if step else None,
        communication_needs=list(referral.communication_needs),
        consent_to_carer_sharing=referral.consent_to_carer_sharing,
    )


@app.post(
    "/referrals/{referral_id}/{action}",
    response_model=ReferralOut,
    responses=ERRORS,
    tags=["referrals"],
)
async def transition(
    referral_id: str,
    action: Action,
    request: Request,
    session: SessionDep,
    principal: CurrentPrincipal,
    body: Annotated[TransitionIn | None, Body()] = None,
    if_match: Annotated[str | None, Header(max_length=40)] = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Move a referral on: submit, accept, reject, return, book, attend, did-not-attend,
    discharge, cancel, hold, resume. Needs If-Match; reasons are codes."""
    cmd = body or TransitionIn()
    if not _is_uuid(referral_id):
        raise NotFound(f"no referral {referral_id} that you may see")

    async def move() -> Outcome:
        result = await handlers.transition_referral(
            session=session,
            principal=principal,
            referral_id=referral_id,
            action=action,
            cmd=cmd,
            expected_version=expected_version(if_match),
            settings=request.app.state.settings,
            client_ip=client_ip(request),
        )
        return Outcome(_out(result.referral), 200, {"ETag": weak_etag(result.referral.version)})

    return await once_per_key(
        session,
        principal,
        idempotency_key,
        [action.value, referral_id, if_match, cmd.model_dump(mode="json")],
        move,
    )


@app.get("/worklist", response_model=Page, responses=ERRORS, tags=["triage"])
async def worklist(
    request: Request,
    session: SessionDep,
    principal: CurrentPrincipal,
    state: Annotated[list[ReferralState] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=100_000)] = 0,
) -> Page:
    """The receiving service's triage worklist: urgent first, then longest waiting."""
    if not principal.has(*domain.ACTING_ROLES):
        raise Forbidden("the worklist is for the receiving service's staff")
    states = [s.value for s in state or [ReferralState.SUBMITTED]]
    rows, total = await ReferralRepository(session).search(
        scope=scope_for(receiving_org=principal.org),
        states=states,
        order_oldest_first=True,
        limit=limit,
        offset=offset,
    )
    now = datetime.now(UTC)
    items = []
    for r in rows:
        record_audit(
            session,
            principal=principal,
            action="read",
            resource_type="Referral",
            resource_id=r.id,
            patient_id=r.patient_id,
            client_ip=client_ip(request),
            detail="worklist",
        )
        waited_since = r.submitted_at or r.created_at
        items.append(
            WorklistItem(
                id=r.id,
                patient_id=r.patient_id,
                nhs_number=r.nhs_number,
                given_name=r.given_name,
                family_name=r.family_name,
                from_org=r.from_org,
                to_service_id=r.to_service_id,
                service_category=r.service_category,
                priority=r.priority,
                state=r.state,
                reason_codes=r.reason_codes,
                flags=r.flags,
                submitted_at=r.submitted_at,
                waiting_days=(now - waited_since).days,
            )
        )
    return Page(items=items, total=total, limit=limit, offset=offset)


# --- FHIR R4 -------------------------------------------------------------------------------

FHIR_ERRORS: dict[int | str, dict[str, Any]] = {
    s: {"description": d, "content": {fhir.FHIR_JSON: {}}}
    for s, d in [
        (401, "Not authenticated"),
        (403, "Forbidden"),
        (404, "Not found"),
        (422, "OperationOutcome"),
    ]
}


def _fhir(
    resource: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(resource, status_code=status, media_type=fhir.FHIR_JSON, headers=headers)


@app.post("/fhir/ServiceRequest", status_code=201, responses=FHIR_ERRORS, tags=["fhir"])
async def fhir_create_service_request(
    request: Request,
    session: SessionDep,
    principal: CurrentPrincipal,
    resource: Annotated[dict[str, Any], Body()],
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """A new referral from an EHR: an R4 ServiceRequest (status active, or draft)."""
    domain.check_may_create(principal)
    cmd = fhir.service_request_to_create(resource)

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
                "Location": f"/fhir/ServiceRequest/{referral.id}",
                "ETag": weak_etag(referral.version),
                "Content-Type": fhir.FHIR_JSON,
            },
        )

    return await once_per_key(
        session, principal, idempotency_key, ["fhir-create", resource], create
    )


@app.get("/fhir/ServiceRequest/{referral_id}", responses=FHIR_ERRORS, tags=["fhir"])
async def fhir_read_service_request(
    referral_id: str, request: Request, session: SessionDep, principal: CurrentPrincipal
) -> Response:
    """A referral as an R4 ServiceRequest."""
    referral = await _readable(session, principal, referral_id)
    record_audit(
        session,
        principal=principal,
        action="read",
        resource_type="ServiceRequest",
        resource_id=referral.id,
        patient_id=referral.patient_id,
        client_ip=client_ip(request),
    )
    return _fhir(
        fhir.referral_to_service_request(referral), headers={"ETag": weak_etag(referral.version)}
    )


_LAST_UPDATED = re.compile(r"^(ge|gt|le|lt|eq)?(\d{4}-\d{2}-\d{2}(T[0-9:.+\-Z]+)?)$")


@app.get("/fhir/ServiceRequest", responses=FHIR_ERRORS, tags=["fhir"])
async def fhir_search_service_requests(
    request: Request,
    session: SessionDep,
    principal: CurrentPrincipal,
    patient: Annotated[str | None, Query(max_length=120)] = None,
    status: Annotated[str | None, Query(max_length=40)] = None,
    last_updated: Annotated[str | None, Query(alias="_lastUpdated", max_length=40)] = None,
    count: Annotated[int, Query(alias="_count", ge=1, le=200)] = 50,
) -> Response:
    """Search referrals: patient (NHS number as `system|value`, or the pseudonymous id),
    status (FHIR ServiceRequest status), _lastUpdated (ge2026-01-01 and the like)."""
    patient_id = nhs_number = None
    if patient:
        system, _, value = patient.rpartition("|")
        if system and system != fhir.NHS_NUMBER_SYSTEM:
            raise ValidationFailed(f"patient identifiers are searched by {fhir.NHS_NUMBER_SYSTEM}")
        if system:
            nhs_number = normalise_nhs_number(value)
        else:
            patient_id = value.removeprefix("Patient/")
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
        scope=_list_scope(principal),
        states=states,
        patient_id=patient_id,
        nhs_number=nhs_number,
        updated_since=since,
        limit=count,
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
    return _fhir(fhir.searchset([fhir.referral_to_service_request(r) for r in rows], total))


@app.get("/fhir/Task/{referral_id}", responses=FHIR_ERRORS, tags=["fhir"])
async def fhir_read_task(
    referral_id: str, request: Request, session: SessionDep, principal: CurrentPrincipal
) -> Response:
    """Where a referral stands, as an R4 Task (businessStatus: the Waymark state)."""
    referral = await _readable(session, principal, referral_id)
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
    return _fhir(
        fhir.referral_to_task(referral, last_reason), headers={"ETag": weak_etag(referral.version)}
    )
