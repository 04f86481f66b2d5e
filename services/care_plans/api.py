"""The care plans service's HTTP API (routes only: parse, authorise, call a handler, render)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Header, Path, Query, Request, Response
from fastapi.responses import JSONResponse

from services.care_plans import domain, fhir, handlers
from services.care_plans.domain import Instrument
from services.care_plans.handlers import PlanState
from services.care_plans.models import Assessment
from services.care_plans.repository import CarePlanRepository
from services.care_plans.schemas import (
    AssessmentHistory,
    AssessmentIn,
    AssessmentOut,
    BreakGlassIn,
    BreakGlassOut,
    CarerContactOut,
    ConsentUpdate,
    ContactOut,
    CrisisContactOut,
    CrisisPlanOut,
    DiffOut,
    PlanCreate,
    PlanOut,
    PlanSummary,
    PlanUpdate,
    TimelineEntryOut,
    TrendPointOut,
    VersionInfo,
    stored_content,
)
from shared.access import Capability, may_use
from shared.audit import record_audit
from shared.auth import CurrentPrincipal, Principal
from shared.db import unit_of_work
from shared.errors import Forbidden, NotFound
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
    "care_plans",
    title="Waymark care plans",
    description="One shared personalised care and support plan per person, with "
    "versions, consent, screening scored exactly (STarT Back, PHQ-9, "
    "GAD-7) and risk flagged at once; a FHIR R4 face.",
    error_renderers={"/fhir": fhir.operation_outcome},
)

ERRORS = PROBLEM_RESPONSES

IfMatch = Annotated[str | None, Header(max_length=40)]


def _check_id(plan_id: str, what: str = "care plan") -> None:
    try:
        uuid.UUID(plan_id)
    except ValueError:
        raise NotFound(f"no {what} {plan_id}") from None


async def _audit_denied(
    request: Request,
    principal: Principal,
    resource_type: str,
    resource_id: str,
    reason: str,
    *,
    action: str = "read-denied",
    patient_id: str | None = None,
) -> None:
    """A refusal is audited too, in a transaction of its own (the request's rolls back with
    the error)."""
    async with unit_of_work(request.app.state.sessions) as session:
        if patient_id is None:
            try:
                uuid.UUID(resource_id)
                plan = await CarePlanRepository(session).get(resource_id)
            except ValueError:
                plan = None
            patient_id = plan.patient_id if plan else None
        record_audit(
            session,
            principal=principal,
            action=action,
            resource_type=resource_type,
            resource_id=resource_id[:200],
            patient_id=patient_id,
            client_ip=client_ip(request),
            detail=reason,
        )


async def _read(
    request: Request,
    session: SessionDep,
    principal: Principal,
    plan_id: str,
    *,
    version: int | None = None,
    resource_type: str = "CarePlan",
    detail: str | None = None,
) -> PlanState:
    async with refusals_audited(request, principal, resource_type, plan_id):
        _check_id(plan_id)
        return await handlers.read_plan(
            session=session,
            principal=principal,
            plan_id=plan_id,
            settings=request.app.state.settings,
            version=version,
            resource_type=resource_type,
            client_ip=client_ip(request),
            detail=detail,
        )


async def _read_of_patient(
    request: Request,
    session: SessionDep,
    principal: Principal,
    patient_id: str,
    *,
    resource_type: str = "CarePlan",
    detail: str | None = None,
) -> PlanState:
    """The person's plan by their pseudonymous id, read as the caller: "no plan" and "not
    yours" are the same 404, naming the id asked for."""
    async with refusals_audited(
        request, principal, resource_type, patient_id, patient_id=patient_id
    ):
        domain.check_role(principal, Capability.CARE_PLAN_READ)
        plan = await CarePlanRepository(session).by_patient(patient_id)
        if plan is None:
            raise NotFound(f"no care plan for {patient_id}")
    try:
        return await _read(
            request, session, principal, plan.id, resource_type=resource_type, detail=detail
        )
    except NotFound:
        raise NotFound(f"no care plan for {patient_id}") from None


