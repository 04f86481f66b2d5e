"""What the referral routes share: finding a referral the caller may see, the scope of the
caller's lists, and rendering a referral."""

from __future__ import annotations

import uuid
from typing import Any

from services.referrals import domain
from services.referrals.domain import ReferralState
from services.referrals.models import Referral
from services.referrals.repository import ReferralRepository, scope_for
from services.referrals.schemas import ReferralOut
from shared.access import Capability, Relationship, relationships_for, roles_phrase
from shared.auth import Principal
from shared.errors import Forbidden, NotFound
from shared.web import PROBLEM_RESPONSES, SessionDep

ERRORS = PROBLEM_RESPONSES


def is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def referral_out(r: Referral) -> dict[str, Any]:
    out = ReferralOut.model_validate(r, from_attributes=True)
    out.allowed_actions = [a.value for a in domain.allowed_actions(ReferralState(r.state))]
    return out.model_dump(mode="json")


async def readable(session: SessionDep, principal: Principal, referral_id: str) -> Referral:
    referral = await ReferralRepository(session).get(referral_id) if is_uuid(referral_id) else None
    if referral is None or not domain.may_read(
        principal,
        from_org=referral.from_org,
        to_org=referral.to_org,
        ics=referral.ics,
        state=referral.state,
    ):
        # the same answer for "absent" and "not yours", so ids cannot be probed
        raise NotFound(f"no referral {referral_id} that you may see")
    return referral


def list_scope(principal: Principal) -> Any:
    # the role table: coordinators see their ICS's referrals, acting roles their organisation's
    if Relationship.ICS_COORDINATION in relationships_for(principal, Capability.REFERRAL_READ):
        return scope_for(ics=principal.ics)
    if Relationship.REFERRAL in relationships_for(principal, Capability.REFERRAL_READ):
        return scope_for(org=principal.org)
    raise Forbidden(
        f"listing referrals needs one of the roles: {roles_phrase(Capability.REFERRAL_READ)}"
    )
