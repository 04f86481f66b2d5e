"""What the care plan routes share: reading a plan as the caller, auditing a refusal, and
rendering a plan or an assessment."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Header, Request

from services.care_plans.domain.access import check_role
from services.care_plans.handlers.access import PlanState, read_plan
from services.care_plans.models import Assessment
from services.care_plans.repository import CarePlanRepository
from services.care_plans.schemas import AssessmentOut, PlanOut, stored_content
from shared.access import Capability
from shared.audit import record_audit
from shared.auth import Principal
from shared.db import unit_of_work
from shared.errors import Forbidden, NotFound
from shared.vocabulary import Instrument
from shared.web import PROBLEM_RESPONSES, SessionDep, client_ip

ERRORS = PROBLEM_RESPONSES

IfMatch = Annotated[str | None, Header(max_length=40)]


def check_id(plan_id: str, what: str = "care plan") -> None:
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


async def read_plan_as(
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
        check_id(plan_id)
        return await read_plan(
            session=session,
            principal=principal,
            plan_id=plan_id,
            settings=request.app.state.settings,
            version=version,
            resource_type=resource_type,
            client_ip=client_ip(request),
            detail=detail,
        )


async def read_of_patient(
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
        check_role(principal, Capability.CARE_PLAN_READ)
        plan = await CarePlanRepository(session).by_patient(patient_id)
        if plan is None:
            raise NotFound(f"no care plan for {patient_id}")
    try:
        return await read_plan_as(
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


def plan_out(state: PlanState) -> dict[str, Any]:
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


def assessment_out(a: Assessment) -> AssessmentOut:
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
