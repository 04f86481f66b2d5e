"""Scoring, bands and reliable change: the pure rules of services/care_plans/domain/screening.py.

Every total of every instrument is checked against the band its source publishes, written out
here independently of the configuration table (so a wrong table fails the test)."""

from __future__ import annotations

import itertools

import pytest

from services.care_plans.domain import screening
from shared.errors import ValidationFailed
from shared.vocabulary import Instrument

# --- expected bands, as the sources publish them (not read from screening.INSTRUMENTS) -----------

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
        result = screening.score(
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
        assert screening.band_for(Instrument.PHQ9, total) == band

    @pytest.mark.parametrize("item9", [1, 2, 3])
    def test_item_9_above_zero_is_a_safety_flag_whatever_the_total(self, item9: int) -> None:
        result = screening.score(Instrument.PHQ9, frequency_answers(9, item9, last=item9))
        assert result.total == item9 and result.band == "minimal"
        assert result.safety_flag
        assert screening.risk_flags(result) == [screening.RiskFlag("phq9_item9", "urgent")]

    @pytest.mark.parametrize("total", range(0, 25))
    def test_item_9_zero_is_no_safety_flag(self, total: int) -> None:
        assert not screening.score(Instrument.PHQ9, frequency_answers(9, total, last=0)).safety_flag

    def test_severe_band_with_item_9_raises_both_flags(self) -> None:
        result = screening.score(Instrument.PHQ9, frequency_answers(9, 27))
        assert screening.risk_flags(result) == [
            screening.RiskFlag("phq9_item9", "urgent"),
            screening.RiskFlag("high_risk_band", "high"),
        ]

    @pytest.mark.parametrize("total", range(0, 25))
    def test_only_severe_is_a_high_risk_band(self, total: int) -> None:
        result = screening.score(Instrument.PHQ9, frequency_answers(9, total, last=0))
        assert result.high_risk == (total >= 20)
        assert (screening.risk_flags(result) == [screening.RiskFlag("high_risk_band", "high")]) == (
            total >= 20
        )

    def test_every_single_item_answer_is_scored_at_face_value(self) -> None:
        for item, value in itertools.product(range(1, 10), range(4)):
            answers = {str(i): 0 for i in range(1, 10)}
            answers[str(item)] = value
            result = screening.score(Instrument.PHQ9, answers)
            assert result.total == value
            assert result.item_scores[item - 1] == value


class TestGad7:
    @pytest.mark.parametrize("total", range(0, 22))
    def test_every_total_has_its_published_band(self, total: int) -> None:
        result = screening.score(Instrument.GAD7, frequency_answers(7, total))
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
        assert screening.band_for(Instrument.GAD7, total) == band

    @pytest.mark.parametrize("total", [-1, 22])
    def test_a_total_outside_0_21_has_no_band(self, total: int) -> None:
        with pytest.raises(ValueError):
            screening.band_for(Instrument.GAD7, total)


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
        result = screening.score(
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
        result = screening.score(Instrument.START_BACK, start_back(0, 0, bothersome))
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
        assert screening.start_back_band(total, subscale) == band

    @pytest.mark.parametrize(("total", "subscale"), [(3, 4), (10, 5), (9, 6), (2, -1)])
    def test_impossible_scores_are_refused(self, total: int, subscale: int) -> None:
        with pytest.raises(ValueError):
            screening.start_back_band(total, subscale)

    def test_items_1_to_4_are_not_in_the_subscale(self) -> None:
        result = screening.score(Instrument.START_BACK, start_back(4, 0, "not_at_all"))
        assert (result.total, result.subscale, result.band) == (4, 0, "medium")

    def test_item_9_answers_are_not_agree_disagree(self) -> None:
        answers = start_back(0, 0, "not_at_all")
        answers["9"] = "agree"
        with pytest.raises(ValidationFailed, match="item 9"):
            screening.score(Instrument.START_BACK, answers)

    def test_items_1_to_8_take_agree_or_disagree_only(self) -> None:
        answers = start_back(0, 0, "not_at_all")
        answers["3"] = "extremely"
        with pytest.raises(ValidationFailed, match="item 3"):
            screening.score(Instrument.START_BACK, answers)


class TestAnswerValidation:
    @pytest.mark.parametrize("instrument,items", [(Instrument.PHQ9, 9), (Instrument.GAD7, 7)])
    @pytest.mark.parametrize("bad", [-1, 4, "4", "x", None, 1.5, True, [1]])
    def test_an_answer_out_of_range_is_refused(
        self, instrument: Instrument, items: int, bad: object
    ) -> None:
        answers: dict[str, object] = {str(i): 0 for i in range(1, items + 1)}
        answers["2"] = bad
        with pytest.raises(ValidationFailed, match="item 2: answer out of range"):
            screening.score(instrument, answers)

    @pytest.mark.parametrize(
        "instrument,items", [(Instrument.PHQ9, 9), (Instrument.GAD7, 7), (Instrument.START_BACK, 9)]
    )
    def test_a_missing_item_is_refused_by_number(self, instrument: Instrument, items: int) -> None:
        spec = screening.INSTRUMENTS[instrument]
        answers = {str(i): spec.answers_for(i)[0][0] for i in range(1, items + 1)}
        del answers[str(items)]
        with pytest.raises(ValidationFailed, match=f"missing item\\(s\\): {items}"):
            screening.score(instrument, answers)

    def test_an_unknown_item_is_refused(self) -> None:
        answers = {str(i): 0 for i in range(1, 8)} | {"8": 0}
        with pytest.raises(ValidationFailed, match="unknown item"):
            screening.score(Instrument.GAD7, answers)

    def test_numeric_strings_are_accepted_for_frequency_items(self) -> None:
        assert screening.score(Instrument.GAD7, {str(i): "3" for i in range(1, 8)}).total == 21

    def test_an_unknown_instrument_is_refused(self) -> None:
        with pytest.raises(ValidationFailed, match="unknown instrument"):
            screening.instrument_from("PHQ-2")

    @pytest.mark.parametrize(
        "instrument,maximum",
        [(Instrument.PHQ9, 27), (Instrument.GAD7, 21), (Instrument.START_BACK, 9)],
    )
    def test_maximum_totals(self, instrument: Instrument, maximum: int) -> None:
        assert screening.INSTRUMENTS[instrument].max_total == maximum


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
        assert screening.reliable_change(Instrument.PHQ9, previous, current) == expected

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
        assert screening.reliable_change(Instrument.GAD7, previous, current) == expected

    def test_start_back_has_no_reliable_change_threshold(self) -> None:
        assert screening.reliable_change(Instrument.START_BACK, 9, 0) is None

    def test_trend_reports_each_change_and_the_direction(self) -> None:
        points = screening.trend(
            Instrument.PHQ9, [(22, "severe"), (15, "moderately_severe"), (12, "moderate")]
        )
        assert [(p.change, p.reliable_change) for p in points] == [
            (None, None),
            (-7, "reliable_improvement"),
            (-3, "no_reliable_change"),
        ]
        assert screening.direction(points) == "improving"
        assert screening.direction(points[:1]) == "not_enough_data"
        assert screening.direction(
            screening.trend(Instrument.GAD7, [(5, "mild"), (9, "mild")])
        ) == ("worsening")


class TestOneVocabulary:
    """The bands scoring produces and the high-risk ones are the shared vocabulary's, which the
    journey rules alert with (shared/vocabulary.py): they cannot drift apart again."""

    def test_every_band_scoring_produces_is_in_the_vocabulary_and_back(self) -> None:
        from shared.vocabulary import BANDS

        for inst in (Instrument.PHQ9, Instrument.GAD7):
            spec = screening.INSTRUMENTS[inst]
            produced = {screening.band_for(inst, t) for t in range(spec.max_total + 1)}
            assert produced == set(BANDS[inst]) == {b.code for b in spec.bands}, inst
        start_back = {
            screening.start_back_band(t, sub) for t in range(10) for sub in range(6) if sub <= t
        }
        assert start_back == set(BANDS[Instrument.START_BACK])

    def test_the_high_risk_bands_are_the_vocabularys(self) -> None:
        from shared.vocabulary import HIGH_RISK_BANDS, is_high_risk

        for inst, spec in screening.INSTRUMENTS.items():
            assert spec.high_risk_bands == HIGH_RISK_BANDS[inst]
            assert all(is_high_risk(inst.value, b) for b in spec.high_risk_bands)
