"""One vocabulary (shared/vocabulary.py): every term defined once, with its words, and every
part that spells a term agreeing with it."""

from __future__ import annotations

import pytest

from services.directory import domain as directory
from services.referrals import domain as referrals
from shared.vocabulary import (
    BAND_WORDS,
    BANDS,
    CATEGORY_WORDS,
    CLOSURE_OUTCOMES,
    DEFAULT_OUTCOME,
    ENDED_STATES,
    HIGH_RISK_BANDS,
    OPEN_STATES,
    REASON_WORDS,
    STATE_LABELS,
    Category,
    CategoryWords,
    Instrument,
    Outcome,
    ReferralState,
    band_words,
    category_of,
    category_words,
    closure_outcome,
    reason_words,
)
from workflows.journeys.words import category


class TestReferralStates:
    def test_every_state_has_a_label(self) -> None:
        assert set(STATE_LABELS) == set(ReferralState)
        assert all(label and label[0].isupper() for label in STATE_LABELS.values())

    def test_the_states_split_into_open_and_ended(self) -> None:
        assert ENDED_STATES | OPEN_STATES == set(ReferralState)
        assert not ENDED_STATES & OPEN_STATES
        assert {s.value for s in ENDED_STATES} == {
            "rejected",
            "returned",
            "discharged",
            "cancelled",
        }

    def test_every_ending_has_a_default_meaning_and_nothing_else_does(self) -> None:
        assert set(DEFAULT_OUTCOME) == set(ENDED_STATES) == set(CLOSURE_OUTCOMES)
        for state in OPEN_STATES:
            assert closure_outcome(state, None) is None

    def test_the_referrals_state_machine_uses_these_states(self) -> None:
        assert referrals.ReferralState is ReferralState
        assert referrals.TERMINAL == ENDED_STATES and referrals.OPEN == OPEN_STATES
        for rule in referrals.RULES.values():
            assert rule.from_states <= set(ReferralState)


class TestClosureReasons:
    def test_every_reason_has_words(self) -> None:
        used = {reason for reasons in CLOSURE_OUTCOMES.values() for reason in reasons}
        assert used <= set(REASON_WORDS), sorted(used - set(REASON_WORDS))

    @pytest.mark.parametrize(
        ("state", "reason", "meaning"),
        [
            ("returned", "advice-and-guidance-given", Outcome.ADVICE),
            ("rejected", "does-not-meet-criteria", Outcome.NOT_TREATED),
            ("discharged", "goals-met", Outcome.TREATED),
            ("discharged", "did-not-attend-discharged", Outcome.NOT_TREATED),
            ("cancelled", "referred-in-error", Outcome.ADMINISTRATIVE),
            ("cancelled", "service-withdrawn", Outcome.NOT_TREATED),
            ("rejected", "patient-declined", Outcome.DECLINED),
            ("rejected", "a-reason-nobody-knows", Outcome.NOT_TREATED),
            ("discharged", None, Outcome.TREATED),
        ],
    )
    def test_what_an_ending_means(self, state: str, reason: str | None, meaning: Outcome) -> None:
        assert closure_outcome(state, reason) is meaning

    def test_an_unknown_reason_reads_as_itself(self) -> None:
        assert reason_words("goals-met") == "goals met"
        assert reason_words("some-new-code") == "some new code"
        assert reason_words(None) == "no reason given"


class TestServiceCategories:
    def test_the_directory_offers_exactly_these_categories(self) -> None:
        assert directory.Category is Category

    def test_every_category_has_its_three_forms_of_words(self) -> None:
        assert set(CATEGORY_WORDS) == set(Category)
        for words in CATEGORY_WORDS.values():
            assert words.label[0].isupper()
            assert words.in_sentence and words.plural
            assert words.in_sentence[0].islower() or words.in_sentence.startswith("MSK")

    def test_an_unknown_code_reads_as_itself(self) -> None:
        assert category_of("test_fast_triage") is None
        assert category_words("test_fast_triage") == CategoryWords(
            "Test fast triage", "test fast triage", "test fast triage"
        )

    def test_the_journey_explanations_use_the_sentence_form(self) -> None:
        assert category("crisis") == "the crisis service"
        assert category("self_management_course") == "a self-management course"
        assert category("new_kind") == "new kind"


class TestScreening:
    def test_every_band_has_words_and_the_high_risk_bands_are_bands(self) -> None:
        for inst in Instrument:
            assert set(BAND_WORDS[inst]) == set(BANDS[inst])
            assert HIGH_RISK_BANDS[inst] <= set(BANDS[inst])

    def test_band_words(self) -> None:
        assert band_words("STarT-Back", "high") == "high risk"
        assert band_words("PHQ-9", "moderately_severe") == "moderately severe"
        assert band_words("unknown", "some_band") == "some band"
