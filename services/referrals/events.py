"""The events the referrals service publishes (models live in shared/events/referrals.py).

A referral imported from a source system's history publishes the same events as a live one,
with two differences a consumer can see: the CloudEvent `time` is when the step happened
(so journeys see the past), and the CloudEvent `source` is HISTORY_SOURCE, so a consumer that
must not act on the past (a message to the person, a partner webhook) can tell. A referral to
a service the directory does not list carries `to_service_id` "" (version 1 of the schema
requires a string; see docs/integration/referrals.md).
"""

from __future__ import annotations

from datetime import datetime

from services.referrals.domain import Action, Transition
from services.referrals.models import Referral
from shared.events.envelope import CloudEvent, make_event
from shared.events.referrals import (
    EVENT_FOR_STATE,
    HISTORY_SOURCE,
    ReferralEventData,
    ReferralFlagged,
    ReferralResumed,
)

__all__ = ["HISTORY_SOURCE", "flagged_event", "submitted_event", "transition_event"]


def _facts(referral: Referral) -> dict[str, object]:
    return dict(
        referral_id=referral.id,
        from_org=referral.from_org,
        to_org=referral.to_org,
        to_service_id=referral.to_service_id or "",
        service_category=referral.service_category,
        reason_codes=list(referral.reason_codes),
        priority=referral.priority,
        state=referral.state,
        referred_from=referral.referred_from,
        source=referral.source,
        appointment_at=referral.appointment_at,
        registered_practice=referral.registered_practice,
    )


def _made(data: ReferralEventData, referral: Referral, at: datetime | None) -> CloudEvent:
    event = make_event(data, subject=referral.patient_id, time=at)
    return event if at is None else event.model_copy(update={"source": HISTORY_SOURCE})


def transition_event(
    referral: Referral, transition: Transition, *, at: datetime | None = None
) -> CloudEvent:
    """The event for a referral that has just made `transition` (its state already new);
    `at`: a step of an imported history, which happened then."""
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
    return _made(data, referral, at)


def submitted_event(
    referral: Referral, previous_state: str | None, *, at: datetime | None = None
) -> CloudEvent:
    data = EVENT_FOR_STATE["submitted"](
        **_facts(referral),  # type: ignore[arg-type]
        previous_state=previous_state,
    )
    return _made(data, referral, at)


def flagged_event(referral: Referral, flag: str) -> CloudEvent:
    data = ReferralFlagged(**_facts(referral), flag=flag)  # type: ignore[arg-type]
    return make_event(data, subject=referral.patient_id)
