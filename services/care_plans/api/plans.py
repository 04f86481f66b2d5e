"""Routes for the plan itself: start it, break glass, read it, change it or its consent, and
the person's contact details for the notifications service."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response
from fastapi.responses import JSONResponse

from services.care_plans.api.reads import (
    ERRORS,
    IfMatch,
    check_id,
    plan_out,
    read_of_patient,
    read_plan_as,
    refusals_audited,
)
from services.care_plans.handlers.access import patient_of_named
from services.care_plans.handlers.break_glass import break_glass as break_glass_handler
from services.care_plans.handlers.plans import change_consent as change_consent_handler
from services.care_plans.handlers.plans import create_plan as create_plan_handler
from services.care_plans.handlers.plans import update_plan as update_plan_handler
from services.care_plans.repository import CarePlanRepository
from services.care_plans.schemas import (
    BreakGlassIn,
    BreakGlassOut,
    CarerContactOut,
    ConsentUpdate,
    ContactOut,
    PlanCreate,
    PlanOut,
    PlanUpdate,
    stored_content,
)
from shared.access import Capability, may_use
from shared.audit import record_audit
from shared.auth import CurrentPrincipal
from shared.errors import Forbidden, NotFound
from shared.web import (
    IdempotencyKey,
    Outcome,
    SessionDep,
    client_ip,
    expected_version,
    once_per_key,
    weak_etag,
)

router = APIRouter()


@router.post(
    "/care-plans", status_code=201, response_model=PlanOut, responses=ERRORS, tags=["care plans"]
)
async def create_plan(
    body: PlanCreate,
    request: Request,
    session: SessionDep,
    principal: CurrentPrincipal,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Start the person's one shared plan (version 1); the caller's organisation holds it.
    Needs a care relationship with the person (a referral from or to the caller's
    organisation, their registered GP practice; coordinators: a person of their ICS)."""
    settings = request.app.state.settings
    patient_id = patient_of_named(body, settings)

    async def create() -> Outcome:
        async with refusals_audited(
            request,
            principal,
            "CarePlan",
            patient_id or "-",
            action="create-denied",
            patient_id=patient_id,
        ):
            state = await create_plan_handler(
                session=session,
                principal=principal,
                cmd=body,
                settings=settings,
                client_ip=client_ip(request),
            )
        return Outcome(
            plan_out(state),
            201,
            {"Location": f"/care-plans/{state.plan.id}", "ETag": weak_etag(1)},
        )

    return await once_per_key(
        session,
        principal,
        idempotency_key,
        ["create", body.model_dump(mode="json", exclude_unset=True)],
        create,
    )


@router.post(
    "/care-plans/break-glass",
    status_code=201,
    response_model=BreakGlassOut,
    responses=ERRORS,
    tags=["care plans"],
)
async def break_glass(
    body: BreakGlassIn, request: Request, session: SessionDep, principal: CurrentPrincipal
) -> BreakGlassOut:
    """Emergency access: a clinician of the person's ICS reads their plan outside the usual
    relationships, with a stated reason, for a limited time. Audited and reported to the ICS's
    information governance lead."""
    settings = request.app.state.settings
    patient_id = patient_of_named(body, settings)
    async with refusals_audited(
        request,
        principal,
        "CarePlan",
        patient_id or "-",
        action="break-glass-denied",
        patient_id=patient_id,
    ):
        grant = await break_glass_handler(
            session=session,
            principal=principal,
            nhs_number=body.nhs_number,
            reason_code=body.reason_code,
            reason=body.reason,
            settings=settings,
            client_ip=client_ip(request),
        )
    return BreakGlassOut(
        grant_id=grant.id,
        plan_id=grant.plan_id,
        expires_at=grant.expires_at,
        notice="This emergency access is recorded and will be reviewed by "
        "the ICS's information governance lead.",
    )


@router.get(
    "/patients/{patient_id}/care-plan",
    response_model=PlanOut,
    responses=ERRORS,
    tags=["care plans"],
)
async def plan_of_patient(
    patient_id: str, request: Request, session: SessionDep, principal: CurrentPrincipal
) -> Response:
    """The person's plan by their pseudonymous id (the subject of every event about them).
    "No plan" and "not yours" are the same 404."""
    state = await read_of_patient(request, session, principal, patient_id)
    return JSONResponse(plan_out(state), headers={"ETag": weak_etag(state.version.version)})


