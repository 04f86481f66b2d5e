"""Scoring, reliable change, diffs and access: the pure rules of services/care_plans/domain.py.

Every total of every instrument is checked against the band its source publishes, written out
here independently of the configuration table (so a wrong table fails the test)."""

from __future__ import annotations

import itertools

import pytest

from services.care_plans import domain
from services.care_plans.domain import Instrument
from shared.access import Capability, Principal, Relationship, Role
from shared.errors import Forbidden, NotFound, ValidationFailed

# --- expected bands, as the sources publish them (not read from domain.INSTRUMENTS) -----------

PHQ9_EXPECTED = {
    **{t: "minimal" for t in range(0, 5)},
    **{t: "mild" for t in range(5, 10)},
    **{t: "moderate" for t in range(10, 15)},
    **{t: "moderately_severe" for t in range(15, 20)},
    **{t: "severe" for t in range(20, 28)},
}
GAD7_EXPECTED = {
    **{t: "minimal" for t in range(0, 5)},
    **{t: "mild" for t in range(5, 10)},
    **{t: "moderate" for t in range(10, 15)},
    **{t: "severe" for t in range(15, 22)},
}


def frequency_answers(n_items: int, total: int, *, last: int | None = None) -> dict[str, int]:
    """Answers (0-3 each) adding up to `total`, optionally fixing the last item."""
    values = [0] * n_items
    remaining = total
    if last is not None:
        values[-1] = last
        remaining -= last
    for i in range(n_items - (1 if last is not None else 0)):
        values[i] = min(3, remaining)
        remaining -= values[i]
    assert remaining == 0, (n_items, total, last)
    return {str(i + 1): v for i, v in enumerate(values)}


def start_back(physical: int, distress_agree: int, bothersome: str) -> dict[str, str]:
    """Items 1-4 agree `physical` times, items 5-8 agree `distress_agree` times, item 9."""
    answers = {str(i): "agree" if i <= physical else "disagree" for i in range(1, 5)}
    answers.update(
        {str(i): "agree" if i - 4 <= distress_agree else "disagree" for i in range(5, 9)}
    )
    answers["9"] = bothersome
    return answers


class TestPhq9:
    @pytest.mark.parametrize("total", range(0, 28))
    def test_every_total_has_its_published_band(self, total: int) -> None:
        result = domain.score(
            Instrument.PHQ9,
            frequency_answers(9, total, last=0) if total <= 24 else frequency_answers(9, total),
        )
        assert (result.total, result.band, result.subscale) == (total, PHQ9_EXPECTED[total], None)

    @pytest.mark.parametrize(
        ("total", "band"),
        [
            (4, "minimal"),
            (5, "mild"),
            (9, "mild"),
            (10, "moderate"),
            (14, "moderate"),
            (15, "moderately_severe"),
            (19, "moderately_severe"),
            (20, "severe"),
            (27, "severe"),
        ],
    )
    def test_band_edges(self, total: int, band: str) -> None:
        assert domain.band_for(Instrument.PHQ9, total) == band

    @pytest.mark.parametrize("item9", [1, 2, 3])
    def test_item_9_above_zero_is_a_safety_flag_whatever_the_total(self, item9: int) -> None:
        result = domain.score(Instrument.PHQ9, frequency_answers(9, item9, last=item9))
        assert result.total == item9 and result.band == "minimal"
        assert result.safety_flag
        assert domain.risk_flags(result) == [domain.RiskFlag("phq9_item9", "urgent")]

    @pytest.mark.parametrize("total", range(0, 25))
    def test_item_9_zero_is_no_safety_flag(self, total: int) -> None:
        assert not domain.score(Instrument.PHQ9, frequency_answers(9, total, last=0)).safety_flag

    def test_severe_band_with_item_9_raises_both_flags(self) -> None:
        result = domain.score(Instrument.PHQ9, frequency_answers(9, 27))
        assert domain.risk_flags(result) == [
            domain.RiskFlag("phq9_item9", "urgent"),
            domain.RiskFlag("high_risk_band", "high"),
        ]

    @pytest.mark.parametrize("total", range(0, 25))
    def test_only_severe_is_a_high_risk_band(self, total: int) -> None:
        result = domain.score(Instrument.PHQ9, frequency_answers(9, total, last=0))
        assert result.high_risk == (total >= 20)
        assert (domain.risk_flags(result) == [domain.RiskFlag("high_risk_band", "high")]) == (
            total >= 20
        )

    def test_every_single_item_answer_is_scored_at_face_value(self) -> None:
        for item, value in itertools.product(range(1, 10), range(4)):
            answers = {str(i): 0 for i in range(1, 10)}
            answers[str(item)] = value
            result = domain.score(Instrument.PHQ9, answers)
            assert result.total == value
            assert result.item_scores[item - 1] == value


