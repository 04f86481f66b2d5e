"""Use case: record a referral a source system (e-RS, a PAS) already holds, with its real past
dates; the integration service's bulk importer calls it (POST /referrals/history).

One transaction: the referral, every new step's history row and event (CloudEvent `time` = the
step's time, `source` = HISTORY_SOURCE) and the `import` audit entry commit together.
Idempotent by (source_system, source_ref): the same history again changes nothing, a longer
one applies only its new steps, a different one is refused naming the step (history.py).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlmodel.ext.asyncio.session import AsyncSession

from services.referrals import history
from services.referrals.config import ReferralsSettings
from services.referrals.domain import Action, ReferralState, Source
from services.referrals.events import submitted_event, transition_event
from services.referrals.models import Referral, ReferralTransition
from services.referrals.repository import ReferralRepository
from services.referrals.schemas import HistoryImportIn
from shared.access import Capability, Relationship, may_use, permits
from shared.audit import record_audit
from shared.auth import Principal
from shared.errors import Conflict, Forbidden, NotFound, ValidationFailed
from shared.identifiers import normalise_nhs_number
from shared.outbox import add_event
from shared.pseudonym import pseudonymise
from shared.settings import Settings
from shared.topics import REFERRALS


def check_importer(principal: Principal, config: ReferralsSettings) -> None:
    """Only the integration service's own credential (the role table: `service` through the
    `integration` relationship, shown by its identity being the configured importer)."""
    rels = {Relationship.INTEGRATION} if principal.identity in config.history_importers else set()
    if not permits(principal, Capability.REFERRAL_HISTORY_IMPORT, rels):
        who = "the integration service's own credential"
        if may_use(principal, Capability.REFERRAL_HISTORY_IMPORT):
            raise Forbidden(f"this Waymark service may not import referral history; only {who}")
        raise Forbidden(f"only {who} may import referral history")


def _steps(cmd: HistoryImportIn) -> list[history.Step]:
    return [
        history.Step(state=s.state, at=s.at, reason=s.reason, appointment_at=s.appointment_at)
        for s in cmd.history
    ]


def _stored(rows: list[ReferralTransition]) -> list[history.Step]:
    return [
        history.Step(
            state=ReferralState(t.to_state),
            at=t.at,
            reason=t.reason_code,
            appointment_at=t.appointment_at,
        )
        for t in rows
        if t.imported
    ]


@dataclass(frozen=True)
class ImportResult:
    referral: Referral
    created: bool
    events: int
    stored_steps: int


async def _check_service(repo: ReferralRepository, cmd: HistoryImportIn) -> None:
    """A named directory service must be one Waymark knows, run by to_org, of the category
    sent; its status now does not matter (the history is the past)."""
    if cmd.to_service_id is None:
        return
    service = await repo.directory_service(cmd.to_service_id)
    if service is None:
        raise ValidationFailed(
            f"to_service_id {cmd.to_service_id!r} is not a service in the directory; send null "
            "when the source's service maps to no directory service"
        )
    if service.org_code != cmd.to_org:
        raise ValidationFailed(
            f"to_org {cmd.to_org} does not run {cmd.to_service_id} "
            f"(the directory says {service.org_code})"
        )
    if service.category != cmd.service_category.value:
        raise ValidationFailed(
            f"service_category {cmd.service_category.value} is not the category of "
            f"{cmd.to_service_id} (the directory says {service.category})"
        )


def _same_referral(referral: Referral, cmd: HistoryImportIn, nhs_number: str) -> None:
    """The facts of a referral do not change between extracts of its history."""
    sent = {
        "nhs_number": nhs_number,
        "from_org": cmd.from_org,
        "to_org": cmd.to_org,
        "to_service_id": cmd.to_service_id,
        "service_category": cmd.service_category.value,
    }
    for field, value in sent.items():
        if getattr(referral, field) != value:
            raise Conflict(
                f"{field} differs from what Waymark stored from this source referral "
                f"({cmd.source_system} {cmd.source_ref}); a source referral's facts do not change",
                field=field,
            )


async def import_history(
    *,
    session: AsyncSession,
    principal: Principal,
    cmd: HistoryImportIn,
    settings: Settings,
    config: ReferralsSettings,
    client_ip: str | None = None,
) -> ImportResult:
    check_importer(principal, config)
    if len(cmd.history) > config.history_max_steps:
        raise ValidationFailed(
            f"history has {len(cmd.history)} steps; at most {config.history_max_steps}"
        )
    nhs_number = normalise_nhs_number(cmd.nhs_number)
    repo = ReferralRepository(session)
    await repo.lock_source_ref(cmd.source_system, cmd.source_ref)
    referral = await repo.by_source(cmd.source_system, cmd.source_ref, for_update=True)
    rows = await repo.history(referral.id) if referral is not None else []
    if referral is not None:
        _same_referral(referral, cmd, nhs_number)
    else:
        await _check_service(repo, cmd)
    plan = history.plan_history(
        _steps(cmd),
        stored=_stored(rows),
        current=ReferralState(referral.state) if referral else None,
        held_from=ReferralState(referral.held_from) if referral and referral.held_from else None,
        last_at=rows[-1].at if rows else None,
        now=datetime.now(UTC),
        earliest=config.history_earliest,
    )
    created = referral is None
    topic = settings.topic(REFERRALS)
    for planned in plan.new_steps:
        step = planned.step
        if planned.transition is None:
            referral = _new_referral(cmd, nhs_number, principal, settings, at=step.at)
            repo.add(referral)
            await session.flush()  # the history rows reference the referral
            event = submitted_event(referral, previous_state=None, at=step.at)
            from_state = None
        else:
            assert referral is not None
            t = planned.transition
            referral.state = t.to_state.value
            referral.held_from = t.from_state.value if t.action is Action.HOLD else None
            if t.action is Action.BOOK:
                referral.appointment_at = step.appointment_at
            referral.version += 1
            referral.updated_at = step.at
            event = transition_event(referral, t, at=step.at)
            from_state = t.from_state.value
        add_event(session, topic=topic, event=event)
        repo.add_transition(
            ReferralTransition(
                referral_id=referral.id,
                from_state=from_state,
                to_state=step.state.value,
                actor=principal.identity,
                actor_org=principal.org,
                reason_code=step.reason,
                appointment_at=step.appointment_at,
                imported=True,
                event_id=event.id,
                at=step.at,
            )
        )
    if referral is None:  # unreachable: a new referral's plan starts with its submission
        raise NotFound("nothing to import")
    if plan.new_steps:
        session.add(referral)
        record_audit(
            session,
            principal=principal,
            action="import",
            resource_type="Referral",
            resource_id=referral.id,
            patient_id=referral.patient_id,
            client_ip=client_ip,
            detail=f"source {cmd.source_system} {cmd.source_ref}: "
            f"steps {plan.stored}-{plan.stored + len(plan.new_steps) - 1} "
            f"({'created' if created else 'appended'})",
        )
    return ImportResult(
        referral=referral,
        created=created,
        events=len(plan.new_steps),
        stored_steps=plan.stored + len(plan.new_steps),
    )


def _source(cmd: HistoryImportIn) -> str:
    if cmd.source is not None:
        return cmd.source.value
    # the person's own practice referred them: a GP referral; otherwise the extract does not say
    return Source.GP.value if cmd.from_org == cmd.registered_practice else "unknown"


def _new_referral(
    cmd: HistoryImportIn,
    nhs_number: str,
    principal: Principal,
    settings: Settings,
    *,
    at: datetime,
) -> Referral:
    return Referral(
        id=str(uuid.uuid4()),
        patient_id=pseudonymise(nhs_number, settings),
        nhs_number=nhs_number,
        given_name=None,
        family_name=None,
        birth_date=None,
        registered_practice=cmd.registered_practice,
        ics=principal.ics,
        from_org=cmd.from_org,
        from_practitioner=None,
        source=_source(cmd),
        to_org=cmd.to_org,
        to_service_id=cmd.to_service_id,
        service_category=cmd.service_category.value,
        reason_codes=list(cmd.reason_codes),
        clinical_summary=None,
        priority=cmd.priority.value,
        # a referral made in the source system, for direct care: implied consent
        consent_to_referral=True,
        consent_basis="implied",
        consent_to_carer_sharing=False,
        communication_needs=[],
        referred_from=None,
        state=ReferralState.SUBMITTED.value,
        flags=[],
        version=1,
        created_by=principal.identity,
        submitted_at=at,
        created_at=at,
        updated_at=at,
        source_system=cmd.source_system,
        source_ref=cmd.source_ref,
    )


@dataclass(frozen=True)
class HistoryStatus:
    referral: Referral
    stored_steps: int
    last_step_at: datetime | None


async def history_status(
    *,
    session: AsyncSession,
    principal: Principal,
    source_system: str,
    source_ref: str,
    config: ReferralsSettings,
    client_ip: str | None = None,
) -> HistoryStatus:
    """Where the import of one source referral stands (for the importer to resume)."""
    check_importer(principal, config)
    repo = ReferralRepository(session)
    referral = await repo.by_source(source_system, source_ref)
    if referral is None:
        raise NotFound(f"no referral imported from {source_system} {source_ref}")
    steps = [t for t in await repo.history(referral.id) if t.imported]
    record_audit(
        session,
        principal=principal,
        action="read",
        resource_type="ReferralImport",
        resource_id=referral.id,
        patient_id=referral.patient_id,
        client_ip=client_ip,
        detail=f"source {source_system} {source_ref}",
    )
    return HistoryStatus(referral, len(steps), steps[-1].at if steps else None)
