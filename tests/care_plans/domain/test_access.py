"""Who may see or change a plan, and what a refusal says: services/care_plans/domain/access.py."""

from __future__ import annotations

import pytest

from services.care_plans.domain import access
from shared.access import Capability, Principal, Relationship, Role
from shared.errors import Forbidden, NotFound


def principal(org: str, *roles: Role, ics: str = "ICS-A") -> Principal:
    return Principal(user="u", roles=frozenset(roles or (Role.CLINICIAN,)), org=org, ics=ics)


def person(referral: bool = False, gp: str | None = None, known: bool = True) -> access.PersonFacts:
    return access.PersonFacts(
        referral_with_org=referral, registered_practice=gp, known=known, ics="ICS-A"
    )


PLAN = access.PlanFacts(holder_org="GP-1", consented_orgs=["PAIN-1"], ics="ICS-A")
GLASS = access.PlanFacts(
    holder_org="GP-1", consented_orgs=["PAIN-1"], ics="ICS-A", break_glass=True
)
C = Capability
READ, WRITE, CREATE = C.CARE_PLAN_READ, C.CARE_PLAN_WRITE, C.CARE_PLAN_CREATE


class TestRelationships:
    def test_each_fact_is_one_relationship(self) -> None:
        R = Relationship
        assert access.relationships(principal("GP-1"), person(), PLAN) == {
            R.PLAN_HOLDER,
            R.ICS_COORDINATION,
        }
        assert access.relationships(principal("PAIN-1"), person(), PLAN) == {
            R.CONSENT,
            R.ICS_COORDINATION,
        }
        assert access.relationships(principal("GP-9", ics="ICS-B"), person(gp="GP-9")) == {
            R.REGISTERED_GP
        }
        assert access.relationships(principal("TT-1"), person(referral=True)) == {
            R.REFERRAL,
            R.ICS_COORDINATION,
        }
        assert access.relationships(principal("TT-1"), person(), GLASS) == {
            R.BREAK_GLASS,
            R.ICS_COORDINATION,
        }

    def test_a_person_unknown_here_is_in_nobodys_ics(self) -> None:
        assert (
            access.relationships(principal("ICB-1", Role.COORDINATOR), person(known=False)) == set()
        )


#: (who, role, ics, person facts, plan, capability) -> the outcome: a relationship's name,
#: 403 (care team, told why, or a role that never may) or 404 (as if there were no plan)
CASES = [
    ("GP-1", Role.CLINICIAN, "ICS-A", person(), PLAN, READ, "plan_holder"),
    ("GP-1", Role.CLINICIAN, "ICS-A", person(), PLAN, WRITE, "plan_holder"),
    ("PAIN-1", Role.SERVICE_STAFF, "ICS-A", person(), PLAN, WRITE, "consent"),
    ("GP-9", Role.CLINICIAN, "ICS-A", person(gp="GP-9"), PLAN, READ, "registered_gp"),
    ("ICB-1", Role.COORDINATOR, "ICS-A", person(), PLAN, WRITE, "ics_coordination"),
    ("ICB-1", Role.COORDINATOR, "ICS-B", person(), PLAN, READ, 404),
    ("TT-1", Role.CLINICIAN, "ICS-A", person(referral=True), PLAN, READ, 403),
    ("TT-1", Role.CLINICIAN, "ICS-A", person(), PLAN, READ, 404),
    ("TT-1", Role.CLINICIAN, "ICS-B", person(), PLAN, READ, 404),
    ("TT-1", Role.CLINICIAN, "ICS-A", person(), GLASS, READ, "break_glass"),
    ("TT-1", Role.CLINICIAN, "ICS-A", person(), GLASS, WRITE, 403),
    # partner systems, organisation admins and ICS leads never reach a plan, even the holder's
    ("GP-1", Role.PARTNER, "ICS-A", person(), PLAN, READ, 403),
    ("PAIN-1", Role.ADMIN, "ICS-A", person(), PLAN, READ, 403),
    ("ICB-1", Role.ICS_LEAD, "ICS-A", person(), PLAN, READ, 403),
    ("GP-1", Role.SERVICE, "ICS-A", person(), PLAN, READ, 403),
]


class TestPlanAccess:
    @pytest.mark.parametrize(("org", "role", "ics", "facts", "plan", "cap", "outcome"), CASES)
    def test_the_relationship_decides(
        self,
        org: str,
        role: Role,
        ics: str,
        facts: access.PersonFacts,
        plan: access.PlanFacts,
        cap: Capability,
        outcome: str | int,
    ) -> None:
        p = principal(org, role, ics=ics)
        rels = access.relationships(p, facts, plan)
        if isinstance(outcome, str):
            assert access.check_plan_access(p, cap, rels, plan_id="x").value == outcome
        else:
            with pytest.raises(Forbidden if outcome == 403 else NotFound) as exc:
                access.check_plan_access(p, cap, rels, plan_id="x")
            if outcome == 404:
                assert exc.value.message == access.not_found_message("x")

    def test_the_care_team_is_told_why(self) -> None:
        p = principal("TT-1")
        with pytest.raises(Forbidden, match="not consented to organisation TT-1"):
            access.check_plan_access(
                p, READ, access.relationships(p, person(referral=True), PLAN), plan_id="x"
            )


class TestCreate:
    @pytest.mark.parametrize(
        ("org", "role", "ics", "facts", "allowed"),
        [
            ("GP-1", Role.CLINICIAN, "ICS-A", person(referral=True), "referral"),
            ("GP-9", Role.SERVICE_STAFF, "ICS-B", person(gp="GP-9"), "registered_gp"),
            ("ICB-1", Role.COORDINATOR, "ICS-A", person(), "ics_coordination"),
            ("ICB-1", Role.COORDINATOR, "ICS-A", person(known=False), None),
            ("ICB-1", Role.COORDINATOR, "ICS-B", person(), None),
            ("TT-1", Role.CLINICIAN, "ICS-A", person(), None),  # same ICS, no relationship
            ("TT-1", Role.CLINICIAN, "ICS-B", person(known=False), None),
            ("GP-1", Role.PARTNER, "ICS-A", person(referral=True), "role"),
            ("GP-1", Role.ADMIN, "ICS-A", person(referral=True), "role"),
        ],
    )
    def test_only_a_care_relationship_starts_a_plan(
        self, org: str, role: Role, ics: str, facts: access.PersonFacts, allowed: str | None
    ) -> None:
        p = principal(org, role, ics=ics)
        rels = access.relationships(p, facts)
        if allowed in (None, "role"):
            with pytest.raises(Forbidden) as exc:
                access.check_may_create(p, rels)
            assert exc.value.extra["reason"] == (allowed or "no_relationship")
        else:
            assert access.check_may_create(p, rels).value == allowed