class TestGad7:
    @pytest.mark.parametrize("total", range(0, 22))
    def test_every_total_has_its_published_band(self, total: int) -> None:
        result = domain.score(Instrument.GAD7, frequency_answers(7, total))
        assert (result.total, result.band, result.subscale) == (total, GAD7_EXPECTED[total], None)
        assert not result.safety_flag  # item 7 is not a safety item
        assert result.high_risk == (total >= 15)

    @pytest.mark.parametrize(
        ("total", "band"),
        [
            (0, "minimal"),
            (4, "minimal"),
            (5, "mild"),
            (9, "mild"),
            (10, "moderate"),
            (14, "moderate"),
            (15, "severe"),
            (21, "severe"),
        ],
    )
    def test_band_edges(self, total: int, band: str) -> None:
        assert domain.band_for(Instrument.GAD7, total) == band

    @pytest.mark.parametrize("total", [-1, 22])
    def test_a_total_outside_0_21_has_no_band(self, total: int) -> None:
        with pytest.raises(ValueError):
            domain.band_for(Instrument.GAD7, total)


class TestStartBack:
    @pytest.mark.parametrize(
        ("physical", "distress_agree", "bothersome"),
        list(
            itertools.product(
                range(5),
                range(5),
                ["not_at_all", "slightly", "moderately", "very_much", "extremely"],
            )
        ),
    )
    def test_every_combination_scores_and_bands_as_keele_publishes(
        self, physical: int, distress_agree: int, bothersome: str
    ) -> None:
        item9 = 1 if bothersome in ("very_much", "extremely") else 0
        subscale = distress_agree + item9
        total = physical + subscale
        expected = "high" if subscale >= 4 else "low" if total <= 3 else "medium"
        result = domain.score(
            Instrument.START_BACK, start_back(physical, distress_agree, bothersome)
        )
        assert (result.total, result.subscale, result.band) == (total, subscale, expected)
        assert not result.safety_flag
        assert result.high_risk == (expected == "high")

    @pytest.mark.parametrize(
        "bothersome,scores",
        [("not_at_all", 0), ("slightly", 0), ("moderately", 0), ("very_much", 1), ("extremely", 1)],
    )
    def test_item_9_scores_only_very_much_or_extremely(self, bothersome: str, scores: int) -> None:
        result = domain.score(Instrument.START_BACK, start_back(0, 0, bothersome))
        assert result.total == result.subscale == scores

    @pytest.mark.parametrize(
        ("total", "subscale", "band"),
        [
            (0, 0, "low"),
            (3, 0, "low"),
            (3, 3, "low"),  # total 0-3 -> low
            (4, 0, "medium"),
            (4, 3, "medium"),
            (9, 3, "medium"),  # total >= 4, subscale <= 3
            (4, 4, "high"),
            (5, 5, "high"),
            (9, 4, "high"),
            (9, 5, "high"),  # subscale >= 4
        ],
    )
    def test_band_edges(self, total: int, subscale: int, band: str) -> None:
        assert domain.start_back_band(total, subscale) == band

    @pytest.mark.parametrize(("total", "subscale"), [(3, 4), (10, 5), (9, 6), (2, -1)])
    def test_impossible_scores_are_refused(self, total: int, subscale: int) -> None:
        with pytest.raises(ValueError):
            domain.start_back_band(total, subscale)

    def test_items_1_to_4_are_not_in_the_subscale(self) -> None:
        result = domain.score(Instrument.START_BACK, start_back(4, 0, "not_at_all"))
        assert (result.total, result.subscale, result.band) == (4, 0, "medium")

    def test_item_9_answers_are_not_agree_disagree(self) -> None:
        answers = start_back(0, 0, "not_at_all")
        answers["9"] = "agree"
        with pytest.raises(ValidationFailed, match="item 9"):
            domain.score(Instrument.START_BACK, answers)

    def test_items_1_to_8_take_agree_or_disagree_only(self) -> None:
        answers = start_back(0, 0, "not_at_all")
        answers["3"] = "extremely"
        with pytest.raises(ValidationFailed, match="item 3"):
            domain.score(Instrument.START_BACK, answers)


