"""Routes for a plan's history: every version, one version as it was, and what changed."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import JSONResponse

from services.care_plans.api.reads import ERRORS, plan_out, read_plan_as
from services.care_plans.domain.versions import diff
from services.care_plans.handlers.access import PlanState
from services.care_plans.repository import CarePlanRepository
from services.care_plans.schemas import DiffOut, PlanOut, VersionInfo
from shared.auth import CurrentPrincipal
from shared.web import SessionDep, weak_etag

router = APIRouter()


@router.get(
    "/care-plans/{plan_id}/versions",
    response_model=list[VersionInfo],
    responses=ERRORS,
    tags=["care plans"],
)
async def list_versions(
    plan_id: str, request: Request, session: SessionDep, principal: CurrentPrincipal
) -> list[VersionInfo]:
    """Every version: who, when, why (oldest first)."""
    state = await read_plan_as(
        request, session, principal, plan_id, resource_type="CarePlanHistory", detail="versions"
    )
    rows = await CarePlanRepository(session).versions(state.plan.id)
    return [VersionInfo.model_validate(v, from_attributes=True) for v in rows]


@router.get(
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
    state = await read_plan_as(request, session, principal, plan_id, version=version)
    return JSONResponse(plan_out(state), headers={"ETag": weak_etag(state.version.version)})


@router.get(
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
    older = await read_plan_as(
        request,
        session,
        principal,
        plan_id,
        version=from_version,
        resource_type="CarePlanHistory",
        detail=f"diff {from_version}",
    )
    newer = await read_plan_as(
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

    changes = diff(doc(older), doc(newer))
    return DiffOut.model_validate(
        {"from_version": from_version, "to_version": to_version, "changes": changes}
    )
