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
#: the categories whose standard is referral to treatment (rules.toml
#: `[stall.rtt.weeks_by_category]`); the others have none
RTT_CATEGORIES = ("pain_management_programme", "talking_therapies_ltc")

# Ending reasons by what they mean for the journey (shared/vocabulary.py CLOSURE_OUTCOMES)
TREATED = ("treatment-completed", "goals-met", "self-management", "onward-referral")
ADVICE = ("advice-and-guidance-given", "manage-in-primary-care")
NOT_ACCEPTED = (
    "not-appropriate-for-service",
    "does-not-meet-criteria",
    "service-unavailable",
    "insufficient-information",
)
RETURNED_NOT_TREATED = ("refer-elsewhere", "insufficient-information")
REFERRER_CANCELLED = ("no-longer-required", "referred-in-error")


@dataclass
class SyntheticJourney:
    patient_id: str
    template: str
    events: list[JourneyEvent] = field(default_factory=list)
    expected_rules: set[str] = field(default_factory=set)
    #: False for the templates in `AMBIGUOUS`
    clear_cut: bool = True


class _Builder:
    def __init__(self, rng: random.Random, now: datetime, patient_id: str) -> None:
        self.rng, self.now, self.patient_id = rng, now, patient_id
        self.events: list[JourneyEvent] = []
        self.n = 0

    def referral(
        self,
        category: str,
        steps: list[tuple[str, float]],
        *,
        priority: str = "routine",
        reason: str | None = None,
        appointment_in_days: float | None = None,
    ) -> str:
        """Add a referral; steps are (state, days ago); `reason` is its ending's."""
        self.n += 1
        rid = str(uuid.UUID(int=self.rng.getrandbits(128)))
        service, org = CATEGORIES[category]
        previous: str | None = None
        for state, days_ago in steps:
            at = self.now - timedelta(days=days_ago)
            appt = None
            if state == "booked":
                appt = (
                    self.now + timedelta(days=appointment_in_days)
                    if appointment_in_days is not None
                    else at + timedelta(days=3)
                )
            ended = state in ("rejected", "returned", "discharged", "cancelled")
            self.events.append(
                JourneyEvent(
                    event_id=str(uuid.UUID(int=self.rng.getrandbits(128))),
                    event_type=f"uk.waymark.referral.{state.replace('_', '-')}",
                    occurred_at=at.isoformat(),
                    referral_id=rid,
                    state=state,
                    from_org="GP-A81001",
                    to_org=org,
                    to_service_id=service,
                    service_category=category,
                    priority=priority,
                    reason_codes=["279039007"],
                    previous_state=previous,
                    transition_reason=(reason or _default_reason(state)) if ended else None,
                    appointment_at=appt.isoformat() if appt else None,
                )
            )
            previous = state
        return rid

    def course(
        self, category: str, start: float, *, sessions: int = 1, reason: str | None = None
    ) -> float:
        """A referral accepted, seen `sessions` times a week apart and discharged treated
        (`reason`, default one of TREATED); the discharge, days ago."""
        steps = [("submitted", start), ("accepted", start - 2)]
        at = start - 4
        for _ in range(sessions):
            steps += [("booked", at), ("attended", at - 3)]
            at -= 7
        end = at + 7 - 3 - 2  # two days after the last session
        steps.append(("discharged", end))
        self.referral(category, steps, reason=reason or self.rng.choice(TREATED))
        return end

    #: how long each way of closing a door takes from submission, days
    DOOR_DAYS = {"rejected": 3, "returned": 3, "cancelled": 4, "discharged": 12}

    def closed_door(
        self,
        category: str,
        *,
        start: float | None = None,
        end: float | None = None,
        returned_ok: bool = True,
    ) -> tuple[float, float, str]:
        """A referral ending not treated (a door closed): not accepted, returned to be referred
        elsewhere, discharged after missed appointments or cancelled because the service was
        withdrawn; submitted `start` days ago or ending `end` days ago. (submitted, ended, days
        ago; the ending state)."""
        kinds = ["rejected", "discharged", "cancelled"] + (["returned"] if returned_ok else [])
        kind = self.rng.choice(kinds)
        if start is None:
            assert end is not None
            start = end + self.DOOR_DAYS[kind]
        end = start - self.DOOR_DAYS[kind]
        if kind == "rejected":
            self.referral(
                category,
                [("submitted", start), ("rejected", end)],
                reason=self.rng.choice(NOT_ACCEPTED),
            )
        elif kind == "returned":
            self.referral(
                category,
                [("submitted", start), ("returned", end)],
                reason=self.rng.choice(RETURNED_NOT_TREATED),
            )
        elif kind == "cancelled":
            self.referral(
                category,
                [("submitted", start), ("accepted", start - 2), ("cancelled", end)],
                reason="service-withdrawn",
            )
        else:
            self.referral(
                category,
                [
                    ("submitted", start),
                    ("accepted", start - 2),
                    ("booked", start - 4),
                    ("did_not_attend", start - 7),
                    ("discharged", end),
                ],
                reason="did-not-attend-discharged",
            )
        return start, end, kind

    def doors(self, categories: Sequence[str], last_end: float) -> None:
        """Doors closed one after another by different services, the next tried 2-8 days
        after the last closed; the last closing `last_end` days ago. One at most is a return
        (two returns are `returned_repeatedly` as well)."""
        end, returned = last_end, False
        for cat in reversed(categories):
            start, _, kind = self.closed_door(cat, end=end, returned_ok=not returned)
            returned = returned or kind == "returned"
            end = start + self.jitter(2, 8)

    def jitter(self, lo: float, hi: float) -> float:
        return round(self.rng.uniform(lo, hi), 2)

    def categories(self, k: int, among: Sequence[str] | None = None) -> list[str]:
        return self.rng.sample(sorted(among or CATEGORIES), k)


