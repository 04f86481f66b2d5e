"""Starting a person's plan, changing it and changing their consent: each a new version."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession

from services.care_plans import events
from services.care_plans.domain.access import check_may_create, check_role, relationships
from services.care_plans.domain.contacts import contact_changes
from services.care_plans.handlers.access import (
    PlanState,
    person_facts,
    plan_access,
    relationships_to_plan,
    utc_now,
)
from services.care_plans.models import CarePlan, CarePlanVersion
from services.care_plans.repository import CarePlanRepository
from services.care_plans.schemas import PlanContent, PlanCreate, stored_content
from shared.access import Capability, Principal, Relationship, permits
from shared.audit import record_audit
from shared.errors import Conflict, PreconditionFailed, ValidationFailed
from shared.identifiers import normalise_nhs_number
from shared.outbox import add_event
from shared.pseudonym import pseudonymise
from shared.settings import Settings
from shared.topics import CARE_PLANS


def _dump(content: PlanContent) -> dict[str, Any]:
    return content.model_dump(mode="json")


def _carer_access(content: dict[str, Any]) -> dict[str, list[str]]:
    return {c["id"]: sorted(c.get("may_see", [])) for c in content.get("carers", [])}


async def create_plan(
    *,
    session: AsyncSession,
    principal: Principal,
    cmd: PlanCreate,
    settings: Settings,
    client_ip: str | None = None,
) -> PlanState:
    """Start the person's one plan. Only a caller with a care relationship the service can
    show may, and a refusal is the same whether or not the person has a plan."""
    check_role(principal, Capability.CARE_PLAN_CREATE)
    nhs_number = normalise_nhs_number(cmd.nhs_number)
    patient_id = pseudonymise(nhs_number, settings)
    repo = CarePlanRepository(session)
    rels = relationships(principal, await person_facts(repo, principal, patient_id, settings))
    granted = check_may_create(principal, rels)
    existing = await repo.by_patient(patient_id)
    if existing is not None:
        # one shared plan per person: say where it is only to those who may read it
        plan_rels = await relationships_to_plan(session, principal, existing, settings)
        where = (
            f" ({existing.id})"
            if permits(principal, Capability.CARE_PLAN_READ, plan_rels)
            else f"; it is held by {existing.holder_org}: ask them, or the person, for consent"
        )
        raise Conflict(f"this person already has a care plan{where}; update it instead")
    now = utc_now()
    orgs = sorted(set(cmd.consented_organisations))
    # the plan belongs to the ICS this deployment serves, not to whatever the caller's token says
    plan = CarePlan(
        id=str(uuid.uuid4()),
        patient_id=patient_id,
        nhs_number=nhs_number,
        ics=settings.ics,
        holder_org=principal.org,
        consented_orgs=orgs,
        current_version=1,
        created_by=principal.identity,
        created_at=now,
        updated_at=now,
    )
    version = CarePlanVersion(
        plan_id=plan.id,
        version=1,
        content=_dump(cmd.content),
        consented_orgs=orgs,
        author=principal.identity,
        author_org=principal.org,
        reason=cmd.reason,
        created_at=now,
    )
    repo.add(plan)
    try:
        await session.flush()  # a concurrent create for the same person fails here
    except IntegrityError:
        raise Conflict("this person already has a care plan; update it instead") from None
    repo.add(version)
    topic = settings.topic(CARE_PLANS)
    add_event(session, topic=topic, event=events.created_event(plan))
    if orgs or events.carers_with_access(cmd.content):
        add_event(session, topic=topic, event=events.consent_event(plan, cmd.content))
    record_audit(
        session,
        principal=principal,
        action="create",
        resource_type="CarePlan",
        resource_id=plan.id,
        patient_id=patient_id,
        client_ip=client_ip,
        detail=f"version 1; relationship: {granted.value}",
    )
    return PlanState(plan, version, Relationship.PLAN_HOLDER.value)


async def _writable(
    session: AsyncSession,
    principal: Principal,
    plan_id: str,
    expected_version: int,
    settings: Settings,
) -> tuple[CarePlan, CarePlanVersion, str]:
    plan, reason = await plan_access(
        session=session,
        principal=principal,
        plan_id=plan_id,
        capability=Capability.CARE_PLAN_WRITE,
        settings=settings,
        for_update=True,
    )  # serialises concurrent edits
    if plan.current_version != expected_version:
        raise PreconditionFailed(
            f"the care plan has changed since you read it (you have version "
            f"{expected_version}, it is at {plan.current_version}); read it again",
            current_version=plan.current_version,
        )
    current = await CarePlanRepository(session).version(plan.id, plan.current_version)
    assert current is not None
    return plan, current, reason


def _new_version(
    plan: CarePlan, *, content: dict[str, Any], orgs: list[str], principal: Principal, reason: str
) -> CarePlanVersion:
    now = utc_now()
    plan.current_version += 1
    plan.consented_orgs = orgs
    plan.updated_at = now
    return CarePlanVersion(
        plan_id=plan.id,
        version=plan.current_version,
        content=content,
        consented_orgs=orgs,
        author=principal.identity,
        author_org=principal.org,
        reason=reason,
        created_at=now,
    )


async def update_plan(
    *,
    session: AsyncSession,
    principal: Principal,
    plan_id: str,
    content: PlanContent,
    reason: str,
    expected_version: int,
    settings: Settings,
    client_ip: str | None = None,
) -> PlanState:
    plan, current, access = await _writable(session, principal, plan_id, expected_version, settings)
    new_content = _dump(content)
    changed = contact_changes(current.content, new_content)
    if changed:
        reason = f"{reason} (contact details changed: {', '.join(changed)})"[:200]
    version = _new_version(
        plan,
        content=new_content,
        orgs=list(plan.consented_orgs),
        principal=principal,
        reason=reason,
    )
    session.add(plan)
    session.add(version)
    topic = settings.topic(CARE_PLANS)
    add_event(session, topic=topic, event=events.updated_event(plan))
    if _carer_access(current.content) != _carer_access(new_content):
        add_event(session, topic=topic, event=events.consent_event(plan, content))
    record_audit(
        session,
        principal=principal,
        action="update",
        resource_type="CarePlan",
        resource_id=plan.id,
        patient_id=plan.patient_id,
        client_ip=client_ip,
        detail=f"version {version.version}",
    )
    if changed:
        # how messages reach the person: a change is its own audit entry, and the version's
        # reason says so to the care team (GET /care-plans/{id}/versions, the diff)
        record_audit(
            session,
            principal=principal,
            action="contact-changed",
            resource_type="CarePlanContact",
            resource_id=plan.id,
            patient_id=plan.patient_id,
            client_ip=client_ip,
            detail=f"version {version.version}: {', '.join(changed)} changed by {principal.org}",
        )
    return PlanState(plan, version, access)


async def change_consent(
    *,
    session: AsyncSession,
    principal: Principal,
    plan_id: str,
    organisations: list[str],
    reason: str,
    expected_version: int,
    settings: Settings,
    client_ip: str | None = None,
) -> PlanState:
    """The person's choice of organisations that may read the plan: a new version and a
    consent.changed event."""
    plan, current, access = await _writable(session, principal, plan_id, expected_version, settings)
    orgs = sorted(set(organisations))
    if orgs == sorted(plan.consented_orgs):
        raise ValidationFailed("the consent is already exactly this; nothing to change")
    version = _new_version(
        plan, content=current.content, orgs=orgs, principal=principal, reason=reason
    )
    session.add(plan)
    session.add(version)
    topic = settings.topic(CARE_PLANS)
    add_event(session, topic=topic, event=events.updated_event(plan))
    add_event(
        session, topic=topic, event=events.consent_event(plan, stored_content(current.content))
    )
    record_audit(
        session,
        principal=principal,
        action="consent",
        resource_type="CarePlan",
        resource_id=plan.id,
        patient_id=plan.patient_id,
        client_ip=client_ip,
        detail=f"version {version.version}; organisations: {', '.join(orgs) or '-'}",
    )
    # the caller may have removed their own organisation: what they may now do is re-checked
    # on their next request
    return PlanState(plan, version, access)
