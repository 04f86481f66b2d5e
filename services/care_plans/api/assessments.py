"""Routes for screening assessments: record one, the history with its trend, one as scored."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from services.care_plans.api.reads import (
    ERRORS,
    assessment_out,
    check_id,
    read_plan_as,
    refusals_audited,
)
from services.care_plans.domain.screening import RELIABLE_CHANGE, direction, trend
from services.care_plans.handlers.assessments import record_assessment as record_handler
from services.care_plans.repository import CarePlanRepository
from services.care_plans.schemas import (
    AssessmentHistory,
    AssessmentIn,
    AssessmentOut,
    TrendPointOut,
)
from shared.auth import CurrentPrincipal
from shared.errors import NotFound
from shared.vocabulary import Instrument
from shared.web import IdempotencyKey, Outcome, SessionDep, client_ip, once_per_key

router = APIRouter()


@router.post(
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
    check_id(plan_id)

    async def assess() -> Outcome:
        async with refusals_audited(
            request, principal, "Assessment", plan_id, action="create-denied"
        ):
            recorded = await record_handler(
                session=session,
                principal=principal,
                plan_id=plan_id,
                cmd=body,
                settings=request.app.state.settings,
                client_ip=client_ip(request),
            )
        return Outcome(
            assessment_out(recorded.assessment).model_dump(mode="json"),
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


@router.get(
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
    state = await read_plan_as(
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
        points = trend(inst, [(a.total, a.band) for a in mine])
        out.append(
            AssessmentHistory(
                instrument=inst,
                direction=direction(points),
                reliable_change_threshold=RELIABLE_CHANGE.get(inst),
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


@router.get(
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
    state = await read_plan_as(
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
    return assessment_out(a)