def _default_reason(state: str) -> str:
    return {
        "rejected": "does-not-meet-criteria",
        "returned": "advice-and-guidance-given",
        "discharged": "treatment-completed",
        "cancelled": "patient-request",
    }[state]


# Each template adds events and returns the rules it must raise. "Days ago" keep margins: a
# triage limit of 10 working days is at most 19 calendar days (over Christmas and New Year);
# 6 weeks is 42 days; 18 weeks is 126 days; no next step waits 8 weeks (56 days); closed
# doors wait a grace of 14 days. A not-treated ending followed by a next step is followed
# within 50 days, so no "no next step" alert was ever due before it.

# --- ordinary care: raises nothing ---------------------------------------------------------


def clean(b: _Builder) -> set[str]:
    b.course(b.rng.choice(sorted(CATEGORIES)), b.jitter(30, 80))
    return set()


def clean_open(b: _Builder) -> set[str]:
    b.referral(b.rng.choice(sorted(CATEGORIES)), [("submitted", b.jitter(0.5, 3))])
    return set()


def multi_session_course(b: _Builder) -> set[str]:
    """One referral, several booked and attended sessions, discharged with treatment
    completed: sessions within one episode are not contacts (issue #15 defect 2)."""
    b.course(
        b.rng.choice(sorted(CATEGORIES)),
        b.jitter(60, 110),
        sessions=b.rng.randint(3, 6),
        reason="treatment-completed",
    )
    return set()


def parallel_care(b: _Builder) -> set[str]:
    """Care in two categories at once, both treated."""
    a, c = b.categories(2)
    start = b.jitter(60, 110)
    b.course(a, start, sessions=b.rng.randint(1, 4))
    b.course(c, start - b.jitter(1, 10), sessions=b.rng.randint(1, 4))
    return set()


def parallel_then_back(b: _Builder) -> set[str]:
    """A returned with advice while B was still open, then A's kind of service again while B
    was still open, both treated: parallel care, not ping-pong."""
    a, c = b.categories(2)
    start = b.jitter(80, 120)
    b.referral(a, [("submitted", start), ("returned", start - 3)], reason=b.rng.choice(ADVICE))
    b.course(c, start - 1, sessions=4)  # open until start - 27 days ago
    b.course(a, start - b.jitter(8, 12))
    return set()


def advice_then_referral(b: _Builder) -> set[str]:
    """Returned with advice and guidance, referred as advised, accepted, treated and
    discharged with treatment completed: the designed pathway (issue #15 defect 2)."""
    cat = b.rng.choice(sorted(CATEGORIES))
    first = b.jitter(70, 120)
    b.referral(
        cat, [("submitted", first), ("returned", first - 3)], reason="advice-and-guidance-given"
    )
    b.course(cat, first - 3 - b.jitter(7, 40), reason="treatment-completed")
    return set()


def relapse_after_goals_met(b: _Builder) -> set[str]:
    """Discharged with goals met, referred again weeks later (83 days in issue #15): a relapse
    after treatment is not a loop."""
    cat = b.rng.choice(sorted(CATEGORIES))
    first = b.jitter(150, 200)
    end = b.course(cat, first, sessions=b.rng.randint(1, 3), reason="goals-met")
    b.course(cat, end - b.jitter(42, 100))
    return set()