@asynccontextmanager
async def refusals_audited(
    request: Request,
    principal: Principal,
    resource_type: str,
    resource_id: str,
    *,
    action: str = "read-denied",
    patient_id: str | None = None,
) -> AsyncIterator[None]:
    """Audit a refusal (403, or the 404 that "not yours" shares with "absent") and let it
    go on to the caller."""
    try:
        yield
    except (Forbidden, NotFound) as exc:
        await _audit_denied(
            request,
            principal,
            resource_type,
            resource_id,
            exc.message,
            action=action,
            patient_id=patient_id,
        )
        raise


def _plan_out(state: PlanState) -> dict[str, Any]:
    p, v = state.plan, state.version
    return PlanOut(
        id=p.id,
        patient_id=p.patient_id,
        ics=p.ics,
        holder_org=p.holder_org,
        version=v.version,
        content=stored_content(v.content),
        consented_organisations=list(v.consented_orgs),
        author=v.author,
        author_org=v.author_org,
        reason=v.reason,
        updated_at=v.created_at,
        created_at=p.created_at,
        access=state.access,
    ).model_dump(mode="json")


def _assessment_out(a: Assessment) -> AssessmentOut:
    return AssessmentOut(
        id=a.id,
        instrument=Instrument(a.instrument),
        total=a.total,
        band=a.band,
        subscale=a.subscale,
        safety_flag=a.safety_flag,
        risk_flags=a.risk_flags,
        authored=a.authored,  # type: ignore[arg-type]
        recorded_by=a.recorded_by,
        recorded_org=a.recorded_org,
    )


# --- plans ------------------------------------------------------------------------------------


