"""A seeded generator of synthetic patient journeys with known, labelled loops, stalls and
ordinary care, for testing the rules end to end and for benchmarks, evaluation and demos.

Each journey is a list of referral events (times relative to `now`, in the past, in time order)
and the set of rules that must fire for it, no more and no fewer, under version 2 of the alert
rules (docs/clinical-safety/alert-rules.md) and the default rules.toml. Margins keep every
labelled deadline clearly passed and every unlabelled one clearly not reached. Every ending
carries a reason code of the one vocabulary (shared/vocabulary.py `CLOSURE_OUTCOMES`).

Most templates are clear-cut: the specification leaves one reading. `AMBIGUOUS` names the few
whose label is the specification's answer to a question a clinician could answer otherwise (or
whose answer depends on when the events reach the journey); the evaluation
(`bench/alert_quality.py`) reports them apart.

`waymark seed` publishes a population of them (`DEMO_MIX`, spread over 12 months) onto the
referrals topic as referral CloudEvents from `SYNTHETIC_SOURCE`, and the journeys tests and the
evaluation publish theirs through the same `publish`.

The package: `builder` (the journey builder and the reason codes), `templates` (one function
per kind of journey, each returning the rules it must raise), `population` (the labels, the
demo mix, `generate`) and `publish` (onto the referrals topic).
"""

from devtools.synthetic.builder import CATEGORIES, RTT_CATEGORIES, Builder, SyntheticJourney
from devtools.synthetic.population import (
    AMBIGUOUS,
    DAYS_PER_MONTH,
    DEMO_MIX,
    ORDINARY,
    SPREAD,
    generate,
)
from devtools.synthetic.publish import publish, to_cloud_event
from devtools.synthetic.templates import TEMPLATES

__all__ = [
    "AMBIGUOUS",
    "CATEGORIES",
    "DAYS_PER_MONTH",
    "DEMO_MIX",
    "ORDINARY",
    "RTT_CATEGORIES",
    "SPREAD",
    "TEMPLATES",
    "Builder",
    "SyntheticJourney",
    "generate",
    "publish",
    "to_cloud_event",
]
