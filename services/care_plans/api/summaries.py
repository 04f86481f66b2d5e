"""Routes for what others read of a plan: the summary a receiving service needs, the crisis
plan, and the person's referral timeline."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request

from services.care_plans.api.reads import ERRORS, assessment_out, read_of_patient, read_plan_as
from services.care_plans.handlers.access import PlanState
from services.care_plans.models import Assessment
from services.care_plans.repository import CarePlanRepository
from services.care_plans.schemas import (
    CrisisContactOut,
    CrisisPlanOut,
    PlanSummary,
    TimelineEntryOut,
    stored_content,
)
from shared.auth import CurrentPrincipal
from shared.web import SessionDep

router = APIRouter()


@router.get(
    "/care-plans/{plan_id}/summary",
    response_model=PlanSummary,
    responses=ERRORS,
    tags=["care plans"],
)
async def summary(
    plan_id: str, request: Request, session: SessionDep, principal: CurrentPrincipal
) -> PlanSummary:
    """ "Tell it once": what a receiving service needs, if the person consented to it."""
    state = await read_plan_as(
        request, session, principal, plan_id, resource_type="CarePlanSummary"
    )
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
        latest_assessments=[assessment_out(a) for a in latest.values()],
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


@router.get(
    "/care-plans/{plan_id}/crisis-plan",
    response_model=CrisisPlanOut,
    responses=ERRORS,
    tags=["care plans"],
)
async def crisis_plan(
    plan_id: str, request: Request, session: SessionDep, principal: CurrentPrincipal
) -> CrisisPlanOut:
    """The person's crisis plan: when it applies, what to do, who to call (current version)."""
    state = await read_plan_as(
        request, session, principal, plan_id, resource_type="CarePlanCrisis", detail="crisis plan"
    )
    return _crisis_out(state)


@router.get(
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
    state = await read_of_patient(
        request,
        session,
        principal,
        patient_id,
        resource_type="CarePlanCrisis",
        detail="crisis plan",
    )
    return _crisis_out(state)


@router.get(
    "/care-plans/{plan_id}/timeline",
    response_model=list[TimelineEntryOut],
    responses=ERRORS,
    tags=["care plans"],
)
async def timeline(
    plan_id: str, request: Request, session: SessionDep, principal: CurrentPrincipal
) -> list[TimelineEntryOut]:
    """The person's referral journey, from the referral events (oldest first)."""
    state = await read_plan_as(
        request, session, principal, plan_id, resource_type="CarePlanTimeline", detail="timeline"
    )
    rows = await CarePlanRepository(session).timeline(state.plan.patient_id)
    return [TimelineEntryOut.model_validate(r, from_attributes=True) for r in rows]