class TestAnswerValidation:
    @pytest.mark.parametrize("instrument,items", [(Instrument.PHQ9, 9), (Instrument.GAD7, 7)])
    @pytest.mark.parametrize("bad", [-1, 4, "4", "x", None, 1.5, True, [1]])
    def test_an_answer_out_of_range_is_refused(
        self, instrument: Instrument, items: int, bad: object
    ) -> None:
        answers: dict[str, object] = {str(i): 0 for i in range(1, items + 1)}
        answers["2"] = bad
        with pytest.raises(ValidationFailed, match="item 2: answer out of range"):
            domain.score(instrument, answers)

    @pytest.mark.parametrize(
        "instrument,items", [(Instrument.PHQ9, 9), (Instrument.GAD7, 7), (Instrument.START_BACK, 9)]
    )
    def test_a_missing_item_is_refused_by_number(self, instrument: Instrument, items: int) -> None:
        spec = domain.INSTRUMENTS[instrument]
        answers = {str(i): spec.answers_for(i)[0][0] for i in range(1, items + 1)}
        del answers[str(items)]
        with pytest.raises(ValidationFailed, match=f"missing item\\(s\\): {items}"):
            domain.score(instrument, answers)

    def test_an_unknown_item_is_refused(self) -> None:
        answers = {str(i): 0 for i in range(1, 8)} | {"8": 0}
        with pytest.raises(ValidationFailed, match="unknown item"):
            domain.score(Instrument.GAD7, answers)

    def test_numeric_strings_are_accepted_for_frequency_items(self) -> None:
        assert domain.score(Instrument.GAD7, {str(i): "3" for i in range(1, 8)}).total == 21

    def test_an_unknown_instrument_is_refused(self) -> None:
        with pytest.raises(ValidationFailed, match="unknown instrument"):
            domain.instrument_from("PHQ-2")

    @pytest.mark.parametrize(
        "instrument,maximum",
        [(Instrument.PHQ9, 27), (Instrument.GAD7, 21), (Instrument.START_BACK, 9)],
    )
    def test_maximum_totals(self, instrument: Instrument, maximum: int) -> None:
        assert domain.INSTRUMENTS[instrument].max_total == maximum


class TestReliableChange:
    @pytest.mark.parametrize(
        ("previous", "current", "expected"),
        [
            (20, 14, "reliable_improvement"),
            (20, 15, "no_reliable_change"),
            (14, 20, "reliable_deterioration"),
            (15, 20, "no_reliable_change"),
            (10, 10, "no_reliable_change"),
            (27, 0, "reliable_improvement"),
        ],
    )
    def test_phq9_threshold_is_6(self, previous: int, current: int, expected: str) -> None:
        assert domain.reliable_change(Instrument.PHQ9, previous, current) == expected

    @pytest.mark.parametrize(
        ("previous", "current", "expected"),
        [
            (15, 11, "reliable_improvement"),
            (15, 12, "no_reliable_change"),
            (11, 15, "reliable_deterioration"),
            (12, 15, "no_reliable_change"),
        ],
    )
    def test_gad7_threshold_is_4(self, previous: int, current: int, expected: str) -> None:
        assert domain.reliable_change(Instrument.GAD7, previous, current) == expected

    def test_start_back_has_no_reliable_change_threshold(self) -> None:
        assert domain.reliable_change(Instrument.START_BACK, 9, 0) is None

    def test_trend_reports_each_change_and_the_direction(self) -> None:
        points = domain.trend(
            Instrument.PHQ9, [(22, "severe"), (15, "moderately_severe"), (12, "moderate")]
        )
        assert [(p.change, p.reliable_change) for p in points] == [
            (None, None),
            (-7, "reliable_improvement"),
            (-3, "no_reliable_change"),
        ]
        assert domain.direction(points) == "improving"
        assert domain.direction(points[:1]) == "not_enough_data"
        assert domain.direction(domain.trend(Instrument.GAD7, [(5, "mild"), (9, "mild")])) == (
            "worsening"
        )


class TestDiff:
    def test_changed_added_and_removed_fields_by_json_pointer(self) -> None:
        before = {"a": 1, "goals": [{"what": "walk"}], "x/y": "old", "gone": True}
        after = {"a": 2, "goals": [{"what": "walk"}, {"what": "swim"}], "x/y": "new"}
        assert domain.diff(before, after) == [
            {"op": "changed", "path": "/a", "before": 1, "after": 2},
            {"op": "added", "path": "/goals/1", "before": None, "after": {"what": "swim"}},
            {"op": "removed", "path": "/gone", "before": True, "after": None},
            {"op": "changed", "path": "/x~1y", "before": "old", "after": "new"},
        ]

    def test_identical_documents_have_no_differences(self) -> None:
        doc = {"a": [1, {"b": None}]}
        assert domain.diff(doc, doc) == []

    def test_a_type_change_is_a_change(self) -> None:
        assert domain.diff({"a": 1}, {"a": True}) == [
            {"op": "changed", "path": "/a", "before": 1, "after": True}
        ]


def principal(org: str, *roles: Role, ics: str = "ICS-A") -> Principal:
    return Principal(user="u", roles=frozenset(roles or (Role.CLINICIAN,)), org=org, ics=ics)


def person(referral: bool = False, gp: str | None = None, known: bool = True) -> domain.PersonFacts:
    return domain.PersonFacts(
        referral_with_org=referral, registered_practice=gp, known=known, ics="ICS-A"
    )


