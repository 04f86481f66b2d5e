"""Use cases of the referrals service: one per command. The caller's unit of work owns the
transaction; a change, its history row, its audit entry and its event commit together."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlmodel.ext.asyncio.session import AsyncSession

from services.referrals import domain
from services.referrals.domain import Action, ReferralState
from services.referrals.events import flagged_event, submitted_event, transition_event
from services.referrals.models import DirectoryService, Referral, ReferralTransition
from services.referrals.repository import ReferralRepository
from services.referrals.schemas import ReferralCreate, TransitionIn
from shared.audit import audit_entry
from shared.auth import Principal
from shared.errors import NotFound, PreconditionFailed, ValidationFailed
from shared.events.directory import DirectoryServiceEventData, ServiceWithdrawn
from shared.events.envelope import CloudEvent
from shared.identifiers import normalise_nhs_number
from shared.outbox import add_event, outbox_row
from shared.pseudonym import pseudonymise
from shared.settings import Settings
from shared.topics import REFERRALS


def _now() -> datetime:
    return datetime.now(UTC)


async def submit_referral(
    *,
    session: AsyncSession,
    principal: Principal,
    cmd: ReferralCreate,
    settings: Settings,
    client_ip: str | None = None,
) -> Referral:
    domain.check_may_create(principal)
    domain.check_new_referral(
        consent_to_referral=cmd.consent_to_referral,
        from_org=principal.org,
        to_org=cmd.to_org or "",
        source=cmd.source,
        referred_from=cmd.referred_from,
    )
    nhs_number = normalise_nhs_number(cmd.patient.nhs_number)
    repo = ReferralRepository(session)
    service = await repo.directory_service(cmd.to_service_id)
    domain.check_service(status=service.status if service else None, service_id=cmd.to_service_id)
    assert service is not None
    if cmd.to_org is not None and cmd.to_org != service.org_code:
        raise ValidationFailed(
            f"to_org {cmd.to_org} does not run {cmd.to_service_id} "
            f"(the directory says {service.org_code})"
        )
    expected_category = getattr(cmd, "service_category", None)
    if expected_category is not None and expected_category != service.category:
        raise ValidationFailed(
            f"the service {service.service_id} is {service.category}, not the category "
            f"{expected_category} the referral names"
        )
    if cmd.referred_from is not None:
        parent = await repo.get(cmd.referred_from)
        if parent is None or not domain.may_read(
            principal,
            from_org=parent.from_org,
            to_org=parent.to_org,
            ics=parent.ics,
            state=parent.state,
        ):
            raise ValidationFailed(
                f"referred_from names no referral you may see ({cmd.referred_from})"
            )
    now = _now()
    state = ReferralState.DRAFT if cmd.as_draft else ReferralState.SUBMITTED
    referral = Referral(
        id=str(uuid.uuid4()),
        patient_id=pseudonymise(nhs_number, settings),
        nhs_number=nhs_number,
        given_name=cmd.patient.given_name,
        family_name=cmd.patient.family_name,
        birth_date=cmd.patient.birth_date.isoformat() if cmd.patient.birth_date else None,
        registered_practice=cmd.patient.registered_practice,
        ics=principal.ics,
        from_org=principal.org,
        from_practitioner=cmd.from_practitioner,
        source=cmd.source.value,
        to_org=service.org_code,
        to_service_id=service.service_id,
        service_category=service.category,
        reason_codes=cmd.reason_codes,
        clinical_summary=cmd.clinical_summary,
        priority=cmd.priority.value,
        consent_to_referral=cmd.consent_to_referral,
        consent_basis=getattr(cmd, "consent_basis", "explicit"),
        consent_to_carer_sharing=cmd.consent_to_carer_sharing,
        communication_needs=cmd.communication_needs,
        referred_from=cmd.referred_from,
        state=state.value,
        flags=[],
        version=1,
        created_by=principal.identity,
        submitted_at=None if cmd.as_draft else now,
        created_at=now,
        updated_at=now,
    )
    submitted = state is ReferralState.SUBMITTED
    event = submitted_event(referral, previous_state=None) if submitted else None
    transition = ReferralTransition(
        referral_id=referral.id,
        from_state=None,
        to_state=referral.state,
        actor=principal.identity,
        actor_org=principal.org,
        event_id=event.id if event else "",
        at=now,
    )
    audit = audit_entry(
        principal=principal,
        action="create",
        resource_type="Referral",
        resource_id=referral.id,
        patient_id=referral.patient_id,
        client_ip=client_ip,
    )
    # referral, history, audit and event in one statement (issue #20: the ORM's flush sent
    # one INSERT per table, a round trip each, holding the connection)
    events = [outbox_row(topic=settings.topic(REFERRALS), event=event)] if event else []
    await repo.insert_new(referral, transition, audit, *events)
    return referral


@dataclass(frozen=True)
class TransitionResult:
    referral: Referral
    event: CloudEvent | None


async def transition_referral(
    *,
    session: AsyncSession,
    principal: Principal,
    referral_id: str,
    action: Action,
    cmd: TransitionIn,
    expected_version: int | None,
    settings: Settings,
    client_ip: str | None = None,
    via: str | None = None,
) -> TransitionResult:
    """Move a referral on. `expected_version` None: no If-Match was sent (FHIR Task
    write-back, where a conditional update is optional): the state machine alone guards.
    `via`: the face the change came through, for the audit entry (e.g. "fhir-task")."""
    repo = ReferralRepository(session)
    referral = await repo.get(referral_id, for_update=True)  # serialises concurrent edits
    if referral is None or not domain.may_read(
        principal,
        from_org=referral.from_org,
        to_org=referral.to_org,
        ics=referral.ics,
        state=referral.state,
    ):
        raise NotFound(f"no referral {referral_id} that you may see")
    domain.check_actor(principal, action=action, from_org=referral.from_org, to_org=referral.to_org)
    if expected_version is not None and referral.version != expected_version:
        raise PreconditionFailed(
            f"the referral has changed since you read it (you have version "
            f"{expected_version}, it is at {referral.version}); read it again",
            current_version=referral.version,
        )
    if action is Action.SUBMIT:
        # only a draft is submitted, and a draft always names a directory service
        service_id = referral.to_service_id or ""
        service = await repo.directory_service(service_id)
        domain.check_service(status=service.status if service else None, service_id=service_id)
    plan = domain.plan_transition(
        action=action,
        state=ReferralState(referral.state),
        held_from=ReferralState(referral.held_from) if referral.held_from else None,
        reason_code=cmd.reason_code,
        has_appointment=cmd.appointment_at is not None,
    )
    now = _now()
    referral.state = plan.to_state.value
    referral.held_from = plan.from_state.value if action is Action.HOLD else None
    if action is Action.BOOK:
        referral.appointment_at = cmd.appointment_at
    if action is Action.SUBMIT:
        referral.submitted_at = now
    referral.version += 1
    referral.updated_at = now
    session.add(referral)
    event = (
        submitted_event(referral, previous_state=plan.from_state.value)
        if action is Action.SUBMIT
        else transition_event(referral, plan)
    )
    transition = ReferralTransition(
        referral_id=referral.id,
        from_state=plan.from_state.value,
        to_state=plan.to_state.value,
        actor=principal.identity,
        actor_org=principal.org,
        reason_code=plan.reason_code,
        note=cmd.note,
        appointment_at=cmd.appointment_at if action is Action.BOOK else None,
        event_id=event.id,
        at=now,
    )
    audit = audit_entry(
        principal=principal,
        action=f"transition:{action.value}",
        resource_type="Referral",
        resource_id=referral.id,
        patient_id=referral.patient_id,
        client_ip=client_ip,
        detail=f"{plan.from_state.value} -> {plan.to_state.value}"
        + (f" (via {via})" if via else ""),
    )
    # history, audit and event in one statement; the referral's UPDATE is flushed at commit,
    # in the same transaction (issue #20: one round trip where the flush sent three)
    await repo.insert(transition, audit, outbox_row(topic=settings.topic(REFERRALS), event=event))
    return TransitionResult(referral, event)


async def apply_directory_event(
    *, session: AsyncSession, event: CloudEvent, data: DirectoryServiceEventData, settings: Settings
) -> int:
    """Keep the directory replica; flag open referrals to a withdrawn service for their
    referrers. Returns how many referrals were flagged."""
    repo = ReferralRepository(session)
    stored = await repo.upsert_directory_service(
        DirectoryService(
            service_id=data.service_id,
            org_code=data.org_code,
            category=data.category,
            status=data.status,
            self_referral=data.self_referral,
            as_of=event.time,
        )
    )
    if not stored or not isinstance(data, ServiceWithdrawn):
        return 0
    flagged = 0
    for referral in await repo.open_referrals_to_service(data.service_id):
        if "service_withdrawn" in referral.flags:
            continue
        referral.flags = [*referral.flags, "service_withdrawn"]
        referral.updated_at = _now()
        referral.version += 1
        session.add(referral)
        add_event(
            session,
            topic=settings.topic(REFERRALS),
            event=flagged_event(referral, "service_withdrawn"),
        )
        flagged += 1
    return flagged
