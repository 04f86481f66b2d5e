"""Who may see or change a care plan: pure and synchronous.

One role table for every service (shared/access.py); here, the relationships a care plan
service can show between a caller and a person, and what the answer is when there is none.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from shared.access import (
    Capability,
    Principal,
    Relationship,
    granting_relationship,
    may_use,
    permits,
    roles_phrase,
)
from shared.errors import Forbidden, NotFound


@dataclass(frozen=True)
class PersonFacts:
    """What the service holds about a person, as it bears on one caller."""

    referral_with_org: bool  # a referral from or to the caller's organisation
    registered_practice: str | None  # the person's GP practice (ODS), from referral events
    known: bool  # the person has a referral or a plan in this deployment
    ics: str  # the ICS this deployment serves (the person's ICS)


@dataclass(frozen=True)
class PlanFacts:
    holder_org: str
    consented_orgs: Sequence[str]
    ics: str
    break_glass: bool = False  # the caller holds an unexpired break-glass grant on it


def relationships(
    principal: Principal, person: PersonFacts, plan: PlanFacts | None = None
) -> set[Relationship]:
    rels: set[Relationship] = set()
    if person.referral_with_org:
        rels.add(Relationship.REFERRAL)
    if person.registered_practice and person.registered_practice == principal.org:
        rels.add(Relationship.REGISTERED_GP)
    ics = plan.ics if plan is not None else person.ics
    if (person.known or plan is not None) and principal.ics and principal.ics == ics:
        rels.add(Relationship.ICS_COORDINATION)
    if plan is not None:
        if principal.org == plan.holder_org:
            rels.add(Relationship.PLAN_HOLDER)
        if principal.org in plan.consented_orgs:
            rels.add(Relationship.CONSENT)
        if plan.break_glass:
            rels.add(Relationship.BREAK_GLASS)
    return rels


#: relationships that make a caller part of the person's care team: a refusal may then say
#: why (consent); to anyone else a plan they may not see is indistinguishable from none
CARE_TEAM = frozenset(
    {
        Relationship.REFERRAL,
        Relationship.REGISTERED_GP,
        Relationship.CONSENT,
        Relationship.PLAN_HOLDER,
    }
)

_ACTION_WORDS = {
    Capability.CARE_PLAN_READ: "read",
    Capability.CARE_PLAN_WRITE: "change",
    Capability.CARE_PLAN_CREATE: "start",
    Capability.BREAK_GLASS: "break glass on",
}


def check_role(principal: Principal, capability: Capability) -> None:
    """Refuse a role that may never do this, before anything is looked up (so the answer
    says nothing about the person)."""
    if not may_use(principal, capability):
        raise Forbidden(
            f"to {_ACTION_WORDS[capability]} a care plan needs one of the roles: "
            f"{roles_phrase(capability)}",
            reason="role",
        )


def check_plan_access(
    principal: Principal, capability: Capability, rels: set[Relationship], *, plan_id: str
) -> Relationship:
    """The relationship that allows the caller `capability` on an existing plan. Without
    one: a care-team member hears why (403); anyone else hears exactly what an unknown id
    gets (404), so a probe cannot tell a plan exists."""
    check_role(principal, capability)
    granted = granting_relationship(principal, capability, rels)
    if granted is not None:
        return granted
    if rels & CARE_TEAM or (
        capability is Capability.CARE_PLAN_WRITE
        and permits(principal, Capability.CARE_PLAN_READ, rels)
    ):
        raise Forbidden(
            f"the person has not consented to organisation {principal.org} "
            f"using their care plan (ask them, or the plan's holder; in an "
            f"emergency a clinician may break glass)",
            reason="no_consent",
        )
    raise NotFound(not_found_message(plan_id))


def not_found_message(plan_id: str) -> str:
    return f"no care plan {plan_id}"


def check_may_create(principal: Principal, rels: set[Relationship]) -> Relationship:
    """Starting a person's plan needs a care relationship the service can show. The refusal
    is the same whether or not the person already has a plan."""
    check_role(principal, Capability.CARE_PLAN_CREATE)
    granted = granting_relationship(principal, Capability.CARE_PLAN_CREATE, rels)
    if granted is None:
        raise Forbidden(
            "you have no care relationship with this person that Waymark can "
            "show: a referral from or to your organisation, or their registered "
            "GP practice (coordinators: a person cared for in your ICS). A referral "
            "made a moment ago reaches the care plans service within seconds: try "
            "again shortly",
            reason="no_relationship",
        )
    return granted


#: why a clinician breaks glass (coded, for the information governance review); the free-text
#: reason is kept in the audit log only. After NHS Summary Care Record emergency access.
BREAK_GLASS_REASONS = {
    "emergency-care": "the person needs emergency care and cannot be asked",
    "patient-unable-to-consent": "the person lacks capacity to consent now",
    "safeguarding": "a safeguarding concern needs the plan now",
}
