"""A seeded generator of synthetic patient journeys with known, labelled loops, stalls and
clean journeys, for testing the rules end to end and for benchmarks and demos.

Each journey is a list of referral events (times relative to `now`, in the past) and the set of
rules that must fire for it, no more and no fewer, under the default rules.toml. Margins keep
every labelled deadline clearly passed and every unlabelled one clearly not reached.

`waymark seed` publishes a population of them (`DEMO_MIX`, spread over 12 months) onto the
referrals topic as referral CloudEvents from `SYNTHETIC_SOURCE`, and the journeys tests publish
theirs through the same `publish`.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from aiokafka import AIOKafkaProducer

from shared.events.envelope import CloudEvent, make_event
from shared.events.referrals import EVENT_FOR_STATE, SYNTHETIC_SOURCE
from shared.outbox import event_bytes
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
        previous: str | None = None
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
                priority=priority, reason_codes=["279039007"], previous_state=previous,
                transition_reason=(reason or _default_reason(state)) if ended else None,
                appointment_at=appt.isoformat() if appt else None))
            previous = state
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


def re_referral_seen(b: _Builder) -> set[str]:
    """Not accepted or returned, referred straight back, then seen and discharged: the loop
    happened (and stays on record) though the journey has ended."""
    cat = b.rng.choice(sorted(CATEGORIES))
    first = b.jitter(60, 150)
    b.referral(cat, [("submitted", first), (b.rng.choice(["rejected", "returned"]), first - 3)])
    second = b.jitter(20, 50)
    b.referral(cat, [("submitted", second), ("accepted", second - 2), ("booked", second - 5),
                     ("attended", second - 12), ("discharged", second - 15)])
    return {"looping.re_referral"}


def ping_pong_seen(b: _Builder) -> set[str]:
    """A -> B -> A, and the second referral to A ends when the person misses the appointment
    and is discharged."""
    a, c = _two_categories(b)
    first = b.jitter(80, 150)
    b.referral(a, [("submitted", first), ("cancelled", first - 2)])
    mid = b.jitter(40, 60)
    b.referral(c, [("submitted", mid), ("cancelled", mid - 2)])
    last = b.jitter(20, 30)
    b.referral(a, [("submitted", last), ("accepted", last - 2), ("booked", last - 4),
                   ("did_not_attend", last - 10), ("discharged", last - 14)],
               reason="did-not-attend")
    return {"looping.ping_pong"}


TEMPLATES: dict[str, Callable[[_Builder], set[str]]] = {
    f.__name__: f for f in (clean, clean_open, not_triaged, urgent_not_triaged, not_booked,
                            no_outcome, no_activity, rtt_breach, re_referral, ping_pong,
                            returned_twice, frequent_contact, re_referral_seen, ping_pong_seen)}

#: how far back a template's journey may start when a population is spread over months, and
#: keep its label: (its oldest event, days ago; the oldest its first event may be, or None for a
#: journey that has ended and raises the same whenever it happened). Open referrals stay clear
#: of the 18-week referral-to-treatment deadline by two weeks (126 - 14 = 112 days); templates
#: not named here judge against `now` (recent referrals, returns or contacts in the last six
#: months) and stay where they are.
SPREAD: dict[str, tuple[float, float | None]] = {
    "clean": (80, None), "re_referral_seen": (150, None), "ping_pong_seen": (150, None),
    "not_triaged": (35, 112), "urgent_not_triaged": (12, 112), "no_outcome": (35, 112),
    "not_booked": (70, 112), "no_activity": (80, 112),
}

#: the demo population's mix: most journeys go well (half end cleanly, a tenth have just been
#: referred); the rest share the loop and stall templates equally
DEMO_MIX: dict[str, float] = {"clean": 0.5, "clean_open": 0.1} | {
    name: 0.4 / (len(TEMPLATES) - 2) for name in TEMPLATES if name not in ("clean", "clean_open")}

DAYS_PER_MONTH = 365.25 / 12


def generate(n: int, *, seed: int, now: datetime, patient_prefix: str = "pt_syn",
             months: int | None = None,
             mix: Mapping[str, float] | None = None) -> list[SyntheticJourney]:
    """n journeys, every template used, reproducible from the seed (the first k of n journeys
    are the k journeys of the same seed). `mix` weighs the templates (default: equally);
    `months` spreads the journeys whose labels allow it (`SPREAD`) over that many months."""
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
            reach = months * DAYS_PER_MONTH if latest is None \
                else min(latest, months * DAYS_PER_MONTH)
            start = now - timedelta(days=rng.uniform(0, max(0.0, reach - oldest)))
        b = _Builder(rng, start, patient_id)
        expected = TEMPLATES[name](b)
        journeys.append(SyntheticJourney(patient_id, name, b.events, expected))
    return journeys


# --- onto the referrals topic -----------------------------------------------------------------

def to_cloud_event(patient_id: str, e: JourneyEvent) -> CloudEvent:
    """The referral event the referrals service would have published, from the synthetic
    source (so nobody is messaged about a made-up referral)."""
    data = EVENT_FOR_STATE[e.state](
        referral_id=e.referral_id, from_org=e.from_org, to_org=e.to_org,
        to_service_id=e.to_service_id, service_category=e.service_category,
        reason_codes=e.reason_codes, priority=e.priority,  # type: ignore[arg-type]
        state=e.state, previous_state=e.previous_state, transition_reason=e.transition_reason,
        appointment_at=datetime.fromisoformat(e.appointment_at) if e.appointment_at else None)
    event = make_event(data, subject=patient_id, event_id=e.event_id,
                       time=datetime.fromisoformat(e.occurred_at))
    return event.model_copy(update={"source": SYNTHETIC_SOURCE})


async def publish(journeys: Sequence[SyntheticJourney], *, bootstrap_servers: str,
                  topic: str) -> int:
    """Publish every journey's events, in order, keyed by the patient's pseudonymous id (one
    patient's events stay in order on one partition); the number published. Event ids come
    from the generator's seed, so publishing the same journeys again changes nothing
    downstream: every consumer skips an event id it has seen."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers, acks="all",
                                enable_idempotence=True, linger_ms=5)
    sends = []
    await producer.start()
    try:
        for j in journeys:
            for e in j.events:
                event = to_cloud_event(j.patient_id, e)
                sends.append(await producer.send(
                    topic, value=event_bytes(event.model_dump(mode="json")),
                    key=j.patient_id.encode()))
        await asyncio.gather(*sends)
    finally:
        await producer.stop()
    return len(sends)