def person_declines(b: _Builder) -> set[str]:
    """The person's own choice, and nothing after: not a closed door and no next step owed."""
    cat = b.rng.choice(sorted(CATEGORIES))
    start = b.jitter(70, 150)
    how = b.rng.choice(["rejected", "discharged", "cancelled"])
    if how == "rejected":
        b.referral(cat, [("submitted", start), ("rejected", start - 3)], reason="patient-declined")
    elif how == "discharged":
        b.referral(
            cat,
            [
                ("submitted", start),
                ("accepted", start - 2),
                ("booked", start - 4),
                ("attended", start - 7),
                ("discharged", start - 9),
            ],
            reason="patient-declined-further-care",
        )
    else:
        b.referral(
            cat,
            [("submitted", start), ("accepted", start - 2), ("cancelled", start - 5)],
            reason="patient-request",
        )
    return set()


def rtt_not_applicable(b: _Builder) -> set[str]:
    """Accepted 19-21 weeks ago, a missed appointment, rebooked: in a category with no
    referral-to-treatment standard (issue #15 defect 4), nothing is overdue."""
    start = b.jitter(135, 150)
    cat = b.rng.choice([c for c in sorted(CATEGORIES) if c not in RTT_CATEGORIES])
    b.referral(
        cat,
        [
            ("submitted", start),
            ("accepted", start - 3),
            ("booked", start - 10),
            ("did_not_attend", start - 20),
            ("booked", 2.0),
        ],
        appointment_in_days=b.jitter(5, 20),
    )
    return set()


def rejected_then_elsewhere(b: _Builder) -> set[str]:
    """Not accepted, and referred to another kind of service within days, where the person is
    treated: the next step was taken (one closed door, not closed doors)."""
    a, c = b.categories(2)
    _, end, _ = b.closed_door(a, start=b.jitter(60, 120))
    b.course(c, end - b.jitter(1, 10))
    return set()


def next_door_within_grace(b: _Builder) -> set[str]:
    """Two services closed the door within weeks, and a third was tried within the 14 days'
    grace, and treated the person: not closed doors."""
    a, c, d = b.categories(3)
    _, end, kind = b.closed_door(a, start=b.jitter(90, 130))
    _, end2, _ = b.closed_door(c, start=end - b.jitter(2, 20), returned_ok=kind != "returned")
    b.course(d, end2 - b.jitter(2, 12))
    return set()


def advice_then_nothing(b: _Builder) -> set[str]:
    """Returned with advice and guidance months ago, and nothing since: advice is for the
    referrer to act on, not a closed door, so no alert (ambiguous: see AMBIGUOUS)."""
    start = b.jitter(70, 150)
    b.referral(
        b.rng.choice(sorted(CATEGORIES)),
        [("submitted", start), ("returned", start - 3)],
        reason=b.rng.choice(ADVICE),
    )
    return set()


def referrer_cancelled_back_and_forth(b: _Builder) -> set[str]:
    """A cancelled by the referrer, B cancelled by the referrer, then A's kind of service
    again, which treats the person: no service closed a door, so not ping-pong."""
    a, c = b.categories(2)
    first = b.jitter(90, 140)
    b.referral(
        a, [("submitted", first), ("cancelled", first - 2)], reason=b.rng.choice(REFERRER_CANCELLED)
    )
    mid = first - b.jitter(10, 30)
    b.referral(
        c, [("submitted", mid), ("cancelled", mid - 2)], reason=b.rng.choice(REFERRER_CANCELLED)
    )
    b.course(a, mid - 2 - b.jitter(5, 30))
    return set()


def duplicate_not_counted(b: _Builder) -> set[str]:
    """Three episodes of care and a duplicate referral, cancelled as a duplicate the same day:
    administrative endings are not episodes, so not frequent contact (ambiguous: see
    AMBIGUOUS)."""
    cats = b.categories(3)
    start = b.jitter(120, 160)
    for k, cat in enumerate(cats):
        at = start - 35 * k
        b.course(cat, at)
        if k == 2:
            b.referral(
                cat, [("submitted", at - 1), ("cancelled", at - 1.5)], reason="duplicate-referral"
            )
    return set()


# --- stalls -------------------------------------------------------------------------------


def not_triaged(b: _Builder) -> set[str]:
    b.referral(b.rng.choice(sorted(CATEGORIES)), [("submitted", b.jitter(20, 35))])
    return {"stalled.not_triaged"}


def urgent_not_triaged(b: _Builder) -> set[str]:
    b.referral(
        b.rng.choice(sorted(CATEGORIES)), [("submitted", b.jitter(7, 12))], priority="urgent"
    )
    return {"stalled.not_triaged"}