@router.get(
    "/patients/{patient_id}/contact",
    response_model=ContactOut,
    responses=ERRORS,
    tags=["notifications"],
)
async def contact_of_patient(
    patient_id: Annotated[str, Path(max_length=120)],
    request: Request,
    session: SessionDep,
    principal: CurrentPrincipal,
) -> ContactOut:
    """How to reach the person (communication needs, email, mobile) and their carers with
    what each may see: the notifications service's credential only."""
    if not may_use(principal, Capability.PATIENT_CONTACT_READ):
        raise Forbidden(
            "only a Waymark service's own credential may read a person's contact details here"
        )
    repo = CarePlanRepository(session)
    plan = await repo.by_patient(patient_id)
    version = await repo.version(plan.id, plan.current_version) if plan else None
    if plan is None or version is None:
        raise NotFound(f"no care plan for {patient_id}")
    content = stored_content(version.content)
    record_audit(
        session,
        principal=principal,
        action="read",
        resource_type="CarePlanContact",
        resource_id=plan.id,
        patient_id=plan.patient_id,
        client_ip=client_ip(request),
        detail=f"version {version.version}",
    )
    return ContactOut(
        patient_id=plan.patient_id,
        plan_id=plan.id,
        version=version.version,
        communication=content.communication,
        carers=[
            CarerContactOut(
                id=c.id,
                name=c.name,
                relationship=c.relationship,
                contact=c.contact,
                may_see=[x.value for x in c.may_see],
            )
            for c in content.carers
        ],
    )


@router.get("/care-plans/{plan_id}", response_model=PlanOut, responses=ERRORS, tags=["care plans"])
async def get_plan(
    plan_id: str, request: Request, session: SessionDep, principal: CurrentPrincipal
) -> Response:
    """The current version, in one read (ETag: its version)."""
    state = await read_plan_as(request, session, principal, plan_id)
    return JSONResponse(plan_out(state), headers={"ETag": weak_etag(state.version.version)})


@router.put("/care-plans/{plan_id}", response_model=PlanOut, responses=ERRORS, tags=["care plans"])
async def update_plan(
    plan_id: str,
    body: PlanUpdate,
    request: Request,
    session: SessionDep,
    principal: CurrentPrincipal,
    if_match: IfMatch = None,
) -> Response:
    """Change the plan: a new immutable version with author, time and reason. Needs
    If-Match with the version you read (412 if it has moved on)."""
    check_id(plan_id)
    expected = expected_version(if_match)
    async with refusals_audited(request, principal, "CarePlan", plan_id, action="update-denied"):
        state = await update_plan_handler(
            session=session,
            principal=principal,
            plan_id=plan_id,
            content=body.content,
            reason=body.reason,
            expected_version=expected,
            settings=request.app.state.settings,
            client_ip=client_ip(request),
        )
    return JSONResponse(plan_out(state), headers={"ETag": weak_etag(state.version.version)})


@router.put(
    "/care-plans/{plan_id}/consent", response_model=PlanOut, responses=ERRORS, tags=["care plans"]
)
async def change_consent(
    plan_id: str,
    body: ConsentUpdate,
    request: Request,
    session: SessionDep,
    principal: CurrentPrincipal,
    if_match: IfMatch = None,
) -> Response:
    """The organisations the person lets read their plan (a new version; consent.changed).
    Carers' access is each carer's `may_see` in the plan."""
    check_id(plan_id)
    expected = expected_version(if_match)
    async with refusals_audited(request, principal, "CarePlan", plan_id, action="consent-denied"):
        state = await change_consent_handler(
            session=session,
            principal=principal,
            plan_id=plan_id,
            organisations=body.organisations,
            reason=body.reason,
            expected_version=expected,
            settings=request.app.state.settings,
            client_ip=client_ip(request),
        )
    return JSONResponse(plan_out(state), headers={"ETag": weak_etag(state.version.version)})
