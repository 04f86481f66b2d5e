"""The referral rules: pure and synchronous, no I/O.

The lifecycle follows NHS e-RS (submitted, triaged: accepted / rejected / returned to the
referrer with advice, booked, attended or did not attend, discharged with an outcome) and the
FHIR R4 workflow Task states it maps onto (see fhir.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from shared.access import (
    Capability,
    Principal,
    check_scope,
    permits,
    referral_relationships,
    roles_with,
)
from shared.errors import Conflict, Forbidden, ValidationFailed
from shared.vocabulary import ENDED_STATES, OPEN_STATES, ReferralState

S = ReferralState  # the states are shared/vocabulary.py's, defined once for every part

#: states a referral cannot leave
TERMINAL: frozenset[ReferralState] = ENDED_STATES
OPEN: frozenset[ReferralState] = OPEN_STATES


class Source(StrEnum):
    GP = "gp"
    SELF = "self"
    WORKPLACE = "workplace"
    EMERGENCY_DEPARTMENT = "emergency_department"
    ONWARD = "onward"


class Priority(StrEnum):
    ROUTINE = "routine"
    URGENT = "urgent"


class Side(StrEnum):
    """Which organisation may take an action: the referrer's, the receiving service's, or
    either."""

    REFERRER = "referrer"
    RECEIVER = "receiver"
    EITHER = "either"


class Action(StrEnum):
    SUBMIT = "submit"
    ACCEPT = "accept"
    REJECT = "reject"
    RETURN = "return"
    BOOK = "book"
    ATTEND = "attend"
    DID_NOT_ATTEND = "did-not-attend"
    DISCHARGE = "discharge"
    CANCEL = "cancel"
    HOLD = "hold"
    RESUME = "resume"


@dataclass(frozen=True)
class Rule:
    from_states: frozenset[ReferralState]
    to_state: ReferralState | None  # None: back to the state before the hold
    side: Side
    reason_required: bool = False
    reason_codes: frozenset[str] = frozenset()
    needs_appointment: bool = False


# Reason codes a person must pick from. Rejection and return reasons follow the e-RS
# "reject / return to referrer" reasons; discharge outcomes are the referral's outcome.
REJECT_REASONS = frozenset(
    {
        "not-appropriate-for-service",
        "does-not-meet-criteria",
        "service-unavailable",
        "duplicate-referral",
        "insufficient-information",
        "patient-declined",
    }
)
RETURN_REASONS = frozenset(
    {
        "advice-and-guidance-given",
        "refer-elsewhere",
        "insufficient-information",
        "manage-in-primary-care",
    }
)
DISCHARGE_OUTCOMES = frozenset(
    {
        "treatment-completed",
        "goals-met",
        "self-management",
        "onward-referral",
        "patient-declined-further-care",
        "did-not-attend-discharged",
        "moved-away",
        "deceased",
    }
)
CANCEL_REASONS = frozenset(
    {
        "patient-request",
        "referred-in-error",
        "no-longer-required",
        "service-withdrawn",
        "duplicate-referral",
    }
)
HOLD_REASONS = frozenset(
    {"awaiting-information", "patient-unwell", "patient-request", "awaiting-investigation"}
)

RULES: dict[Action, Rule] = {
    Action.SUBMIT: Rule(frozenset({S.DRAFT}), S.SUBMITTED, Side.REFERRER),
    Action.ACCEPT: Rule(frozenset({S.SUBMITTED}), S.ACCEPTED, Side.RECEIVER),
    Action.REJECT: Rule(
        frozenset({S.SUBMITTED}),
        S.REJECTED,
        Side.RECEIVER,
        reason_required=True,
        reason_codes=REJECT_REASONS,
    ),
    Action.RETURN: Rule(
        frozenset({S.SUBMITTED}),
        S.RETURNED,
        Side.RECEIVER,
        reason_required=True,
        reason_codes=RETURN_REASONS,
    ),
    # a further appointment after one attended or missed is booked again
    Action.BOOK: Rule(
        frozenset({S.ACCEPTED, S.ATTENDED, S.DID_NOT_ATTEND}),
        S.BOOKED,
        Side.RECEIVER,
        needs_appointment=True,
    ),
    Action.ATTEND: Rule(frozenset({S.BOOKED}), S.ATTENDED, Side.RECEIVER),
    Action.DID_NOT_ATTEND: Rule(frozenset({S.BOOKED}), S.DID_NOT_ATTEND, Side.RECEIVER),
    Action.DISCHARGE: Rule(
        frozenset({S.ATTENDED, S.DID_NOT_ATTEND}),
        S.DISCHARGED,
        Side.RECEIVER,
        reason_required=True,
        reason_codes=DISCHARGE_OUTCOMES,
    ),
    Action.CANCEL: Rule(
        frozenset(OPEN), S.CANCELLED, Side.EITHER, reason_required=True, reason_codes=CANCEL_REASONS
    ),
    Action.HOLD: Rule(
        frozenset({S.SUBMITTED, S.ACCEPTED, S.BOOKED}),
        S.ON_HOLD,
        Side.RECEIVER,
        reason_required=True,
        reason_codes=HOLD_REASONS,
    ),
    Action.RESUME: Rule(frozenset({S.ON_HOLD}), None, Side.RECEIVER),
}

#: roles that act for an organisation on a referral (shared/access.py's role table)
ACTING_ROLES = tuple(sorted(roles_with(Capability.REFERRAL_ACT)))


@dataclass(frozen=True)
class Transition:
    action: Action
    from_state: ReferralState
    to_state: ReferralState
    reason_code: str | None


def allowed_actions(state: ReferralState) -> list[Action]:
    return [a for a, r in RULES.items() if state in r.from_states]


def plan_transition(
    *,
    action: Action,
    state: ReferralState,
    held_from: ReferralState | None,
    reason_code: str | None,
    has_appointment: bool,
) -> Transition:
    """Check an action against the state machine; return the transition or raise."""
    rule = RULES[action]
    if state not in rule.from_states:
        allowed = ", ".join(a.value for a in allowed_actions(state)) or "none (it is closed)"
        raise Conflict(
            f"cannot {action.value} a referral that is {state.value}; allowed actions: {allowed}",
            state=state.value,
            allowed_actions=[a.value for a in allowed_actions(state)],
        )
    if rule.reason_required and not reason_code:
        raise ValidationFailed(
            f"{action.value} needs a reason_code, one of: {', '.join(sorted(rule.reason_codes))}"
        )
    if reason_code is not None and not rule.reason_codes:
        raise ValidationFailed(f"{action.value} takes no reason_code")
    if reason_code is not None and reason_code not in rule.reason_codes:
        raise ValidationFailed(
            f"{reason_code!r} is not a reason to {action.value}; one of: "
            f"{', '.join(sorted(rule.reason_codes))}"
        )
    if rule.needs_appointment and not has_appointment:
        raise ValidationFailed("book needs appointment_at (when the appointment is)")
    to_state = rule.to_state
    if to_state is None:  # resume
        if held_from is None:
            raise Conflict("this referral has no state to resume to")
        to_state = held_from
    return Transition(action, state, to_state, reason_code)


def check_actor(principal: Principal, *, action: Action, from_org: str, to_org: str) -> None:
    """The organisation side and role that may take `action`."""
    side = RULES[action].side
    check_scope(principal, Capability.REFERRAL_ACT)
    if not principal.has(*ACTING_ROLES):
        raise Forbidden(
            f"only clinicians, service staff or partner staff of the referring or "
            f"receiving organisation may {action.value} a referral"
        )
    orgs = {Side.REFERRER: {from_org}, Side.RECEIVER: {to_org}, Side.EITHER: {from_org, to_org}}[
        side
    ]
    if principal.org not in orgs:
        who = {
            Side.REFERRER: "the referring organisation",
            Side.RECEIVER: "the receiving service",
            Side.EITHER: "the referring organisation or the receiving service",
        }[side]
        raise Forbidden(f"only {who} may {action.value} this referral")


def may_read(
    principal: Principal, *, from_org: str, to_org: str, ics: str, state: str = "submitted"
) -> bool:
    """By the role table: acting roles see referrals to or from their organisation,
    coordinators their ICS's. A draft has not been sent: only the referring organisation
    sees it."""
    if state == ReferralState.DRAFT:
        check_scope(principal, Capability.REFERRAL_READ)
        return principal.has(*ACTING_ROLES) and principal.org == from_org
    return permits(
        principal,
        Capability.REFERRAL_READ,
        referral_relationships(principal, from_org=from_org, to_org=to_org, ics=ics),
    )


def check_may_create(principal: Principal) -> None:
    check_scope(principal, Capability.REFERRAL_CREATE)
    if not principal.has(*ACTING_ROLES):
        raise Forbidden(
            "only clinicians, service staff or partner staff of a referring "
            "organisation may create referrals"
        )


def check_new_referral(
    *,
    consent_to_referral: bool,
    from_org: str,
    to_org: str,
    source: Source,
    referred_from: str | None,
) -> None:
    if not consent_to_referral:
        raise ValidationFailed(
            "the patient's consent to the referral is required (consent_to_referral must be true)"
        )
    if source is Source.ONWARD and not referred_from:
        raise ValidationFailed(
            "an onward referral must name the referral it came out of (referred_from)"
        )


def check_service(*, status: str | None, service_id: str) -> None:
    """The directory service must be known and taking referrals."""
    if status is None:
        raise ValidationFailed(f"to_service_id {service_id!r} is not a service in the directory")
    if status != "active":
        raise ValidationFailed(
            f"the directory service {service_id!r} is {status} and is not taking referrals"
        )
