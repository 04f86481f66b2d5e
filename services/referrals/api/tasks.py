"""Routes for a referral's R4 Task written back by the receiving system: update it (PUT by id,
or POST with basedOn the ServiceRequest) and find it by its ServiceRequest. Reading one Task
by id is in fhir.py, beside the ServiceRequest."""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response

from services.referrals import fhir, handlers
from services.referrals.api.fhir import RESOURCE_BODY, fhir_resource
from services.referrals.api.reads import is_uuid, readable
from services.referrals.domain import ReferralState
from services.referrals.fhir_task import referenced_referral, task_referral_id, task_update
from services.referrals.history import action_to
from services.referrals.repository import ReferralRepository
from services.referrals.schemas import TransitionIn
from shared.access import Capability, may_use, roles_phrase
from shared.audit import record_audit
from shared.auth import CurrentPrincipal, Principal
from shared.errors import Conflict, Forbidden, NotFound, ValidationFailed
from shared.fhir import FHIR_ERRORS, fhir_response
from shared.fhir_rest import location, page_of, search_bundle
from shared.web import SessionDep, client_ip, parse_etag, weak_etag

router = APIRouter()


async def _task_of(session: SessionDep, referral_id: str) -> tuple[dict, int]:  # type: ignore[type-arg]
    repo = ReferralRepository(session)
    referral = await repo.get(referral_id)
    assert referral is not None
    history = await repo.history(referral.id)
    return fhir.referral_to_task(referral, history[-1].reason_code if history else None), (
        referral.version
    )


async def _write_back(
    request: Request,
    session: SessionDep,
    principal: Principal,
    referral_id: str,
    raw: object,
    if_match: str | None,
) -> Response:
    referral = await readable(session, principal, referral_id)  # 404: absent or not yours
    update = task_update(
        raw,
        referral_id=referral.id,
        state=ReferralState(referral.state),
        held_from=ReferralState(referral.held_from) if referral.held_from else None,
    )
    expected = parse_etag(if_match) if if_match is not None else None
    if update.target.value == referral.state:
        # nothing to change: the Task already says this (a resend is harmless)
        record_audit(
            session,
            principal=principal,
            action="write-back",
            resource_type="Task",
            resource_id=referral.id,
            patient_id=referral.patient_id,
            client_ip=client_ip(request),
            detail=f"no change ({referral.state})",
        )
    else:
        try:
            action = action_to(
                ReferralState(referral.state),
                update.target,
                ReferralState(referral.held_from) if referral.held_from else None,
            )
        except ValidationFailed as exc:
            raise Conflict(exc.message, state=referral.state) from None
        try:
            cmd = TransitionIn(
                reason_code=update.reason_code,
                note=update.note,
                appointment_at=update.appointment_at,
            )
        except ValueError as exc:
            raise fhir.FhirInvalid(f"the Task does not make a valid status change: {exc}") from None
        await handlers.transition_referral(
            session=session,
            principal=principal,
            referral_id=referral.id,
            action=action,
            cmd=cmd,
            expected_version=expected,
            settings=request.app.state.settings,
            client_ip=client_ip(request),
            via="fhir-task",
        )
    await session.flush()
    task, version = await _task_of(session, referral.id)
    return fhir_response(task, headers={"ETag": weak_etag(version)})


@router.put(
    "/fhir/Task/{referral_id}", responses=FHIR_ERRORS, tags=["fhir"], openapi_extra=RESOURCE_BODY
)
async def fhir_update_task(
    referral_id: str,
    request: Request,
    session: SessionDep,
    principal: CurrentPrincipal,
    if_match: Annotated[str | None, Header(max_length=40)] = None,
) -> Response:
    """The receiving system writes back a referral's status as its Task (status,
    businessStatus, statusReason, restriction.period.start for a booking). If-Match optional."""
    raw = await fhir_resource(request)
    return await _write_back(request, session, principal, referral_id, raw, if_match)


@router.post("/fhir/Task", responses=FHIR_ERRORS, tags=["fhir"], openapi_extra=RESOURCE_BODY)
async def fhir_post_task(
    request: Request,
    session: SessionDep,
    principal: CurrentPrincipal,
    if_match: Annotated[str | None, Header(max_length=40)] = None,
) -> Response:
    """The same write-back as a Task whose basedOn is the ServiceRequest (a referral has one
    Task: this updates it and answers 200 with it)."""
    raw = await fhir_resource(request)
    referral_id = task_referral_id(raw)
    response = await _write_back(request, session, principal, referral_id, raw, if_match)
    response.headers["Location"] = location(request, json.loads(response.body))
    return response


@router.get("/fhir/Task", responses=FHIR_ERRORS, tags=["fhir"])
async def fhir_search_tasks(
    request: Request,
    session: SessionDep,
    principal: CurrentPrincipal,
    based_on: Annotated[str | None, Query(alias="based-on", max_length=120)] = None,
    focus: Annotated[str | None, Query(max_length=120)] = None,
    count: Annotated[str | None, Query(alias="_count", max_length=12)] = None,
    offset: Annotated[str | None, Query(alias="_offset", max_length=12)] = None,
) -> Response:
    """A referral's Task by its ServiceRequest: based-on (or focus) = ServiceRequest/{id}."""
    page = page_of(count, offset)
    if not may_use(principal, Capability.REFERRAL_READ):
        raise Forbidden(
            f"searching Tasks needs one of the roles: {roles_phrase(Capability.REFERRAL_READ)}"
        )
    ref = based_on or focus
    referral_id = referenced_referral(ref)
    if not ref or referral_id is None or (based_on and focus and based_on != focus):
        raise ValidationFailed("search Tasks by based-on=ServiceRequest/<id> (or focus)")
    tasks = []
    if is_uuid(referral_id):
        try:
            referral = await readable(session, principal, referral_id)
        except NotFound:
            referral = None  # the same empty answer for "absent" and "not yours"
        if referral is not None:
            task, _ = await _task_of(session, referral.id)
            tasks.append(task)
            record_audit(
                session,
                principal=principal,
                action="read",
                resource_type="Task",
                resource_id=referral.id,
                patient_id=referral.patient_id,
                client_ip=client_ip(request),
                detail="search",
            )
    total = len(tasks)
    tasks = tasks[page.offset : page.offset + page.count]
    return fhir_response(search_bundle(request, tasks, total=total, page=page))