@app.post(
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
    patient_id = handlers.patient_of_named(body, settings)

    async def create() -> Outcome:
        async with refusals_audited(
            request,
            principal,
            "CarePlan",
            patient_id or "-",
            action="create-denied",
            patient_id=patient_id,
        ):
            state = await handlers.create_plan(
                session=session,
                principal=principal,
                cmd=body,
                settings=settings,
                client_ip=client_ip(request),
            )
        return Outcome(
            _plan_out(state),
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


@app.post(
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
    patient_id = handlers.patient_of_named(body, settings)
    async with refusals_audited(
        request,
        principal,
        "CarePlan",
        patient_id or "-",
        action="break-glass-denied",
        patient_id=patient_id,
    ):
        grant = await handlers.break_glass(
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


@app.get(
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
    state = await _read_of_patient(request, session, principal, patient_id)
    return JSONResponse(_plan_out(state), headers={"ETag": weak_etag(state.version.version)})


@app.get(
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


@app.get("/care-plans/{plan_id}", response_model=PlanOut, responses=ERRORS, tags=["care plans"])
async def get_plan(
    plan_id: str, request: Request, session: SessionDep, principal: CurrentPrincipal
) -> Response:
    """The current version, in one read (ETag: its version)."""
    state = await _read(request, session, principal, plan_id)
    return JSONResponse(_plan_out(state), headers={"ETag": weak_etag(state.version.version)})


@app.put("/care-plans/{plan_id}", response_model=PlanOut, responses=ERRORS, tags=["care plans"])
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
    _check_id(plan_id)
    expected = expected_version(if_match)
    async with refusals_audited(request, principal, "CarePlan", plan_id, action="update-denied"):
        state = await handlers.update_plan(
            session=session,
            principal=principal,
            plan_id=plan_id,
            content=body.content,
            reason=body.reason,
            expected_version=expected,
            settings=request.app.state.settings,
            client_ip=client_ip(request),
        )
    return JSONResponse(_plan_out(state), headers={"ETag": weak_etag(state.version.version)})


@app.put(
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
    _check_id(plan_id)
    expected = expected_version(if_match)
    async with refusals_audited(request, principal, "CarePlan", plan_id, action="consent-denied"):
        state = await handlers.change_consent(
            session=session,
            principal=principal,
            plan_id=plan_id,
            organisations=body.organisations,
            reason=body.reason,
            expected_version=expected,
            settings=request.app.state.settings,
            client_ip=client_ip(request),
        )
    return JSONResponse(_plan_out(state), headers={"ETag": weak_etag(state.version.version)})


@app.get(
    "/care-plans/{plan_id}/versions",
    response_model=list[VersionInfo],
    responses=ERRORS,
    tags=["care plans"],
)
async def list_versions(
    plan_id: str, request: Request, session: SessionDep, principal: CurrentPrincipal
) -> list[VersionInfo]:
    """Every version: who, when, why (oldest first)."""
    state = await _read(
        request, session, principal, plan_id, resource_type="CarePlanHistory", detail="versions"
    )
    rows = await CarePlanRepository(session).versions(state.plan.id)
    return [VersionInfo.model_validate(v, from_attributes=True) for v in rows]


@app.get(
    "/care-plans/{plan_id}/versions/{version}",
    response_model=PlanOut,
    responses=ERRORS,
    tags=["care plans"],
)
async def get_version(
    plan_id: str,
    version: Annotated[int, Path(ge=1, le=1_000_000)],
    request: Request,
    session: SessionDep,
    principal: CurrentPrincipal,
) -> Response:
    """One version as it was."""
    state = await _read(request, session, principal, plan_id, version=version)
    return JSONResponse(_plan_out(state), headers={"ETag": weak_etag(state.version.version)})


@app.get(
    "/care-plans/{plan_id}/diff", response_model=DiffOut, responses=ERRORS, tags=["care plans"]
)
async def diff_versions(
    plan_id: str,
    request: Request,
    session: SessionDep,
    principal: CurrentPrincipal,
    from_version: Annotated[int, Query(alias="from", ge=1, le=1_000_000)],
    to_version: Annotated[int, Query(alias="to", ge=1, le=1_000_000)],
) -> DiffOut:
    """What changed between any two versions (JSON Pointer paths; consent included)."""
    older = await _read(
        request,
        session,
        principal,
        plan_id,
        version=from_version,
        resource_type="CarePlanHistory",
        detail=f"diff {from_version}",
    )
    newer = await _read(
        request,
        session,
        principal,
        plan_id,
        version=to_version,
        resource_type="CarePlanHistory",
        detail=f"diff {to_version}",
    )

    def doc(s: PlanState) -> dict[str, Any]:
        return {**s.version.content, "consented_organisations": list(s.version.consented_orgs)}

    changes = domain.diff(doc(older), doc(newer))
    return DiffOut.model_validate(
        {"from_version": from_version, "to_version": to_version, "changes": changes}
    )


@app.get(
    "/care-plans/{plan_id}/summary",
    response_model=PlanSummary,
    responses=ERRORS,
    tags=["care plans"],
)
async def summary(
    plan_id: str, request: Request, session: SessionDep, principal: CurrentPrincipal
) -> PlanSummary:
    """ "Tell it once": what a receiving service needs, if the person consented to it."""
    state = await _read(request, session, principal, plan_id, resource_type="CarePlanSummary")
    content = stored_content(state.version.content)
    latest: dict[str, Assessment] = {}
    for a in await CarePlanRepository(session).assessments(state.plan.id):
        latest[a.instrument] = a  # oldest first, so the last one wins
    return PlanSummary(
        id=state.plan.id,
        patient_id=state.plan.patient_id,
        version=state.version.version,
        what_matters_to_me=content.what_matters_to_me,
        active_goals=[g for g in content.goals if g.status in ("active", "proposed")],
        communication=content.communication,
        crisis=content.crisis,
        # carers are named to services; what each may see is the person's choice
        carers=[
            {
                "name": c.name,
                "relationship": c.relationship,
                "contact": c.contact,
                "may_see": [s.value for s in c.may_see],
            }
            for c in content.carers
        ],
        latest_assessments=[_assessment_out(a) for a in latest.values()],
        next_review_date=content.next_review_date,
    )


def _crisis_out(state: PlanState) -> CrisisPlanOut:
    crisis = stored_content(state.version.content).crisis
    return CrisisPlanOut(
        plan_id=state.plan.id,
        patient_id=state.plan.patient_id,
        version=state.version.version,
        updated_at=state.version.created_at,
        when=crisis.when,
        plan=crisis.plan,
        access=state.access,
        contacts=[
            CrisisContactOut(
                id=c.id, name=c.name, relationship=c.relationship, role=c.role, phone=c.phone
            )
            for c in crisis.who_to_call
        ],
    )


@app.get(
    "/care-plans/{plan_id}/crisis-plan",
    response_model=CrisisPlanOut,
    responses=ERRORS,
    tags=["care plans"],
)
async def crisis_plan(
    plan_id: str, request: Request, session: SessionDep, principal: CurrentPrincipal
) -> CrisisPlanOut:
    """The person's crisis plan: when it applies, what to do, who to call (current version)."""
    state = await _read(
        request, session, principal, plan_id, resource_type="CarePlanCrisis", detail="crisis plan"
    )
    return _crisis_out(state)


@app.get(
    "/patients/{patient_id}/crisis-plan",
    response_model=CrisisPlanOut,
    responses=ERRORS,
    tags=["care plans"],
)
async def crisis_plan_of_patient(
    patient_id: Annotated[str, Path(max_length=120)],
    request: Request,
    session: SessionDep,
    principal: CurrentPrincipal,
) -> CrisisPlanOut:
    """The crisis plan by the person's pseudonymous id (what a safety alert names), read as
    the caller: "no plan" and "not yours" are the same 404."""
    state = await _read_of_patient(
        request,
        session,
        principal,
        patient_id,
        resource_type="CarePlanCrisis",
        detail="crisis plan",
    )
    return _crisis_out(state)


@app.get(
    "/care-plans/{plan_id}/timeline",
    response_model=list[TimelineEntryOut],
    responses=ERRORS,
    tags=["care plans"],
)
async def timeline(
    plan_id: str, request: Request, session: SessionDep, principal: CurrentPrincipal
) -> list[TimelineEntryOut]:
    """The person's referral journey, from the referral events (oldest first)."""
    state = await _read(
        request, session, principal, plan_id, resource_type="CarePlanTimeline", detail="timeline"
    )
    rows = await CarePlanRepository(session).timeline(state.plan.patient_id)
    return [TimelineEntryOut.model_validate(r, from_attributes=True) for r in rows]


# --- assessments ------------------------------------------------------------------------------


@app.post(
    "/care-plans/{plan_id}/assessments",
    status_code=201,
    response_model=AssessmentOut,
    responses=ERRORS,
    tags=["assessments"],
)
async def record_assessment(
    plan_id: str,
    body: AssessmentIn,
    request: Request,
    session: SessionDep,
    principal: CurrentPrincipal,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Score a STarT Back, PHQ-9 or GAD-7; a safety flag or high-risk band is raised in the
    same transaction."""
    _check_id(plan_id)

    async def assess() -> Outcome:
        async with refusals_audited(
            request, principal, "Assessment", plan_id, action="create-denied"
        ):
            recorded = await handlers.record_assessment(
                session=session,
                principal=principal,
                plan_id=plan_id,
                cmd=body,
                settings=request.app.state.settings,
                client_ip=client_ip(request),
            )
        return Outcome(
            _assessment_out(recorded.assessment).model_dump(mode="json"),
            201,
            {"Location": f"/care-plans/{plan_id}/assessments/{recorded.assessment.id}"},
        )

    return await once_per_key(
        session,
        principal,
        idempotency_key,
        ["assess", plan_id, body.model_dump(mode="json", exclude_unset=True)],
        assess,
    )


@app.get(
    "/care-plans/{plan_id}/assessments",
    response_model=list[AssessmentHistory],
    responses=ERRORS,
    tags=["assessments"],
)
async def assessment_history(
    plan_id: str,
    request: Request,
    session: SessionDep,
    principal: CurrentPrincipal,
    instrument: Annotated[Instrument | None, Query()] = None,
) -> list[AssessmentHistory]:
    """History per instrument with the trend and reliable change (PHQ-9 >= 6, GAD-7 >= 4)."""
    state = await _read(
        request,
        session,
        principal,
        plan_id,
        resource_type="Assessment",
        detail=f"history {instrument.value if instrument else 'all'}",
    )
    rows = await CarePlanRepository(session).assessments(
        state.plan.id, instrument.value if instrument else None
    )
    out = []
    for inst in [instrument] if instrument else list(Instrument):
        mine = [a for a in rows if a.instrument == inst.value]
        if not mine and instrument is None:
            continue
        points = domain.trend(inst, [(a.total, a.band) for a in mine])
        out.append(
            AssessmentHistory(
                instrument=inst,
                direction=domain.direction(points),
                reliable_change_threshold=domain.RELIABLE_CHANGE.get(inst),
                points=[
                    TrendPointOut(
                        assessment_id=a.id,
                        authored=a.authored,
                        total=p.total,
                        band=p.band,
                        change=p.change,
                        reliable_change=p.reliable_change,
                    )
                    for a, p in zip(mine, points, strict=True)
                ],
            )
        )
    return out


@app.get(
    "/care-plans/{plan_id}/assessments/{assessment_id}",
    response_model=AssessmentOut,
    responses=ERRORS,
    tags=["assessments"],
)
async def get_assessment(
    plan_id: str,
    assessment_id: str,
    request: Request,
    session: SessionDep,
    principal: CurrentPrincipal,
) -> AssessmentOut:
    """One assessment's score and flags."""
    state = await _read(
        request,
        session,
        principal,
        plan_id,
        resource_type="Assessment",
        detail=f"assessment {assessment_id}",
    )
    a = await CarePlanRepository(session).assessment(assessment_id)
    if a is None or a.plan_id != state.plan.id:
        raise NotFound(f"no assessment {assessment_id} on care plan {plan_id}")
    return _assessment_out(a)


# --- FHIR R4 ----------------------------------------------------------------------------------

FHIR_ERRORS: dict[int | str, dict[str, Any]] = {
    s: {"description": d, "content": {fhir.FHIR_JSON: {}}}
    for s, d in [
        (401, "Not authenticated"),
        (403, "Forbidden"),
        (404, "Not found"),
        (422, "OperationOutcome"),
    ]
}


def _fhir(resource: dict[str, Any], headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(resource, media_type=fhir.FHIR_JSON, headers=headers)


@app.get("/fhir/Questionnaire/{questionnaire_id}", responses=FHIR_ERRORS, tags=["fhir"])
async def fhir_questionnaire(questionnaire_id: str, principal: CurrentPrincipal) -> Response:
    """The published definition of STarT-Back, PHQ-9 or GAD-7, with each answer's score."""
    instrument = fhir.QUESTIONNAIRE_IDS.get(questionnaire_id)
    if instrument is None:
        raise NotFound(
            f"no Questionnaire {questionnaire_id}; one of {', '.join(fhir.QUESTIONNAIRE_IDS)}"
        )
    return _fhir(fhir.questionnaire(instrument))


@app.get("/fhir/CarePlan/{plan_id}", responses=FHIR_ERRORS, tags=["fhir"])
async def fhir_care_plan(
    plan_id: str, request: Request, session: SessionDep, principal: CurrentPrincipal
) -> Response:
    """The current version as an R4 CarePlan (goals as references to Goal)."""
    state = await _read(request, session, principal, plan_id, detail="fhir CarePlan")
    return _fhir(
        fhir.care_plan(state.plan, state.version),
        headers={"ETag": weak_etag(state.version.version)},
    )


@app.get("/fhir/Goal/{goal_id}", responses=FHIR_ERRORS, tags=["fhir"])
async def fhir_goal(
    goal_id: str, request: Request, session: SessionDep, principal: CurrentPrincipal
) -> Response:
    """A goal of a plan's current version as an R4 Goal (id: `<plan id hex>.<goal id>`)."""
    ids = fhir.parse_goal_fhir_id(goal_id)
    if ids is None:
        raise NotFound(f"no Goal {goal_id}")
    state = await _read(
        request, session, principal, ids[0], resource_type="Goal", detail=f"goal {ids[1]}"
    )
    g = next((g for g in state.version.content["goals"] if g["id"] == ids[1]), None)
    if g is None:
        raise NotFound(f"no Goal {goal_id} in the plan's current version")
    return _fhir(fhir.goal(state.plan, g))


@app.get("/fhir/QuestionnaireResponse/{assessment_id}", responses=FHIR_ERRORS, tags=["fhir"])
async def fhir_questionnaire_response(
    assessment_id: str, request: Request, session: SessionDep, principal: CurrentPrincipal
) -> Response:
    """An assessment's answers as the stored R4 QuestionnaireResponse."""
    _check_id(assessment_id, "QuestionnaireResponse")
    a = await CarePlanRepository(session).assessment(assessment_id)
    if a is None:
        raise NotFound(f"no QuestionnaireResponse {assessment_id}")
    await _read(
        request,
        session,
        principal,
        a.plan_id,
        resource_type="QuestionnaireResponse",
        detail=f"assessment {assessment_id}",
    )
    return _fhir(fhir.stored_response(a))
