"""A seeded generator of synthetic patient journeys with known, labelled loops, stalls and
clean journeys, for testing the rules end to end and for benchmarks and demos.

Each journey is a list of referral events (times relative to `now`, in the past) and the set of
rules that must fire for it, no more and no fewer, under the default rules.toml. Margins keep
every labelled deadline clearly passed and every unlabelled one clearly not reached.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from workflows.journeys.state import JourneyEvent

CATEGORIES = {
    "pain_management_programme": ("svc-pain-mgmt-programme", "PAIN-RTH"),
    "talking_therapies_ltc": ("svc-talking-therapies-ltc", "TT-TALK1"),
    "msk_physiotherapy": ("svc-msk-physio", "PHYSIO-1"),
    "social_prescribing": ("svc-social-prescribing", "SP-LINK1"),
    "peer_support": ("svc-peer-support", "PEER-1"),
}


@dataclass
class SyntheticJourney:
    patient_id: str
    template: str
    events: list[JourneyEvent] = field(default_factory=list)
    expected_rules: set[str] = field(default_factory=set)


class _Builder:
    def __init__(self, rng: random.Random, now: datetime, patient_id: str) -> None:
        self.rng, self.now, self.patient_id = rng, now, patient_id
        self.events: list[JourneyEvent] = []
        self.n = 0

    def referral(self, category: str, steps: list[tuple[str, float]], *,
                 priority: str = "routine", reason: str | None = None,
                 appointment_in_days: float | None = None) -> str:
        """Add a referral; steps are (state, days ago)."""
        self.n += 1
        rid = str(uuid.UUID(int=self.rng.getrandbits(128)))
        service, org = CATEGORIES[category]
        for state, days_ago in steps:
            at = self.now - timedelta(days=days_ago)
            appt = None
            if state == "booked":
                appt = (self.now + timedelta(days=appointment_in_days)
                        if appointment_in_days is not None else at + timedelta(days=3))
            ended = state in ("rejected", "returned", "discharged", "cancelled")
            self.events.append(JourneyEvent(
                event_id=str(uuid.UUID(int=self.rng.getrandbits(128))),
                event_type=f"uk.waymark.referral.{state.replace('_', '-')}",
                occurred_at=at.isoformat(), referral_id=rid, state=state, from_org="GP-A81001",
                to_org=org, to_service_id=service, service_category=category,
                priority=priority, reason_codes=["279039007"],
                transition_reason=(reason or _default_reason(state)) if ended else None,
                appointment_at=appt.isoformat() if appt else None))
        return rid

    def jitter(self, lo: float, hi: float) -> float:
        return round(self.rng.uniform(lo, hi), 2)


def _default_reason(state: str) -> str:
    return {"rejected": "does-not-meet-criteria", "returned": "advice-and-guidance-given",
            "discharged": "treatment-completed", "cancelled": "patient-request"}[state]


def _two_categories(b: _Builder) -> tuple[str, str]:
    a, c = b.rng.sample(sorted(CATEGORIES), 2)
    return a, c


# Each template adds events and returns the rules it must raise. "Days ago" keep margins: a
# triage limit of 10 working days is at most 16 calendar days (with bank holidays); 6 weeks is
# 42 days; 18 weeks is 126 days.
def clean(b: _Builder) -> set[str]:
    cat = b.rng.choice(sorted(CATEGORIES))
    start = b.jitter(30, 80)
    b.referral(cat, [("submitted", start), ("accepted", start - 3), ("booked", start - 6),
                     ("attended", start - 10), ("discharged", start - 12)])
    return set()


def clean_open(b: _Builder) -> set[str]:
    cat = b.rng.choice(sorted(CATEGORIES))
    b.referral(cat, [("submitted", b.jitter(0.5, 3))])
    return set()


def not_triaged(b: _Builder) -> set[str]:
    b.referral(b.rng.choice(sorted(CATEGORIES)), [("submitted", b.jitter(20, 35))])
    return {"stalled.not_triaged"}


def urgent_not_triaged(b: _Builder) -> set[str]:
    b.referral(b.rng.choice(sorted(CATEGORIES)), [("submitted", b.jitter(7, 12))],
               priority="urgent")
    return {"stalled.not_triaged"}


def not_booked(b: _Builder) -> set[str]:
    cat = b.rng.choice([c for c in CATEGORIES if c != "talking_therapies_ltc"])
    start = b.jitter(50, 70)
    b.referral(cat, [("submitted", start), ("accepted", start - 2)])
    return {"stalled.not_booked"}


def no_outcome(b: _Builder) -> set[str]:
    start = b.jitter(25, 35)
    b.referral(b.rng.choice(sorted(CATEGORIES)),
               [("submitted", start), ("accepted", start - 2), ("booked", start - 4)],
               appointment_in_days=-b.jitter(8, 14))
    return {"stalled.no_outcome"}


def no_activity(b: _Builder) -> set[str]:
    start = b.jitter(60, 80)
    b.referral(b.rng.choice(sorted(CATEGORIES)),
               [("submitted", start), ("accepted", start - 2), ("on_hold", start - 5)])
    return {"stalled.no_activity"}


def rtt_breach(b: _Builder) -> set[str]:
    start = b.jitter(135, 150)
    steps = [("submitted", start), ("accepted", start - 3), ("booked", start - 10),
             ("did_not_attend", start - 20), ("booked", 2.0)]
    b.referral(b.rng.choice(sorted(CATEGORIES)), steps, appointment_in_days=b.jitter(5, 20))
    return {"stalled.rtt_breach"}


def re_referral(b: _Builder) -> set[str]:
    cat = b.rng.choice(sorted(CATEGORIES))
    first = b.jitter(60, 150)
    ending = b.rng.choice(["rejected", "returned", "discharged"])
    if ending == "discharged":
        b.referral(cat, [("submitted", first), ("accepted", first - 2), ("booked", first - 4),
                         ("attended", first - 8), ("discharged", first - 10)])
    else:
        b.referral(cat, [("submitted", first), (ending, first - 3)])
    b.referral(cat, [("submitted", b.jitter(0.5, 3))])
    return {"looping.re_referral"}


def ping_pong(b: _Builder) -> set[str]:
    a, c = _two_categories(b)
    first = b.jitter(80, 150)
    b.referral(a, [("submitted", first), ("cancelled", first - 2)])
    mid = b.jitter(30, 60)
    b.referral(c, [("submitted", mid), ("cancelled", mid - 2)])
    b.referral(a, [("submitted", b.jitter(0.5, 3))])
    return {"looping.ping_pong"}


def returned_twice(b: _Builder) -> set[str]:
    a, c = _two_categories(b)
    first = b.jitter(60, 120)
    b.referral(a, [("submitted", first), ("returned", first - 3)])
    second = b.jitter(10, 40)
    b.referral(c, [("submitted", second), ("returned", second - 2)])
    return {"looping.returned_repeatedly"}


def frequent_contact(b: _Builder) -> set[str]:
    a, c = _two_categories(b)
    for cat, start in ((a, b.jitter(100, 150)), (c, b.jitter(20, 60))):
        b.referral(cat, [("submitted", start), ("accepted", start - 1), ("booked", start - 2),
                         ("attended", start - 5), ("discharged", start - 6)])
    return {"looping.frequent_contact"}


TEMPLATES: dict[str, Callable[[_Builder], set[str]]] = {
    f.__name__: f for f in (clean, clean_open, not_triaged, urgent_not_triaged, not_booked,
                            no_outcome, no_activity, rtt_breach, re_referral, ping_pong,
                            returned_twice, frequent_contact)}


def generate(n: int, *, seed: int, now: datetime,
             patient_prefix: str = "pt_syn") -> list[SyntheticJourney]:
    """n journeys, every template used, reproducible from the seed."""
    rng = random.Random(seed)
    names = sorted(TEMPLATES)
    journeys = []
    for i in range(n):
        name = names[i % len(names)] if i < len(names) else rng.choice(names)
        patient_id = f"{patient_prefix}_{seed}_{i:05d}"
        b = _Builder(rng, now, patient_id)
        expected = TEMPLATES[name](b)
        journeys.append(SyntheticJourney(patient_id, name, b.events, expected))
    return journeys
