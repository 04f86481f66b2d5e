"""Use cases of the care plans service: one per command. The caller's unit of work owns the
transaction; a change, its new version, its audit entry and its events commit together."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession

from services.care_plans import domain, events, fhir
from services.care_plans.domain import RiskFlag, Score
from services.care_plans.models import (
    Assessment,
    BreakGlassGrant,
    CarePlan,
    CarePlanVersion,
    TimelineEntry,
)
from services.care_plans.repository import CarePlanRepository
from services.care_plans.schemas import (
    AssessmentIn,
    BreakGlassIn,
    PlanContent,
    PlanCreate,
    stored_content,
)
from shared.access import Capability, Principal, Relationship, permits
from shared.audit import record_audit
from shared.errors import Conflict, NotFound, PreconditionFailed, ValidationFailed
from shared.events.envelope import CloudEvent
from shared.events.referrals import ReferralEventData
from shared.identifiers import normalise_nhs_number
from shared.outbox import add_event
from shared.pseudonym import pseudonymise
from shared.settings import Settings
from shared.topics import CARE_PLANS


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class PlanState:
    plan: CarePlan
    version: CarePlanVersion
    access: str  # why the caller may read it


def _dump(content: PlanContent) -> dict[str, Any]:
    return content.model_dump(mode="json")


def _carer_access(content: dict[str, Any]) -> dict[str, list[str]]:
    return {c["id"]: sorted(c.get("may_see", [])) for c in content.get("carers", [])}


async def _person(
    repo: CarePlanRepository,
    principal: Principal,
    patient_id: str,
    settings: Settings,
    *,
    has_plan: bool = False,
) -> domain.PersonFacts:
    return domain.PersonFacts(
        referral_with_org=await repo.has_referral_with(patient_id, principal.org),
        registered_practice=await repo.registered_practice(patient_id),
        known=has_plan or await repo.is_known(patient_id),
        ics=settings.ics,
    )


async def relationships_to_plan(
    session: AsyncSession, principal: Principal, plan: CarePlan, settings: Settings
) -> set[Relationship]:
    repo = CarePlanRepository(session)
    person = await _person(repo, principal, plan.patient_id, settings, has_plan=True)
    grant = await repo.active_grant(plan.id, principal.identity, _now())
    return domain.relationships(
        principal,
        person,
        domain.PlanFacts(
            holder_org=plan.holder_org,
            consented_orgs=plan.consented_orgs,
            ics=plan.ics,
            break_glass=grant is not None,
        ),
    )


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
    domain.check_role(principal, Capability.CARE_PLAN_CREATE)
    nhs_number = normalise_nhs_number(cmd.nhs_number)
    patient_id = pseudonymise(nhs_number, settings)
    repo = CarePlanRepository(session)
    rels = domain.relationships(principal, await _person(repo, principal, patient_id, settings))
    granted = domain.check_may_create(principal, rels)
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
    now = _now()
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
    domain.check_role(principal, capability)
    plan = await CarePlanRepository(session).get(plan_id, for_update=for_update)
    if plan is None:
        raise NotFound(domain.not_found_message(plan_id))
    rels = await relationships_to_plan(session, principal, plan, settings)
    granted = domain.check_plan_access(principal, capability, rels, plan_id=plan_id)
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
    domain.check_role(principal, Capability.BREAK_GLASS)
    if reason_code not in domain.BREAK_GLASS_REASONS:
        raise ValidationFailed(
            f"reason_code must be one of: {', '.join(sorted(domain.BREAK_GLASS_REASONS))}"
        )
    patient_id = pseudonymise(normalise_nhs_number(nhs_number), settings)
    repo = CarePlanRepository(session)
    plan = await repo.by_patient(patient_id)
    if plan is None:
        raise NotFound("no care plan for this person")
    rels = await relationships_to_plan(session, principal, plan, settings)
    if not permits(principal, Capability.BREAK_GLASS, rels):
        raise NotFound("no care plan for this person")
    now = _now()
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


def _new_version(
    plan: CarePlan, *, content: dict[str, Any], orgs: list[str], principal: Principal, reason: str
) -> CarePlanVersion:
    now = _now()
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
    changed = domain.contact_changes(current.content, new_content)
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


@dataclass(frozen=True)
class RecordedAssessment:
    assessment: Assessment
    score: Score
    flags: list[RiskFlag]
    events: list[CloudEvent]


async def record_assessment(
    *,
    session: AsyncSession,
    principal: Principal,
    plan_id: str,
    cmd: AssessmentIn,
    settings: Settings,
    client_ip: str | None = None,
) -> RecordedAssessment:
    """Score the answers, store them as a QuestionnaireResponse, and stage assessment.recorded
    and any risk.flagged event: all in the caller's one transaction."""
    instrument = domain.instrument_from(cmd.instrument)
    answers = domain.validate_answers(instrument, cmd.answers)
    result = domain.score(instrument, cmd.answers)
    flags = domain.risk_flags(result)
    plan, _ = await plan_access(
        session=session,
        principal=principal,
        plan_id=plan_id,
        capability=Capability.CARE_PLAN_WRITE,
        settings=settings,
    )
    now = _now()
    authored = cmd.authored or now
    if authored > now:
        raise ValidationFailed("authored must not be in the future")
    assessment_id = str(uuid.uuid4())
    assessment = Assessment(
        id=assessment_id,
        plan_id=plan.id,
        patient_id=plan.patient_id,
        instrument=instrument.value,
        total=result.total,
        band=result.band,
        subscale=result.subscale,
        safety_flag=result.safety_flag,
        risk_flags=[{"reason": f.reason, "severity": f.severity} for f in flags],
        questionnaire_response=fhir.questionnaire_response(
            assessment_id=assessment_id,
            instrument=instrument,
            answers=answers,
            result=result,
            patient_id=plan.patient_id,
            authored=authored,
            author_org=principal.org,
        ),
        authored=authored,
        recorded_by=principal.identity,
        recorded_org=principal.org,
        recorded_at=now,
    )
    repo = CarePlanRepository(session)
    repo.add(assessment)
    await session.flush()
    topic = settings.topic(CARE_PLANS)
    # who must hear of a safety flag at once: the person's GP practice (if a referral event
    # has named it) and the plan's holder
    staged = [
        events.assessment_event(
            plan,
            assessment,
            result,
            registered_practice=await repo.registered_practice(plan.patient_id),
        )
    ]
    staged += [events.risk_event(plan, assessment, result, f) for f in flags]
    for event in staged:
        add_event(session, topic=topic, event=event)
    record_audit(
        session,
        principal=principal,
        action="create",
        resource_type="Assessment",
        resource_id=assessment.id,
        patient_id=plan.patient_id,
        client_ip=client_ip,
        detail=f"{instrument.value} on plan {plan.id}",
    )
    return RecordedAssessment(assessment, result, flags, staged)


async def apply_referral_event(
    *, session: AsyncSession, event: CloudEvent, data: ReferralEventData
) -> bool:
    """Add a step to the person's referral journey (the plan's timeline) and keep their
    registered GP practice; True if new."""
    repo = CarePlanRepository(session)
    if data.registered_practice:
        await repo.set_registered_practice(
            patient_id=event.subject,
            org=data.registered_practice,
            as_of=event.time,
            event_id=event.id,
        )
    return await repo.add_timeline_entry(
        TimelineEntry(
            event_id=event.id,
            patient_id=event.subject,
            referral_id=data.referral_id,
            event_type=event.type.removeprefix("uk.waymark.referral."),
            state=data.state,
            previous_state=data.previous_state,
            from_org=data.from_org,
            to_org=data.to_org,
            to_service_id=data.to_service_id,
            service_category=data.service_category,
            transition_reason=data.transition_reason,
            occurred_at=event.time,
        )
    )
