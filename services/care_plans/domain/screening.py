"""The care plan's screening rules (instruments, scores, bands, trends): pure and synchronous,
no I/O.

Screening is scored exactly as the instruments' authors publish it. Every threshold and band
edge lives in `INSTRUMENTS` / `RELIABLE_CHANGE` below (one place), each with its source:

- Keele STarT Back Screening Tool: Hill JC, Dunn KM, Lewis M, et al. "A primary care back pain
  screening tool: identifying patient subgroups for initial treatment". Arthritis Rheum
  2008;59(5):632-641, and the Keele University STarT Back scoring guide. Items 1-8 score 1 for
  "agree"; item 9 scores 1 only for "very much" or "extremely". Total 0-9; the distress
  (psychosocial) subscale is items 5-9 (0-5). Total 0-3: low risk; total >= 4 and subscale
  <= 3: medium; subscale >= 4: high.
- PHQ-9: Kroenke K, Spitzer RL, Williams JBW. "The PHQ-9: validity of a brief depression
  severity measure". J Gen Intern Med 2001;16(9):606-613. Items 0-3, total 0-27; 0-4 minimal,
  5-9 mild, 10-14 moderate, 15-19 moderately severe, 20-27 severe. Item 9 (thoughts of being
  better off dead or of self-harm) above 0 is a safety flag whatever the total.
- GAD-7: Spitzer RL, Kroenke K, Williams JBW, Lowe B. "A brief measure for assessing
  generalized anxiety disorder: the GAD-7". Arch Intern Med 2006;166(10):1092-1097. Items 0-3,
  total 0-21; 0-4 minimal, 5-9 mild, 10-14 moderate, 15-21 severe.
- Reliable change: PHQ-9 change >= 6, GAD-7 change >= 4, as NHS Talking Therapies (IAPT)
  uses them (NHS Talking Therapies Manual, appendix on reliable improvement/deterioration).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from shared.errors import ValidationFailed
from shared.vocabulary import HIGH_RISK_BANDS, Instrument


@dataclass(frozen=True)
class Band:
    code: str  # snake_case band code, as events and the API carry it
    low: int  # inclusive
    high: int  # inclusive


@dataclass(frozen=True)
class InstrumentSpec:
    instrument: Instrument
    title: str
    items: tuple[str, ...]  # the item texts, item n at index n-1
    #: answer code -> (display, score) per item number; items not listed use `default_answers`
    default_answers: tuple[tuple[str, str, int], ...]
    item_answers: Mapping[int, tuple[tuple[str, str, int], ...]]
    bands: tuple[Band, ...]  # by total (STarT Back: see score_start_back)
    high_risk_bands: frozenset[str]
    source: str

    @property
    def item_count(self) -> int:
        return len(self.items)

    def answers_for(self, item: int) -> tuple[tuple[str, str, int], ...]:
        return self.item_answers.get(item, self.default_answers)

    @property
    def max_total(self) -> int:
        return sum(max(s for _, _, s in self.answers_for(i)) for i in range(1, self.item_count + 1))


# --- the configuration: every answer score, band edge and threshold, with its source ---------

_FREQUENCY = (
    ("0", "Not at all", 0),
    ("1", "Several days", 1),
    ("2", "More than half the days", 2),
    ("3", "Nearly every day", 3),
)
_AGREE = (("disagree", "Disagree", 0), ("agree", "Agree", 1))
# STarT Back item 9: only "very much" and "extremely" score (Keele scoring guide)
_BOTHERSOME = (
    ("not_at_all", "Not at all", 0),
    ("slightly", "Slightly", 0),
    ("moderately", "Moderately", 0),
    ("very_much", "Very much", 1),
    ("extremely", "Extremely", 1),
)

START_BACK_DISTRESS_ITEMS = (5, 6, 7, 8, 9)  # Hill et al. 2008: the psychosocial subscale
START_BACK_LOW_MAX_TOTAL = 3  # total 0-3: low risk
START_BACK_HIGH_MIN_SUBSCALE = 4  # subscale >= 4: high risk (else total >= 4: medium)
PHQ9_SAFETY_ITEM = 9

INSTRUMENTS: dict[Instrument, InstrumentSpec] = {
    Instrument.START_BACK: InstrumentSpec(
        instrument=Instrument.START_BACK,
        title="Keele STarT Back Screening Tool",
        items=(
            "My back pain has spread down my leg(s) at some time in the last 2 weeks",
            "I have had pain in the shoulder or neck at some time in the last 2 weeks",
            "I have only walked short distances because of my back pain",
            "In the last 2 weeks, I have dressed more slowly than usual because of back pain",
            "It's not really safe for a person with a condition like mine to be physically active",
            "Worrying thoughts have been going through my mind a lot of the time",
            "I feel that my back pain is terrible and it's never going to get any better",
            "In general I have not enjoyed all the things I used to enjoy",
            "Overall, how bothersome has your back pain been in the last 2 weeks?",
        ),
        default_answers=_AGREE,
        item_answers={9: _BOTHERSOME},
        bands=(),  # banded on total and subscale together: see start_back_band
        high_risk_bands=HIGH_RISK_BANDS[Instrument.START_BACK],
        source="Hill et al. 2008, Arthritis Rheum 59(5):632-641; Keele University STarT Back "
        "scoring guide",
    ),
    Instrument.PHQ9: InstrumentSpec(
        instrument=Instrument.PHQ9,
        title="Patient Health Questionnaire (PHQ-9)",
        items=(
            "Little interest or pleasure in doing things",
            "Feeling down, depressed, or hopeless",
            "Trouble falling or staying asleep, or sleeping too much",
            "Feeling tired or having little energy",
            "Poor appetite or overeating",
            "Feeling bad about yourself - or that you are a failure or have let yourself or "
            "your family down",
            "Trouble concentrating on things, such as reading the newspaper or watching television",
            "Moving or speaking so slowly that other people could have noticed? Or the "
            "opposite - being so fidgety or restless that you have been moving around a lot "
            "more than usual",
            "Thoughts that you would be better off dead or of hurting yourself in some way",
        ),
        default_answers=_FREQUENCY,
        item_answers={},
        bands=(
            Band("minimal", 0, 4),
            Band("mild", 5, 9),
            Band("moderate", 10, 14),
            Band("moderately_severe", 15, 19),
            Band("severe", 20, 27),
        ),
        high_risk_bands=HIGH_RISK_BANDS[Instrument.PHQ9],
        source="Kroenke, Spitzer & Williams 2001, J Gen Intern Med 16(9):606-613",
    ),
    Instrument.GAD7: InstrumentSpec(
        instrument=Instrument.GAD7,
        title="Generalised Anxiety Disorder Assessment (GAD-7)",
        items=(
            "Feeling nervous, anxious or on edge",
            "Not being able to stop or control worrying",
            "Worrying too much about different things",
            "Trouble relaxing",
            "Being so restless that it is hard to sit still",
            "Becoming easily annoyed or irritable",
            "Feeling afraid as if something awful might happen",
        ),
        default_answers=_FREQUENCY,
        item_answers={},
        bands=(
            Band("minimal", 0, 4),
            Band("mild", 5, 9),
            Band("moderate", 10, 14),
            Band("severe", 15, 21),
        ),
        high_risk_bands=HIGH_RISK_BANDS[Instrument.GAD7],
        source="Spitzer, Kroenke, Williams & Lowe 2006, Arch Intern Med 166(10):1092-1097",
    ),
}

#: reliable change (NHS Talking Therapies): a change of at least this much between two scores
#: of the same person is more than measurement error. STarT Back has no such threshold.
RELIABLE_CHANGE: dict[Instrument, int] = {Instrument.PHQ9: 6, Instrument.GAD7: 4}


def instrument_from(value: str) -> Instrument:
    try:
        return Instrument(value)
    except ValueError:
        raise ValidationFailed(
            f"unknown instrument {value!r}; one of {', '.join(i.value for i in Instrument)}"
        ) from None


# --- scoring ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Score:
    instrument: Instrument
    total: int
    band: str
    subscale: int | None  # STarT Back distress subscale (items 5-9)
    safety_flag: bool  # PHQ-9 item 9 above 0
    item_scores: tuple[int, ...]

    @property
    def high_risk(self) -> bool:
        return self.band in INSTRUMENTS[self.instrument].high_risk_bands


@dataclass(frozen=True)
class RiskFlag:
    reason: str  # phq9_item9 | high_risk_band
    severity: str  # urgent | high


def validate_answers(instrument: Instrument, answers: Mapping[str, Any]) -> dict[int, str]:
    """Every item answered, with an answer the instrument allows; nothing else.

    Answers are keyed by item number ("1".."n"); values are the answer codes (PHQ-9/GAD-7:
    0-3; STarT Back items 1-8: agree/disagree, item 9: not_at_all .. extremely).
    """
    spec = INSTRUMENTS[instrument]
    wanted = {str(i) for i in range(1, spec.item_count + 1)}
    unknown = sorted(set(answers) - wanted)
    if unknown:
        raise ValidationFailed(
            f"{instrument.value} has items 1-{spec.item_count}; "
            f"unknown item(s): {', '.join(unknown[:10])}"
        )
    missing = sorted(wanted - set(answers), key=int)
    if missing:
        raise ValidationFailed(
            f"{instrument.value}: every item must be answered; missing "
            f"item(s): {', '.join(missing)}"
        )
    out: dict[int, str] = {}
    for i in range(1, spec.item_count + 1):
        raw = answers[str(i)]
        # booleans are ints in Python: True must not pass as the answer 1
        code = str(raw) if isinstance(raw, int | str) and not isinstance(raw, bool) else None
        allowed = [c for c, _, _ in spec.answers_for(i)]
        if code not in allowed:
            raise ValidationFailed(
                f"{instrument.value} item {i}: answer out of range; allowed: {', '.join(allowed)}",
                item=i,
            )
        out[i] = code
    return out


def score(instrument: Instrument, answers: Mapping[str, Any]) -> Score:
    spec = INSTRUMENTS[instrument]
    valid = validate_answers(instrument, answers)
    item_scores = tuple(
        next(s for c, _, s in spec.answers_for(i) if c == valid[i])
        for i in range(1, spec.item_count + 1)
    )
    total = sum(item_scores)
    if instrument is Instrument.START_BACK:
        subscale = sum(item_scores[i - 1] for i in START_BACK_DISTRESS_ITEMS)
        return Score(
            instrument, total, start_back_band(total, subscale), subscale, False, item_scores
        )
    safety = instrument is Instrument.PHQ9 and item_scores[PHQ9_SAFETY_ITEM - 1] > 0
    return Score(instrument, total, band_for(instrument, total), None, safety, item_scores)


def start_back_band(total: int, subscale: int) -> str:
    """Keele STarT Back: subscale >= 4 is high whatever the total; total <= 3 is low;
    otherwise (total >= 4, subscale <= 3) medium."""
    if not 0 <= subscale <= len(START_BACK_DISTRESS_ITEMS) or not subscale <= total <= 9:
        raise ValueError(f"impossible STarT Back scores: total {total}, subscale {subscale}")
    if subscale >= START_BACK_HIGH_MIN_SUBSCALE:
        return "high"
    if total <= START_BACK_LOW_MAX_TOTAL:
        return "low"
    return "medium"


def band_for(instrument: Instrument, total: int) -> str:
    """The severity band of a PHQ-9 or GAD-7 total."""
    if instrument is Instrument.START_BACK:
        raise ValueError("STarT Back bands need the subscale: use start_back_band")
    for band in INSTRUMENTS[instrument].bands:
        if band.low <= total <= band.high:
            return band.code
    raise ValueError(f"{instrument.value} total {total} is out of range")


def risk_flags(result: Score) -> list[RiskFlag]:
    """What must raise an alert at once: the PHQ-9 item 9 safety flag (urgent), a high-risk
    band (PHQ-9 severe, GAD-7 severe, STarT Back high)."""
    flags = []
    if result.safety_flag:
        flags.append(RiskFlag("phq9_item9", "urgent"))
    if result.high_risk:
        flags.append(RiskFlag("high_risk_band", "high"))
    return flags


@dataclass(frozen=True)
class TrendPoint:
    total: int
    band: str
    change: int | None  # from the previous score; None for the first
    # reliable_improvement | reliable_deterioration | no_reliable_change
    reliable_change: str | None


def reliable_change(instrument: Instrument, previous: int, current: int) -> str | None:
    """Compare two totals of the same person (lower is better on all three instruments)."""
    threshold = RELIABLE_CHANGE.get(instrument)
    if threshold is None:
        return None
    if previous - current >= threshold:
        return "reliable_improvement"
    if current - previous >= threshold:
        return "reliable_deterioration"
    return "no_reliable_change"


def trend(instrument: Instrument, totals_and_bands: Sequence[tuple[int, str]]) -> list[TrendPoint]:
    """Oldest first: each score with its change from the one before."""
    points: list[TrendPoint] = []
    for i, (total, band) in enumerate(totals_and_bands):
        if i == 0:
            points.append(TrendPoint(total, band, None, None))
            continue
        prev = totals_and_bands[i - 1][0]
        points.append(
            TrendPoint(total, band, total - prev, reliable_change(instrument, prev, total))
        )
    return points


def direction(points: Sequence[TrendPoint]) -> str:
    """The overall trend first to last: improving, worsening, stable, or not_enough_data."""
    if len(points) < 2:
        return "not_enough_data"
    delta = points[-1].total - points[0].total
    return "improving" if delta < 0 else "worsening" if delta > 0 else "stable"
