"""The synthetic journey templates: each adds a journey's events to a builder and returns
the alert rules it must raise, no more and no fewer."""

from __future__ import annotations

from collections.abc import Callable

from devtools.synthetic.builder import (
    ADVICE,
    CATEGORIES,
    REFERRER_CANCELLED,
    RTT_CATEGORIES,
    Builder,
)

# Each template adds events and returns the rules it must raise. "Days ago" keep margins: a
# triage limit of 10 working days is at most 19 calendar days (over Christmas and New Year);
# 6 weeks is 42 days; 18 weeks is 126 days; no next step waits 8 weeks (56 days); closed
# doors wait a grace of 14 days. A not-treated ending followed by a next step is followed
# within 50 days, so no "no next step" alert was ever due before it.

# --- ordinary care: raises nothing ---------------------------------------------------------


def clean(b: Builder) -> set[str]:
    b.course(b.rng.choice(sorted(CATEGORIES)), b.jitter(30, 80))
    return set()


def clean_open(b: Builder) -> set[str]:
    b.referral(b.rng.choice(sorted(CATEGORIES)), [("submitted", b.jitter(0.5, 3))])
    return set()


def multi_session_course(b: Builder) -> set[str]:
    """One referral, several booked and attended sessions, discharged with treatment
    completed: sessions within one episode are not contacts (issue #15 defect 2)."""
    b.course(
        b.rng.choice(sorted(CATEGORIES)),
        b.jitter(60, 110),
        sessions=b.rng.randint(3, 6),
        reason="treatment-completed",
    )
    return set()


def parallel_care(b: Builder) -> set[str]:
    """Care in two categories at once, both treated."""
    a, c = b.categories(2)
    start = b.jitter(60, 110)
    b.course(a, start, sessions=b.rng.randint(1, 4))
    b.course(c, start - b.jitter(1, 10), sessions=b.rng.randint(1, 4))
    return set()


def parallel_then_back(b: Builder) -> set[str]:
    """A returned with advice while B was still open, then A's kind of service again while B
    was still open, both treated: parallel care, not ping-pong."""
    a, c = b.categories(2)
    start = b.jitter(80, 120)
    b.referral(a, [("submitted", start), ("returned", start - 3)], reason=b.rng.choice(ADVICE))
    b.course(c, start - 1, sessions=4)  # open until start - 27 days ago
    b.course(a, start - b.jitter(8, 12))
    return set()


def advice_then_referral(b: Builder) -> set[str]:
    """Returned with advice and guidance, referred as advised, accepted, treated and
    discharged with treatment completed: the designed pathway (issue #15 defect 2)."""
    cat = b.rng.choice(sorted(CATEGORIES))
    first = b.jitter(70, 120)
    b.referral(
        cat, [("submitted", first), ("returned", first - 3)], reason="advice-and-guidance-given"
    )
    b.course(cat, first - 3 - b.jitter(7, 40), reason="treatment-completed")
    return set()


def relapse_after_goals_met(b: Builder) -> set[str]:
    """Discharged with goals met, referred again weeks later (83 days in issue #15): a relapse
    after treatment is not a loop."""
    cat = b.rng.choice(sorted(CATEGORIES))
    first = b.jitter(150, 200)
    end = b.course(cat, first, sessions=b.rng.randint(1, 3), reason="goals-met")
    b.course(cat, end - b.jitter(42, 100))
    return set()


def person_declines(b: Builder) -> set[str]:
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


def rtt_not_applicable(b: Builder) -> set[str]:
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


def rejected_then_elsewhere(b: Builder) -> set[str]:
    """Not accepted, and referred to another kind of service within days, where the person is
    treated: the next step was taken (one closed door, not closed doors)."""
    a, c = b.categories(2)
    _, end, _ = b.closed_door(a, start=b.jitter(60, 120))
    b.course(c, end - b.jitter(1, 10))
    return set()


def next_door_within_grace(b: Builder) -> set[str]:
    """Two services closed the door within weeks, and a third was tried within the 14 days'
    grace, and treated the person: not closed doors."""
    a, c, d = b.categories(3)
    _, end, kind = b.closed_door(a, start=b.jitter(90, 130))
    _, end2, _ = b.closed_door(c, start=end - b.jitter(2, 20), returned_ok=kind != "returned")
    b.course(d, end2 - b.jitter(2, 12))
    return set()


def advice_then_nothing(b: Builder) -> set[str]:
    """Returned with advice and guidance months ago, and nothing since: advice is for the
    referrer to act on, not a closed door, so no alert (ambiguous: see AMBIGUOUS)."""
    start = b.jitter(70, 150)
    b.referral(
        b.rng.choice(sorted(CATEGORIES)),
        [("submitted", start), ("returned", start - 3)],
        reason=b.rng.choice(ADVICE),
    )
    return set()


def referrer_cancelled_back_and_forth(b: Builder) -> set[str]:
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


def duplicate_not_counted(b: Builder) -> set[str]:
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


def not_triaged(b: Builder) -> set[str]:
    b.referral(b.rng.choice(sorted(CATEGORIES)), [("submitted", b.jitter(20, 35))])
    return {"stalled.not_triaged"}


