"""A synthetic population: the templates' labels (clear-cut or `AMBIGUOUS`), how far back
each may be spread (`SPREAD`), the demo mix, and `generate`."""

from __future__ import annotations

import random
from collections.abc import Mapping
from datetime import datetime, timedelta

from devtools.synthetic.builder import Builder, SyntheticJourney
from devtools.synthetic.templates import TEMPLATES

#: templates whose label is the specification's answer to a question a clinician could answer
#: otherwise, or whose answer depends on when the events reach the journey; the evaluation
#: reports them apart from the clear-cut ones (docs/clinical-safety/rule-performance.md)
AMBIGUOUS: dict[str, str] = {
    "advice_then_nothing": (
        "returned with advice and guidance, then nothing: advice is for the referrer to act on "
        "and is not a closed door, so neither no_next_step nor closed_doors"
    ),
    "ping_pong_closed_doors": (
        "A and B both closed the door, then A again after the grace: ping_pong, re_referral "
        "(A closed it not treated) and closed_doors (two doors, nothing open, nothing within "
        "the grace) all hold, so three alerts for one history"
    ),
    "duplicate_not_counted": (
        "a duplicate referral cancelled as a duplicate is not an episode of care, so three "
        "episodes and a duplicate are not frequent contact; until the cancellation arrives the "
        "duplicate looks like a fourth episode"
    ),
    "referrer_cancelled_back_and_forth": (
        "cancelled by the referrer (no longer required, referred in error) is not the service "
        "closing the referral: A, B, A again is not ping-pong"
    ),
    "parallel_then_back": (
        "A returned with advice while B was open, then A's kind of service again while B was "
        "still open: parallel care, not ping-pong"
    ),
}

#: how far back a template's journey may start when a population is spread over months, and
#: keep its label: (its oldest event, days ago; the oldest its first event may be, or None for a
#: journey that raises the same whenever it happened: it has ended, and every window it is
#: judged by is measured between its own events). Open referrals stay clear of the 18-week
#: referral-to-treatment deadline by two weeks (126 - 14 = 112 days); untriaged referrals have
#: no referral-to-treatment deadline under version 2. Templates not named here are judged
#: against `now` (an open referral young enough, a closure whose grace or wait has not ended)
#: and stay where they are.
SPREAD: dict[str, tuple[float, float | None]] = {
    "clean": (80, None),
    "multi_session_course": (110, None),
    "parallel_care": (110, None),
    "parallel_then_back": (120, None),
    "advice_then_referral": (120, None),
    "relapse_after_goals_met": (200, None),
    "person_declines": (150, None),
    "rejected_then_elsewhere": (120, None),
    "next_door_within_grace": (130, None),
    "advice_then_nothing": (150, None),
    "referrer_cancelled_back_and_forth": (140, None),
    "duplicate_not_counted": (160, None),
    "re_referral_seen": (150, None),
    "ping_pong_seen": (120, None),
    "returned_twice": (120, None),
    "frequent_contact": (170, None),
    "no_next_step": (135, None),
    "closed_doors_no_next_step": (140, None),
    "not_triaged": (35, None),
    "urgent_not_triaged": (12, None),
    "no_outcome": (35, 112),
    "not_booked": (70, 112),
    "no_activity": (80, 112),
}

#: the templates that raise nothing (ordinary care)
ORDINARY = (
    "clean",
    "multi_session_course",
    "parallel_care",
    "parallel_then_back",
    "advice_then_referral",
    "relapse_after_goals_met",
    "person_declines",
    "rtt_not_applicable",
    "rejected_then_elsewhere",
    "next_door_within_grace",
    "advice_then_nothing",
    "referrer_cancelled_back_and_forth",
    "duplicate_not_counted",
)

#: the demo population's mix: most journeys go well (half are ordinary care that has ended, a
#: tenth have just been referred); the rest share the loop and stall templates equally
DEMO_MIX: dict[str, float] = (
    {name: 0.5 / len(ORDINARY) for name in ORDINARY}
    | {"clean_open": 0.1}
    | {
        name: 0.4 / (len(TEMPLATES) - len(ORDINARY) - 1)
        for name in TEMPLATES
        if name not in ORDINARY and name != "clean_open"
    }
)

DAYS_PER_MONTH = 365.25 / 12


def generate(
    n: int,
    *,
    seed: int,
    now: datetime,
    patient_prefix: str = "pt_syn",
    months: int | None = None,
    mix: Mapping[str, float] | None = None,
) -> list[SyntheticJourney]:
    """n journeys, every template used, reproducible from the seed (the first k of n journeys
    are the k journeys of the same seed). `mix` weighs the templates (default: equally);
    `months` spreads the journeys whose labels allow it (`SPREAD`) over that many months.
    Each journey's events are in time order, as the referrals service would publish them."""
    rng = random.Random(seed)
    names = sorted(TEMPLATES)
    weights = [mix.get(name, 0.0) for name in names] if mix else None
    journeys = []
    for i in range(n):
        if i < len(names):
            name = names[i % len(names)]
        else:
            name = rng.choices(names, weights)[0] if weights else rng.choice(names)
        patient_id = f"{patient_prefix}_{seed}_{i:05d}"
        start = now
        if months and name in SPREAD:
            oldest, latest = SPREAD[name]
            reach = (
                months * DAYS_PER_MONTH if latest is None else min(latest, months * DAYS_PER_MONTH)
            )
            start = now - timedelta(days=rng.uniform(0, max(0.0, reach - oldest)))
        b = Builder(rng, start, patient_id)
        expected = TEMPLATES[name](b)
        events = sorted(b.events, key=lambda e: datetime.fromisoformat(e.occurred_at))
        journeys.append(
            SyntheticJourney(patient_id, name, events, expected, clear_cut=name not in AMBIGUOUS)
        )
    return journeys