def not_booked(b: _Builder) -> set[str]:
    start = b.jitter(50, 70)
    b.referral(b.rng.choice(sorted(CATEGORIES)), [("submitted", start), ("accepted", start - 2)])
    return {"stalled.not_booked"}


def no_outcome(b: _Builder) -> set[str]:
    start = b.jitter(25, 35)
    b.referral(
        b.rng.choice(sorted(CATEGORIES)),
        [("submitted", start), ("accepted", start - 2), ("booked", start - 4)],
        appointment_in_days=-b.jitter(8, 14),
    )
    return {"stalled.no_outcome"}


def no_activity(b: _Builder) -> set[str]:
    start = b.jitter(60, 80)
    b.referral(
        b.rng.choice(sorted(CATEGORIES)),
        [("submitted", start), ("accepted", start - 2), ("on_hold", start - 5)],
    )
    return {"stalled.no_activity"}


def rtt_breach(b: _Builder) -> set[str]:
    """Accepted 19-21 weeks ago by a service whose standard is referral to treatment, not
    seen (a missed appointment), rebooked."""
    start = b.jitter(135, 150)
    steps = [
        ("submitted", start),
        ("accepted", start - 3),
        ("booked", start - 10),
        ("did_not_attend", start - 20),
        ("booked", 2.0),
    ]
    b.referral(b.rng.choice(RTT_CATEGORIES), steps, appointment_in_days=b.jitter(5, 20))
    return {"stalled.rtt_breach"}


def no_next_step(b: _Builder) -> set[str]:
    """A door closed 60-120 days ago (not accepted, returned to be referred elsewhere,
    discharged after missed appointments, the service withdrawn), and nothing since."""
    b.closed_door(b.rng.choice(sorted(CATEGORIES)), end=b.jitter(60, 120))
    return {"stalled.no_next_step"}


# --- loops --------------------------------------------------------------------------------


def re_referral(b: _Builder) -> set[str]:
    """Referred back to the service that closed the door within the last seven weeks."""
    cat = b.rng.choice(sorted(CATEGORIES))
    again = b.jitter(0.5, 3)
    b.closed_door(cat, end=again + b.jitter(20, 45))
    b.referral(cat, [("submitted", again)])
    return {"looping.re_referral"}


def re_referral_seen(b: _Builder) -> set[str]:
    """Not accepted or returned, referred straight back, then seen and discharged: the loop
    happened (and stays on record) though the journey has ended."""
    cat = b.rng.choice(sorted(CATEGORIES))
    _, end, _ = b.closed_door(cat, start=b.jitter(80, 150))
    b.course(cat, end - b.jitter(3, 45), sessions=b.rng.randint(1, 3))
    return {"looping.re_referral"}


def _ping_pong(b: _Builder, a: str, c: str, last: float) -> None:
    """A returned with advice, then B (another category) closed the door, then A's kind of
    service again `last` days ago."""
    b_start, _, _ = b.closed_door(c, end=last + b.jitter(5, 40), returned_ok=False)
    a_end = b_start + b.jitter(2, 10)
    b.referral(a, [("submitted", a_end + 3), ("returned", a_end)], reason=b.rng.choice(ADVICE))


def ping_pong(b: _Builder) -> set[str]:
    """A -> B -> A: A returned with advice, B closed the door, A's kind of service again."""
    a, c = b.categories(2)
    last = b.jitter(0.5, 3)
    _ping_pong(b, a, c, last)
    b.referral(a, [("submitted", last)])
    return {"looping.ping_pong"}


def ping_pong_seen(b: _Builder) -> set[str]:
    """A -> B -> A, and the second referral to A is accepted, seen and discharged."""
    a, c = b.categories(2)
    last = b.jitter(20, 40)
    _ping_pong(b, a, c, last)
    b.course(a, last)
    return {"looping.ping_pong"}


def ping_pong_closed_doors(b: _Builder) -> set[str]:
    """A and B each closed the door (not treated) weeks apart and the person went back to A's
    kind of service after the grace: ping-pong, a re-referral to A and closed doors all hold
    (ambiguous: see AMBIGUOUS)."""
    a, c = b.categories(2)
    last = b.jitter(0.5, 3)
    # B closes past the 14 days' grace before A again, within the 8 weeks
    b_start, _, _ = b.closed_door(c, end=last + b.jitter(16, 50), returned_ok=False)
    b.closed_door(a, end=b_start + b.jitter(2, 10), returned_ok=False)
    b.referral(a, [("submitted", last)])
    return {"looping.ping_pong", "looping.re_referral", "looping.closed_doors"}


