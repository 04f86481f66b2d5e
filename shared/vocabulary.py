"""One vocabulary of screening for every part: the instruments, the bands their scoring
produces, and which bands their authors treat as high risk. Pure: no I/O.

The care plans service scores and flags with it (services/care_plans/domain.py); the journey
rules alert with it (workflows/journeys/rules.py). Events carry these exact values. Before it
existed, care plans said `high` for STarT Back's high-risk band and the journey rules looked
for `high_risk`, so no STarT Back high result ever reached a coordinator (issue #15).

Sources:
- Keele STarT Back Screening Tool: Hill JC et al. 2008, Arthritis Rheum 59(5):632-641, and the
  Keele scoring guide: low, medium, high risk; high is the subgroup for psychologically
  informed physiotherapy.
- PHQ-9: Kroenke, Spitzer & Williams 2001, J Gen Intern Med 16(9):606-613: minimal, mild,
  moderate, moderately severe, severe (20-27).
- GAD-7: Spitzer, Kroenke, Williams & Lowe 2006, Arch Intern Med 166(10):1092-1097: minimal,
  mild, moderate, severe (15-21).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum


class Instrument(StrEnum):
    # the values are the events' `instrument` and the Questionnaire ids care plans publishes
    START_BACK = "STarT-Back"
    PHQ9 = "PHQ-9"
    GAD7 = "GAD-7"


#: every band an instrument's scoring produces, lowest first (snake_case, as events carry them)
BANDS: Mapping[Instrument, tuple[str, ...]] = {
    Instrument.START_BACK: ("low", "medium", "high"),
    Instrument.PHQ9: ("minimal", "mild", "moderate", "moderately_severe", "severe"),
    Instrument.GAD7: ("minimal", "mild", "moderate", "severe"),
}

#: the bands each instrument's authors treat as high risk
HIGH_RISK_BANDS: Mapping[Instrument, frozenset[str]] = {
    Instrument.START_BACK: frozenset({"high"}),
    Instrument.PHQ9: frozenset({"severe"}),
    Instrument.GAD7: frozenset({"severe"}),
}

#: how a band reads in a sentence ("in the high risk band")
BAND_WORDS: Mapping[Instrument, Mapping[str, str]] = {
    Instrument.START_BACK: {"low": "low risk", "medium": "medium risk", "high": "high risk"},
    Instrument.PHQ9: {b: b.replace("_", " ") for b in BANDS[Instrument.PHQ9]},
    Instrument.GAD7: {b: b.replace("_", " ") for b in BANDS[Instrument.GAD7]},
}


def instrument_of(value: str) -> Instrument | None:
    """The instrument an event names (None for one this vocabulary does not know)."""
    try:
        return Instrument(value)
    except ValueError:
        return None


def is_high_risk(instrument: str, band: str) -> bool:
    inst = instrument_of(instrument)
    return inst is not None and band in HIGH_RISK_BANDS[inst]


def band_words(instrument: str, band: str) -> str:
    inst = instrument_of(instrument)
    if inst is None:
        return band.replace("_", " ")
    return BAND_WORDS[inst].get(band, band.replace("_", " "))
