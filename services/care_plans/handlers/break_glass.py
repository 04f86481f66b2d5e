"""An emergency read of a person's plan outside the usual relationships."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlmodel.ext.asyncio.session import AsyncSession

from services.care_plans import events
from services.care_plans.domain.access import BREAK_GLASS_REASONS, check_role
from services.care_plans.handlers.access import relationships_to_plan, utc_now
from services.care_plans.models import BreakGlassGrant
from services.care_plans.repository import CarePlanRepository
from shared.access import Capability, Principal, permits
from shared.audit import record_audit
from shared.errors import NotFound, ValidationFailed
from shared.identifiers import normalise_nhs_number
from shared.outbox import add_event
from shared.pseudonym import pseudonymise
from shared.settings import Settings
from shared.topics import CARE_PLANS


async def break_glass(
    *,
    session: AsyncSession,
    principal: Principal,
    nhs_number: str,
    reason_code: str,
    reason: str,
    settings: Settings,
    client_ip: str | None = None,
) -> BreakGlassGrant:
    """An emergency read of a person's plan: allowed to a clinician of the person's ICS
    with a stated reason, for `break_glass_minutes`; audited, and an event tells the ICS's
    information governance lead."""
    check_role(principal, Capability.BREAK_GLASS)
    if reason_code not in BREAK_GLASS_REASONS:
        raise ValidationFailed(
            f"reason_code must be one of: {', '.join(sorted(BREAK_GLASS_REASONS))}"
        )
    patient_id = pseudonymise(normalise_nhs_number(nhs_number), settings)
    repo = CarePlanRepository(session)
    plan = await repo.by_patient(patient_id)
    if plan is None:
        raise NotFound("no care plan for this person")
    rels = await relationships_to_plan(session, principal, plan, settings)
    if not permits(principal, Capability.BREAK_GLASS, rels):
        raise NotFound("no care plan for this person")
    now = utc_now()
    grant = BreakGlassGrant(
        id=str(uuid.uuid4()),
        plan_id=plan.id,
        patient_id=patient_id,
        user_identity=principal.identity,
        org=principal.org,
        reason_code=reason_code,
        reason=reason,
        granted_at=now,
        expires_at=now + timedelta(minutes=settings.break_glass_minutes),
    )
    repo.add(grant)
    add_event(
        session, topic=settings.topic(CARE_PLANS), event=events.break_glass_event(plan, grant)
    )
    record_audit(
        session,
        principal=principal,
        action="break-glass",
        resource_type="CarePlan",
        resource_id=plan.id,
        patient_id=patient_id,
        client_ip=client_ip,
        detail=f"{reason_code}: {reason}; until {grant.expires_at.isoformat()}",
    )
    return grant
