"""Finding a plan and deciding whether the caller may use it; reading it, audited."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlmodel.ext.asyncio.session import AsyncSession

from services.care_plans.domain.access import (
    PersonFacts,
    PlanFacts,
    check_plan_access,
    check_role,
    not_found_message,
    relationships,
)
from services.care_plans.models import CarePlan, CarePlanVersion
from services.care_plans.repository import CarePlanRepository
from services.care_plans.schemas import BreakGlassIn, PlanCreate
from shared.access import Capability, Principal, Relationship
from shared.audit import record_audit
from shared.errors import NotFound, ValidationFailed
from shared.identifiers import normalise_nhs_number
from shared.pseudonym import pseudonymise
from shared.settings import Settings


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class PlanState:
    plan: CarePlan
    version: CarePlanVersion
    access: str  # why the caller may read it


async def person_facts(
    repo: CarePlanRepository,
    principal: Principal,
    patient_id: str,
    settings: Settings,
    *,
    has_plan: bool = False,
) -> PersonFacts:
    return PersonFacts(
        referral_with_org=await repo.has_referral_with(patient_id, principal.org),
        registered_practice=await repo.registered_practice(patient_id),
        known=has_plan or await repo.is_known(patient_id),
        ics=settings.ics,
    )


async def relationships_to_plan(
    session: AsyncSession, principal: Principal, plan: CarePlan, settings: Settings
) -> set[Relationship]:
    repo = CarePlanRepository(session)
    person = await person_facts(repo, principal, plan.patient_id, settings, has_plan=True)
    grant = await repo.active_grant(plan.id, principal.identity, utc_now())
    return relationships(
        principal,
        person,
        PlanFacts(
            holder_org=plan.holder_org,
            consented_orgs=plan.consented_orgs,
            ics=plan.ics,
            break_glass=grant is not None,
        ),
    )


def patient_of_named(cmd: PlanCreate | BreakGlassIn, settings: Settings) -> str | None:
    """The pseudonym a request names (for auditing a refusal), or None if invalid."""
    try:
        return pseudonymise(normalise_nhs_number(cmd.nhs_number), settings)
    except ValidationFailed:
        return None


async def plan_access(
    *,
    session: AsyncSession,
    principal: Principal,
    plan_id: str,
    capability: Capability,
    settings: Settings,
    for_update: bool = False,
) -> tuple[CarePlan, str]:
    """The plan if it exists and the caller may use it so (NotFound / Forbidden otherwise,
    NotFound alike for "absent" and "not yours")."""
    check_role(principal, capability)
    plan = await CarePlanRepository(session).get(plan_id, for_update=for_update)
    if plan is None:
        raise NotFound(not_found_message(plan_id))
    rels = await relationships_to_plan(session, principal, plan, settings)
    granted = check_plan_access(principal, capability, rels, plan_id=plan_id)
    return plan, granted.value


async def read_plan(
    *,
    session: AsyncSession,
    principal: Principal,
    plan_id: str,
    settings: Settings,
    version: int | None = None,
    resource_type: str = "CarePlan",
    client_ip: str | None = None,
    detail: str | None = None,
) -> PlanState:
    """A version of the plan (the current one by default), audited as a read."""
    plan, reason = await plan_access(
        session=session,
        principal=principal,
        plan_id=plan_id,
        capability=Capability.CARE_PLAN_READ,
        settings=settings,
    )
    number = plan.current_version if version is None else version
    row = await CarePlanRepository(session).version(plan.id, number)
    if row is None:
        raise NotFound(
            f"care plan {plan_id} has no version {number} (it is at {plan.current_version})"
        )
    record_audit(
        session,
        principal=principal,
        action="read",
        resource_type=resource_type,
        resource_id=plan.id,
        patient_id=plan.patient_id,
        client_ip=client_ip,
        detail=f"{detail or f'version {number}'}; access: {reason}",
    )
    return PlanState(plan, row, reason)