def returned_twice(b: _Builder) -> set[str]:
    """Returned to the referrer twice within six months, each time with advice."""
    a, c = b.categories(2)
    first = b.jitter(60, 120)
    b.referral(a, [("submitted", first), ("returned", first - 3)], reason=b.rng.choice(ADVICE))
    second = b.jitter(10, 40)
    b.referral(c, [("submitted", second), ("returned", second - 2)], reason=b.rng.choice(ADVICE))
    return {"looping.returned_repeatedly"}


def frequent_contact(b: _Builder) -> set[str]:
    """Four or five episodes of care within six months, each treated: episodes, however few
    sessions each, are what count."""
    k = b.rng.randint(4, 5)
    cats = [b.rng.choice(sorted(CATEGORIES)) for _ in range(k)]
    start = b.jitter(130, 170)
    for i, cat in enumerate(cats):
        b.course(cat, start - 28 * i, sessions=b.rng.randint(1, 2))
    return {"looping.frequent_contact"}


def closed_doors(b: _Builder) -> set[str]:
    """Two or three services of different kinds each closed the door within weeks, the last
    16-50 days ago, and nothing since (no next step is not yet due)."""
    b.doors(b.categories(b.rng.randint(2, 3)), b.jitter(16, 50))
    return {"looping.closed_doors"}


def closed_doors_no_next_step(b: _Builder) -> set[str]:
    """Closed doors, the last 60-90 days ago, and nothing since: both alerts."""
    b.doors(b.categories(b.rng.randint(2, 3)), b.jitter(60, 90))
    return {"looping.closed_doors", "stalled.no_next_step"}


TEMPLATES: dict[str, Callable[[_Builder], set[str]]] = {
    f.__name__: f
    for f in (
        clean,
        clean_open,
        multi_session_course,
        parallel_care,
        parallel_then_back,
        advice_then_referral,
        relapse_after_goals_met,
        person_declines,
        rtt_not_applicable,
        rejected_then_elsewhere,
        next_door_within_grace,
        advice_then_nothing,
        referrer_cancelled_back_and_forth,
        duplicate_not_counted,
        not_triaged,
        urgent_not_triaged,
        not_booked,
        no_outcome,
        no_activity,
        rtt_breach,
        no_next_step,
        re_referral,
        re_referral_seen,
        ping_pong,
        ping_pong_seen,
        ping_pong_closed_doors,
        returned_twice,
        frequent_contact,
        closed_doors,
        closed_doors_no_next_step,
    )
}

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
        b = _Builder(rng, start, patient_id)
        expected = TEMPLATES[name](b)
        events = sorted(b.events, key=lambda e: datetime.fromisoformat(e.occurred_at))
        journeys.append(
            SyntheticJourney(patient_id, name, events, expected, clear_cut=name not in AMBIGUOUS)
        )
    return journeys


# --- onto the referrals topic -----------------------------------------------------------------


def to_cloud_event(patient_id: str, e: JourneyEvent) -> CloudEvent:
    """The referral event the referrals service would have published, from the synthetic
    source (so nobody is messaged about a made-up referral)."""
    data = EVENT_FOR_STATE[e.state](
        referral_id=e.referral_id,
        from_org=e.from_org,
        to_org=e.to_org,
        to_service_id=e.to_service_id,
        service_category=e.service_category,
        reason_codes=e.reason_codes,
        priority=e.priority,  # type: ignore[arg-type]
        state=e.state,
        previous_state=e.previous_state,
        transition_reason=e.transition_reason,
        appointment_at=datetime.fromisoformat(e.appointment_at) if e.appointment_at else None,
    )
    event = make_event(
        data, subject=patient_id, event_id=e.event_id, time=datetime.fromisoformat(e.occurred_at)
    )
    return event.model_copy(update={"source": SYNTHETIC_SOURCE})


async def publish(
    journeys: Sequence[SyntheticJourney], *, bootstrap_servers: str, topic: str
) -> int:
    """Publish every journey's events, in order, keyed by the patient's pseudonymous id (one
    patient's events stay in order on one partition); the number published. Event ids come
    from the generator's seed, so publishing the same journeys again changes nothing
    downstream: every consumer skips an event id it has seen."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers, acks="all", enable_idempotence=True, linger_ms=5
    )
    sends = []
    await producer.start()
    try:
        for j in journeys:
            for e in j.events:
                event = to_cloud_event(j.patient_id, e)
                sends.append(
                    await producer.send(
                        topic,
                        value=event_bytes(event.model_dump(mode="json")),
                        key=j.patient_id.encode(),
                    )
                )
        await asyncio.gather(*sends)
    finally:
        await producer.stop()
    return len(sends)