PLAN = domain.PlanFacts(holder_org="GP-1", consented_orgs=["PAIN-1"], ics="ICS-A")
GLASS = domain.PlanFacts(
    holder_org="GP-1", consented_orgs=["PAIN-1"], ics="ICS-A", break_glass=True
)
C = Capability
READ, WRITE, CREATE = C.CARE_PLAN_READ, C.CARE_PLAN_WRITE, C.CARE_PLAN_CREATE


class TestRelationships:
    def test_each_fact_is_one_relationship(self) -> None:
        R = Relationship
        assert domain.relationships(principal("GP-1"), person(), PLAN) == {
            R.PLAN_HOLDER,
            R.ICS_COORDINATION,
        }
        assert domain.relationships(principal("PAIN-1"), person(), PLAN) == {
            R.CONSENT,
            R.ICS_COORDINATION,
        }
        assert domain.relationships(principal("GP-9", ics="ICS-B"), person(gp="GP-9")) == {
            R.REGISTERED_GP
        }
        assert domain.relationships(principal("TT-1"), person(referral=True)) == {
            R.REFERRAL,
            R.ICS_COORDINATION,
        }
        assert domain.relationships(principal("TT-1"), person(), GLASS) == {
            R.BREAK_GLASS,
            R.ICS_COORDINATION,
        }

    def test_a_person_unknown_here_is_in_nobodys_ics(self) -> None:
        assert (
            domain.relationships(principal("ICB-1", Role.COORDINATOR), person(known=False)) == set()
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
        facts: domain.PersonFacts,
        plan: domain.PlanFacts,
        cap: Capability,
        outcome: str | int,
    ) -> None:
        p = principal(org, role, ics=ics)
        rels = domain.relationships(p, facts, plan)
        if isinstance(outcome, str):
            assert domain.check_plan_access(p, cap, rels, plan_id="x").value == outcome
        else:
            with pytest.raises(Forbidden if outcome == 403 else NotFound) as exc:
                domain.check_plan_access(p, cap, rels, plan_id="x")
            if outcome == 404:
                assert exc.value.message == domain.not_found_message("x")

    def test_the_care_team_is_told_why(self) -> None:
        p = principal("TT-1")
        with pytest.raises(Forbidden, match="not consented to organisation TT-1"):
            domain.check_plan_access(
                p, READ, domain.relationships(p, person(referral=True), PLAN), plan_id="x"
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
        self, org: str, role: Role, ics: str, facts: domain.PersonFacts, allowed: str | None
    ) -> None:
        p = principal(org, role, ics=ics)
        rels = domain.relationships(p, facts)
        if allowed in (None, "role"):
            with pytest.raises(Forbidden) as exc:
                domain.check_may_create(p, rels)
            assert exc.value.extra["reason"] == (allowed or "no_relationship")
        else:
            assert domain.check_may_create(p, rels).value == allowed


class TestContactChanges:
    def test_the_persons_and_carers_contact_changes_are_named(self) -> None:
        before = {
            "communication": {"email": "a@example.org"},
            "carers": [{"id": "c1", "contact": "07700 900000"}],
        }
        after = {
            "communication": {"email": "b@example.org", "mobile": "07700 900001"},
            "carers": [
                {"id": "c1", "contact": "07700 900002"},
                {"id": "c2", "contact": "07700 900003"},
            ],
        }
        assert domain.contact_changes(before, after) == [
            "person's email",
            "person's mobile",
            "carer c1's contact",
            "carer c2's contact",
        ]
        assert domain.contact_changes(before, before) == []


class TestOneVocabulary:
    """The bands scoring produces and the high-risk ones are the shared vocabulary's, which the
    journey rules alert with (shared/vocabulary.py): they cannot drift apart again."""

    def test_every_band_scoring_produces_is_in_the_vocabulary_and_back(self) -> None:
        from shared.vocabulary import BANDS

        for inst in (Instrument.PHQ9, Instrument.GAD7):
            spec = domain.INSTRUMENTS[inst]
            produced = {domain.band_for(inst, t) for t in range(spec.max_total + 1)}
            assert produced == set(BANDS[inst]) == {b.code for b in spec.bands}, inst
        start_back = {
            domain.start_back_band(t, sub) for t in range(10) for sub in range(6) if sub <= t
        }
        assert start_back == set(BANDS[Instrument.START_BACK])

    def test_the_high_risk_bands_are_the_vocabularys(self) -> None:
        from shared.vocabulary import HIGH_RISK_BANDS, is_high_risk

        for inst, spec in domain.INSTRUMENTS.items():
            assert spec.high_risk_bands == HIGH_RISK_BANDS[inst]
            assert all(is_high_risk(inst.value, b) for b in spec.high_risk_bands)
