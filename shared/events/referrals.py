"""Events published by the referrals service on `waymark.referrals.v1`: one per transition.

Facts consumers need (ids, codes, states, times) and nothing personal: no names, NHS numbers
or clinical free text. The subject is the patient's pseudonymous id.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, Field

from shared.events.envelope import EventData
from shared.events.registry import REGISTRY
from shared.identifiers import ORG_CODE_PATTERN as ORG_CODE
from shared.vocabulary import ReferralState

SNOMED_CODE = r"^[1-9][0-9]{5,17}$"  # SCTID: 6-18 digits, no leading zero
REASON_CODE = r"^[a-z0-9-]{1,60}$"


class ReferralEventData(EventData):
    SOURCE = "waymark/referrals"

    referral_id: str = Field(max_length=64)
    from_org: str = Field(pattern=ORG_CODE)
    to_org: str = Field(pattern=ORG_CODE)
    to_service_id: str = Field(max_length=64)
    service_category: str = Field(max_length=60)
    reason_codes: list[str] = Field(default_factory=list, max_length=20)
    priority: Literal["routine", "urgent"]
    state: ReferralState
    referred_from: str | None = Field(default=None, max_length=64)
    source: str | None = Field(default=None, max_length=40)
    previous_state: ReferralState | None = None
    # the coded reason for this transition (rejection, return, outcome, cancellation, hold)
    transition_reason: str | None = Field(default=None, pattern=REASON_CODE)
    appointment_at: AwareDatetime | None = None
    # the person's registered GP practice (an ODS code, not personal detail): care plans
    # take it as a care relationship. Optional, so version 1 consumers read it or ignore it.
    registered_practice: str | None = Field(default=None, pattern=ORG_CODE)


def _event(name: str) -> type[ReferralEventData]:
    cls = type(
        f"Referral{name.title().replace('-', '')}",
        (ReferralEventData,),
        {"EVENT_TYPE": f"uk.waymark.referral.{name}", "VERSION": 1, "__module__": __name__},
    )
    REGISTRY.register(cls)
    return cls


ReferralSubmitted = _event("submitted")
ReferralAccepted = _event("accepted")
ReferralRejected = _event("rejected")
ReferralReturned = _event("returned")
ReferralBooked = _event("booked")
ReferralAttended = _event("attended")
ReferralDidNotAttend = _event("did-not-attend")
ReferralDischarged = _event("discharged")
ReferralCancelled = _event("cancelled")
ReferralOnHold = _event("on-hold")
ReferralResumed = _event("resumed")


@REGISTRY.register
class ReferralFlagged(ReferralEventData):
    """Something the referrer must act on, the state unchanged (e.g. the service withdrawn)."""

    EVENT_TYPE = "uk.waymark.referral.flagged"
    VERSION = 1
    flag: Literal["service_withdrawn"]


#: the event each state change publishes
EVENT_FOR_STATE: dict[str, type[ReferralEventData]] = {
    "submitted": ReferralSubmitted,
    "accepted": ReferralAccepted,
    "rejected": ReferralRejected,
    "returned": ReferralReturned,
    "booked": ReferralBooked,
    "attended": ReferralAttended,
    "did_not_attend": ReferralDidNotAttend,
    "discharged": ReferralDischarged,
    "cancelled": ReferralCancelled,
    "on_hold": ReferralOnHold,
}

#: the CloudEvents `source` of the demo's synthetic population (`waymark seed`): referral
#: events that no referrals service holds. Journeys and the coordinators' dashboard treat them
#: like any others; notifications owes no message or partner webhook for them.
SYNTHETIC_SOURCE = "waymark/synthetic-demo"

#: the CloudEvents `source` of the events of a referral imported from a source system's history
#: (POST /referrals/history): the past, replayed with each step's own time. Journeys treat them
#: like any others; a consumer that must not act on the past (a message to the person, a partner
#: webhook) can tell them apart.
HISTORY_SOURCE = "waymark/referrals/history"
