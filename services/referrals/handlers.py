"""Use cases of the referrals service: one per command. The caller's unit of work owns the
transaction; the change, its history row, its audit entry and its event commit together."""

from __future__ import annotations

import uuid

from sqlmodel.ext.asyncio.session import AsyncSession

from services.referrals import domain
from services.referrals.events import referral_submitted
from services.referrals.models import Referral, ReferralTransition
from services.referrals.repository import ReferralRepository
from services.referrals.schemas import ReferralCreate
from shared.audit import record_audit
from shared.auth import Principal
from shared.errors import ValidationFailed
from shared.outbox import add_event
from shared.pseudonym import pseudonymise
from shared.settings import Settings
from shared.topics import REFERRALS


async def submit_referral(*, session: AsyncSession, principal: Principal, cmd: ReferralCreate,
                          settings: Settings, client_ip: str | None = None) -> Referral:
    domain.check_new_referral(consent_to_referral=cmd.consent_to_referral,
                              from_org=principal.org, to_org=cmd.to_org, source=cmd.source,
                              referred_from=cmd.referred_from)
    nhs_number = domain.normalise_nhs_number(cmd.patient.nhs_number)
    repo = ReferralRepository(session)
    if cmd.referred_from is not None and await repo.get(cmd.referred_from) is None:
        raise ValidationFailed(f"referred_from names no known referral ({cmd.referred_from})")
    referral = Referral(
        id=str(uuid.uuid4()), patient_id=pseudonymise(nhs_number, settings),
        nhs_number=nhs_number, given_name=cmd.patient.given_name,
        family_name=cmd.patient.family_name, birth_date=cmd.patient.birth_date.isoformat(),
        ics=principal.ics, from_org=principal.org, from_practitioner=cmd.from_practitioner,
        source=cmd.source.value, to_org=cmd.to_org, to_service_id=cmd.to_service_id,
        service_category=cmd.service_category, reason_codes=cmd.reason_codes,
        clinical_summary=cmd.clinical_summary, priority=cmd.priority.value,
        consent_to_referral=cmd.consent_to_referral,
        consent_to_carer_sharing=cmd.consent_to_carer_sharing,
        communication_needs=cmd.communication_needs, referred_from=cmd.referred_from,
        state=domain.ReferralState.SUBMITTED.value, version=1, created_by=principal.user)
    repo.add(referral)
    await session.flush()  # the transition row references the referral
    event = referral_submitted(referral)
    repo.add_transition(ReferralTransition(
        referral_id=referral.id, from_state=None, to_state=referral.state,
        actor=principal.user, actor_org=principal.org, event_id=event.id))
    add_event(session, topic=settings.topic(REFERRALS), event=event)
    record_audit(session, principal=principal, action="create", resource_type="Referral",
                 resource_id=referral.id, patient_id=referral.patient_id, client_ip=client_ip)
    return referral
