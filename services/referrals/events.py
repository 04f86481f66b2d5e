"""The events the referrals service publishes (models live in shared/events/referrals.py)."""

from __future__ import annotations

from services.referrals.domain import Action, Transition
from services.referrals.models import Referral
from shared.events.envelope import CloudEvent, make_event
from shared.events.referrals import (
    EVENT_FOR_STATE,
    ReferralEventData,
    ReferralFlagged,
    ReferralResumed,
)


def _facts(referral: Referral) -> dict[str, object]:
    return dict(
        referral_id=referral.id,
        from_org=referral.from_org,
        to_org=referral.to_org,
        to_service_id=referral.to_service_id,
        service_category=referral.service_category,
        reason_codes=list(referral.reason_codes),
        priority=referral.priority,
        state=referral.state,
        referred_from=referral.referred_from,
        source=referral.source,
        appointment_at=referral.appointment_at,
        registered_practice=referral.registered_practice,
    )


def transition_event(referral: Referral, transition: Transition) -> CloudEvent:
    """The event for a referral that has just made `transition` (its state already new)."""
    model: type[ReferralEventData] = (
        ReferralResumed
        if transition.action is Action.RESUME
        else EVENT_FOR_STATE[transition.to_state.value]
    )
    data = model(
        **_facts(referral),
        previous_state=transition.from_state.value,  # type: ignore[arg-type]
        transition_reason=transition.reason_code,
    )
    return make_event(data, subject=referral.patient_id)


def submitted_event(referral: Referral, previous_state: str | None) -> CloudEvent:
    data = EVENT_FOR_STATE["submitted"](
        **_facts(referral),  # type: ignore[arg-type]
        previous_state=previous_state,
    )
    return make_event(data, subject=referral.patient_id)


def flagged_event(referral: Referral, flag: str) -> CloudEvent:
    data = ReferralFlagged(**_facts(referral), flag=flag)  # type: ignore[arg-type]
    return make_event(data, subject=referral.patient_id)
