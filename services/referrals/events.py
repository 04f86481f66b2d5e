"""The events the referrals service publishes (models live in shared/events/referrals.py)."""

from __future__ import annotations

from services.referrals.models import Referral
from shared.events.envelope import CloudEvent, make_event
from shared.events.referrals import ReferralSubmitted


def referral_submitted(referral: Referral) -> CloudEvent:
    return make_event(ReferralSubmitted(
        referral_id=referral.id, from_org=referral.from_org, to_org=referral.to_org,
        to_service_id=referral.to_service_id, service_category=referral.service_category,
        reason_codes=list(referral.reason_codes), priority=referral.priority,  # type: ignore[arg-type]
        state=referral.state, referred_from=referral.referred_from),
        subject=referral.patient_id)