def urgent_not_triaged(b: Builder) -> set[str]:
    b.referral(
        b.rng.choice(sorted(CATEGORIES)), [("submitted", b.jitter(7, 12))], priority="urgent"
    )
    return {"stalled.not_triaged"}


def not_booked(b: Builder) -> set[str]:
    start = b.jitter(50, 70)
    b.referral(b.rng.choice(sorted(CATEGORIES)), [("submitted", start), ("accepted", start - 2)])
    return {"stalled.not_booked"}


def no_outcome(b: Builder) -> set[str]:
    start = b.jitter(25, 35)
    b.referral(
        b.rng.choice(sorted(CATEGORIES)),
        [("submitted", start), ("accepted", start - 2), ("booked", start - 4)],
        appointment_in_days=-b.jitter(8, 14),
    )
    return {"stalled.no_outcome"}


def no_activity(b: Builder) -> set[str]:
    start = b.jitter(60, 80)
    b.referral(
        b.rng.choice(sorted(CATEGORIES)),
        [("submitted", start), ("accepted", start - 2), ("on_hold", start - 5)],
    )
    return {"stalled.no_activity"}


def rtt_breach(b: Builder) -> set[str]:
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


def no_next_step(b: Builder) -> set[str]:
    """A door closed 60-120 days ago (not accepted, returned to be referred elsewhere,
    discharged after missed appointments, the service withdrawn), and nothing since."""
    b.closed_door(b.rng.choice(sorted(CATEGORIES)), end=b.jitter(60, 120))
    return {"stalled.no_next_step"}


# --- loops --------------------------------------------------------------------------------


def re_referral(b: Builder) -> set[str]:
    """Referred back to the service that closed the door within the last seven weeks."""
    cat = b.rng.choice(sorted(CATEGORIES))
    again = b.jitter(0.5, 3)
    b.closed_door(cat, end=again + b.jitter(20, 45))
    b.referral(cat, [("submitted", again)])
    return {"looping.re_referral"}


def re_referral_seen(b: Builder) -> set[str]:
    """Not accepted or returned, referred straight back, then seen and discharged: the loop
    happened (and stays on record) though the journey has ended."""
    cat = b.rng.choice(sorted(CATEGORIES))
    _, end, _ = b.closed_door(cat, start=b.jitter(80, 150))
    b.course(cat, end - b.jitter(3, 45), sessions=b.rng.randint(1, 3))
    return {"looping.re_referral"}


def _ping_pong(b: Builder, a: str, c: str, last: float) -> None:
    """A returned with advice, then B (another category) closed the door, then A's kind of
    service again `last` days ago."""
    b_start, _, _ = b.closed_door(c, end=last + b.jitter(5, 40), returned_ok=False)
    a_end = b_start + b.jitter(2, 10)
    b.referral(a, [("submitted", a_end + 3), ("returned", a_end)], reason=b.rng.choice(ADVICE))


def ping_pong(b: Builder) -> set[str]:
    """A -> B -> A: A returned with advice, B closed the door, A's kind of service again."""
    a, c = b.categories(2)
    last = b.jitter(0.5, 3)
    _ping_pong(b, a, c, last)
    b.referral(a, [("submitted", last)])
    return {"looping.ping_pong"}


def ping_pong_seen(b: Builder) -> set[str]:
    """A -> B -> A, and the second referral to A is accepted, seen and discharged."""
    a, c = b.categories(2)
    last = b.jitter(20, 40)
    _ping_pong(b, a, c, last)
    b.course(a, last)
    return {"looping.ping_pong"}


def ping_pong_closed_doors(b: Builder) -> set[str]:
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


def returned_twice(b: Builder) -> set[str]:
    """Returned to the referrer twice within six months, each time with advice."""
    a, c = b.categories(2)
    first = b.jitter(60, 120)
    b.referral(a, [("submitted", first), ("returned", first - 3)], reason=b.rng.choice(ADVICE))
    second = b.jitter(10, 40)
    b.referral(c, [("submitted", second), ("returned", second - 2)], reason=b.rng.choice(ADVICE))
    return {"looping.returned_repeatedly"}


def frequent_contact(b: Builder) -> set[str]:
    """Four or five episodes of care within six months, each treated: episodes, however few
    sessions each, are what count."""
    k = b.rng.randint(4, 5)
    cats = [b.rng.choice(sorted(CATEGORIES)) for _ in range(k)]
    start = b.jitter(130, 170)
    for i, cat in enumerate(cats):
        b.course(cat, start - 28 * i, sessions=b.rng.randint(1, 2))
    return {"looping.frequent_contact"}


def closed_doors(b: Builder) -> set[str]:
    """Two or three services of different kinds each closed the door within weeks, the last
    16-50 days ago, and nothing since (no next step is not yet due)."""
    b.doors(b.categories(b.rng.randint(2, 3)), b.jitter(16, 50))
    return {"looping.closed_doors"}


def closed_doors_no_next_step(b: Builder) -> set[str]:
    """Closed doors, the last 60-90 days ago, and nothing since: both alerts."""
    b.doors(b.categories(b.rng.randint(2, 3)), b.jitter(60, 90))
    return {"looping.closed_doors", "stalled.no_next_step"}


TEMPLATES: dict[str, Callable[[Builder], set[str]]] = {
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
