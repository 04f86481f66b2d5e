"""A system's token is held to its scopes by shared/access.py's decisions, for every capability
(pure: no database, no provider). The stack-level view is the security matrix's
test_a_client_token_without_the_scope_is_refused_in_every_service."""

from __future__ import annotations

import pytest

from services.notifications.webhooks.domain import event_capability
from shared.access import (
    GRANTS,
    Capability,
    InsufficientScope,
    Principal,
    Relationship,
    Role,
    check_scope,
    granting_relationship,
    may_use,
    permits,
    relationships_for,
)

ALL_RELATIONSHIPS = set(Relationship)


def client(role: Role, *scopes: Capability) -> Principal:
    return Principal(
        user="partner-1",
        roles=frozenset({role}),
        org="ORG-A",
        ics="ICS-1",
        client_id="partner-1",
        scopes=frozenset(s.value for s in scopes),
    )


def person(role: Role) -> Principal:
    return Principal(user="u", roles=frozenset({role}), org="ORG-A", ics="ICS-1")


#: every (role, capability) the table grants at all
GRANTED = [(role, cap) for role, caps in GRANTS.items() for cap in caps]


@pytest.mark.parametrize(("role", "cap"), GRANTED, ids=lambda x: str(x))
def test_a_client_without_the_scope_is_refused_by_every_decision(role: Role, cap: Capability):
    others = [c for c in Capability if c is not cap]
    p = client(role, *others)
    for decide in (
        lambda: may_use(p, cap),
        lambda: permits(p, cap, ALL_RELATIONSHIPS),
        lambda: granting_relationship(p, cap, ALL_RELATIONSHIPS),
        lambda: relationships_for(p, cap),
    ):
        with pytest.raises(InsufficientScope) as refused:
            decide()
        assert refused.value.status == 403
        assert refused.value.headers["WWW-Authenticate"] == (
            f'Bearer error="insufficient_scope", scope="{cap.value}"'
        )
        assert refused.value.extra == {"error": "insufficient_scope", "scope": cap.value}


@pytest.mark.parametrize(("role", "cap"), GRANTED, ids=lambda x: str(x))
def test_with_the_scope_a_client_gets_what_its_role_gets(role: Role, cap: Capability):
    p, twin = client(role, cap), person(role)
    assert may_use(p, cap) and may_use(twin, cap)
    assert relationships_for(p, cap) == relationships_for(twin, cap) == GRANTS[role][cap]
    for rel in Relationship:
        assert permits(p, cap, {rel}) == permits(twin, cap, {rel}) == (rel in GRANTS[role][cap])


@pytest.mark.parametrize("cap", list(Capability), ids=str)
def test_a_scope_never_adds_what_the_role_lacks(cap: Capability):
    for role in Role:
        if cap in GRANTS[role]:
            continue
        p = client(role, *Capability)  # every scope there is
        assert not may_use(p, cap)
        assert not permits(p, cap, ALL_RELATIONSHIPS)


@pytest.mark.parametrize("role", list(Role), ids=str)
def test_a_persons_token_has_no_scopes_to_check(role: Role):
    p = person(role)
    assert not p.is_client
    for cap in Capability:
        check_scope(p, cap)  # never raises
        assert may_use(p, cap) == (cap in GRANTS[role])


def test_a_client_with_no_scopes_at_all_is_refused_everything():
    p = client(Role.PARTNER)
    assert p.is_client
    for cap in Capability:
        with pytest.raises(InsufficientScope):
            check_scope(p, cap)


@pytest.mark.parametrize(
    ("event_type", "cap"),
    [
        ("uk.waymark.referral.submitted", Capability.REFERRAL_READ),
        ("uk.waymark.referral.accepted", Capability.REFERRAL_READ),
        ("uk.waymark.journey.alert.raised", Capability.REFERRAL_READ),
        ("uk.waymark.journey.alert.resolved", Capability.REFERRAL_READ),
        ("uk.waymark.care-plan.updated", Capability.WEBHOOKS_MANAGE),
        ("uk.waymark.referral", Capability.WEBHOOKS_MANAGE),  # no prefix match without the dot
    ],
)
def test_an_event_subscription_needs_the_scope_of_its_events(event_type: str, cap: Capability):
    assert event_capability(event_type) is cap
