"""Routes for referrals: make one, list them, read one and its history, move it on, the
message context for the notifications service, and the receiving service's worklist."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Body, Header, Query, Request, Response
from fastapi.responses import JSONResponse

from services.referrals import domain, handlers
from services.referrals.api.reads import ERRORS, is_uuid, list_scope, readable, referral_out
from services.referrals.domain import Action, ReferralState
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
from shared.access import Capability, check_scope, may_use
from shared.audit import record_audit
from shared.auth import CurrentPrincipal
from shared.errors import Forbidden, NotFound
from shared.web import (
    IdempotencyKey,
    OneStatementSessionDep,
    Outcome,
    SessionDep,
    client_ip,
    expected_version,
    once_per_key,
    weak_etag,
)

router = APIRouter()


@router.post(
    "/referrals", status_code=201, response_model=ReferralOut, responses=ERRORS, tags=["referrals"]
)
async def create_referral(
    body: ReferralCreate,
    request: Request,
    session: OneStatementSessionDep,
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
            referral_out(referral),
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


@router.get("/referrals", response_model=list[ReferralOut], responses=ERRORS, tags=["referrals"])
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
        scope=list_scope(principal),
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
    return JSONResponse([referral_out(r) for r in rows], headers={"X-Total-Count": str(total)})


@router.get(
    "/referrals/{referral_id}", response_model=ReferralOut, responses=ERRORS, tags=["referrals"]
)
async def get_referral(
    referral_id: str, request: Request, session: SessionDep, principal: CurrentPrincipal
) -> Response:
    """One referral, to the referrer, the receiving service and the ICS's coordinators."""
    referral = await readable(session, principal, referral_id)
    record_audit(
        session,
        principal=principal,
        action="read",
        resource_type="Referral",
        resource_id=referral.id,
        patient_id=referral.patient_id,
        client_ip=client_ip(request),
    )
    return JSONResponse(referral_out(referral), headers={"ETag": weak_etag(referral.version)})


@router.get(
    "/referrals/{referral_id}/history",
    response_model=list[TransitionOut],
    responses=ERRORS,
    tags=["referrals"],
)
async def referral_history(
    referral_id: str, request: Request, session: SessionDep, principal: CurrentPrincipal
) -> list[TransitionOut]:
    """Every state change: who, when, why (append-only)."""
    referral = await readable(session, principal, referral_id)
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


@router.get(
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
    referral = await repo.get(referral_id) if is_uuid(referral_id) else None
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


@router.post(
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
    if not is_uuid(referral_id):
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
        return Outcome(
            referral_out(result.referral), 200, {"ETag": weak_etag(result.referral.version)}
        )

    return await once_per_key(
        session,
        principal,
        idempotency_key,
        [action.value, referral_id, if_match, cmd.model_dump(mode="json")],
        move,
    )


@router.get("/worklist", response_model=Page, responses=ERRORS, tags=["triage"])
async def worklist(
    request: Request,
    session: SessionDep,
    principal: CurrentPrincipal,
    state: Annotated[list[ReferralState] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=100_000)] = 0,
) -> Page:
    """The receiving service's triage worklist: urgent first, then longest waiting."""
    check_scope(principal, Capability.REFERRAL_READ)
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
