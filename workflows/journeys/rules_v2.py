"""Version 2 of the journey's loop, closure and screening rules (issue #15): what happened
decides, not just that something happened. Pure and deterministic, like rules.py.

- How a referral ended (shared/vocabulary.py `closure_outcome`) decides: treatment completed,
  or advice and guidance followed by a referral, is the pathway working; a door closed without
  treatment is what bouncing is made of.
- Every window is measured between event times, never from "now": replaying a history later
  gives the same alerts. "Now" only says whether a deadline (a grace, a wait for a next step)
  has passed.
- A looping alert or pathway prompt whose cause has gone moves to "progressing"
  (rules_v2_care.py, with the screening prompts).

docs/clinical-safety/alert-rules.md says the same in words; the hazard log there names the
tests of each rule.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, TypeVar

from shared.vocabulary import (
    ENDED_STATES,
    Outcome,
    closure_outcome,
    reason_words,
)
from workflows.journeys.state import Alert, Episode, Evidence, JourneyState, Step, ts
from workflows.journeys.words import day, days_between, listing, plural, service

if TYPE_CHECKING:
    from workflows.journeys.rules import Rules, _Raiser

CLOSED = ENDED_STATES
#: endings that send the person back: the door closed, or advice to go elsewhere
BOUNCED = frozenset({Outcome.NOT_TREATED, Outcome.ADVICE})
#: what a coordinator's own action leaves alone: they have taken the alert on
UNTOUCHED = frozenset({"open", "escalated"})

T = TypeVar("T")


# --- what the journey holds -------------------------------------------------------------------


def ending(ep: Episode) -> Step | None:
    """The step that ended the referral (None while it is open)."""
    return ep.current if ep.steps and ep.current.state in CLOSED else None


def outcome(ep: Episode) -> Outcome | None:
    end = ending(ep)
    return closure_outcome(end.state, end.reason) if end else None


def submitted(ep: Episode) -> datetime | None:
    return ts(ep.submitted_at) if ep.submitted_at else None


def open_at(ep: Episode, moment: datetime) -> bool:
    """Submitted by `moment` and not yet ended at it."""
    sub, end = submitted(ep), ending(ep)
    return sub is not None and sub <= moment and (end is None or ts(end.at) > moment)


def submissions(state: JourneyState) -> list[tuple[Episode, datetime]]:
    subs = [(ep, at) for ep in state.episodes if (at := submitted(ep)) is not None]
    return sorted(subs, key=lambda x: (x[1], x[0].referral_id))


def ended_how(ep: Episode, end: Step) -> str:
    """'Specialist Pain Clinic did not accept the referral (does not meet the criteria) on
    5 January 2026'."""
    verb = {
        "rejected": "did not accept the referral",
        "returned": "returned the referral",
        "discharged": "discharged them",
        "cancelled": "saw the referral cancelled",
    }
    return (
        f"{service(ep)} {verb.get(end.state, end.state)} ({reason_words(end.reason)}) on "
        f"{day(end.at)}"
    )


def runs(
    items: Sequence[tuple[datetime, T]],
    window: timedelta,
    complete: Callable[[list[tuple[datetime, T]]], bool],
) -> list[list[tuple[datetime, T]]]:
    """Runs of items close in time, on event time only: scanning in time order, item j closes
    a run when `complete` holds for it and the items before it (since the last run closed)
    that lie within `window` of it. An item belongs to one run at most, so a long series
    raises once per run, not once per item, and the same history always gives the same runs."""
    out: list[list[tuple[datetime, T]]] = []
    start = 0
    for j, (tj, _) in enumerate(items):
        recent = [it for it in items[start : j + 1] if tj - it[0] <= window]
        if complete(recent):
            out.append(recent)
            start = j + 1
    return out


# --- looping ----------------------------------------------------------------------------------


def loops(r: _Raiser) -> None:
    subs = submissions(r.state)
    _re_referral(r, subs)
    _ping_pong(r, subs)
    _returned_repeatedly(r)
    _frequent_contact(r, subs)


def _re_referral(r: _Raiser, subs: list[tuple[Episode, datetime]]) -> None:
    """A referral to the service or category that closed an earlier one without treatment."""
    window = timedelta(days=r.rules.rereferral_window_days)
    for ep, at in subs:
        for prev, _ in subs:
            end = ending(prev)
            if prev is ep or end is None or outcome(prev) != Outcome.NOT_TREATED:
                continue
            same = prev.service_id == ep.service_id or prev.category == ep.category
            if same and timedelta(0) <= at - ts(end.at) <= window:
                r.raise_(
                    key=f"looping.re_referral:{ep.referral_id}",
                    kind="looping",
                    rule="looping.re_referral",
                    referral_id=ep.referral_id,
                    explanation=(
                        f"Referred again to {service(ep)} on {day(at)}, "
                        f"{plural(days_between(end.at, at), 'day')} after "
                        f"{ended_how(prev, end)}."
                    ),
                    evidence=[
                        Evidence(prev.referral_id, end.at, end.state, end.reason or ""),
                        Evidence(ep.referral_id, at.isoformat(), "submitted"),
                    ],
                )
                break


def _ping_pong(r: _Raiser, subs: list[tuple[Episode, datetime]]) -> None:
    """A -> B -> A: A closed (not treated, or advice) before B was made, B closed the same way
    before the person was sent back to A's kind of service. Parallel care is not ping-pong."""
    window = timedelta(days=r.rules.ping_pong_window_days)
    for k, (c, tc) in enumerate(subs):
        found = None
        for a, ta in subs[:k]:
            end_a = ending(a)
            if (
                a.category != c.category
                or tc - ta > window
                or end_a is None
                or outcome(a) not in BOUNCED
                or ts(end_a.at) > tc
            ):
                continue
            for b, tb in subs:
                end_b = ending(b)
                if (
                    b is a
                    or b is c
                    or b.category == a.category
                    or end_b is None
                    or outcome(b) not in BOUNCED
                    or not ts(end_a.at) <= tb <= ts(end_b.at) <= tc
                ):
                    continue
                found = (a, end_a, b, end_b)
                break
            if found:
                break
        if not found:
            continue
        a, end_a, b, end_b = found
        r.raise_(
            key=f"looping.ping_pong:{c.referral_id}",
            kind="looping",
            rule="looping.ping_pong",
            referral_id=c.referral_id,
            explanation=(
                f"Sent back and forth: {ended_how(a, end_a)}; then "
                f"{ended_how(b, end_b)}; then referred back to {service(c)} on "
                f"{day(tc)}."
            ),
            evidence=[
                Evidence(a.referral_id, end_a.at, end_a.state, end_a.reason or ""),
                Evidence(b.referral_id, end_b.at, end_b.state, end_b.reason or ""),
                Evidence(c.referral_id, tc.isoformat(), "submitted"),
            ],
        )


def _returned_repeatedly(r: _Raiser) -> None:
    rules = r.rules
    returns = sorted(
        ((ts(s.at), (ep, s)) for ep in r.state.episodes for s in ep.steps if s.state == "returned"),
        key=lambda x: (x[0], x[1][0].referral_id),
    )
    for run in runs(
        returns,
        timedelta(days=rules.returned_window_days),
        lambda recent: len(recent) >= rules.returned_times,
    ):
        first, (last_ep, last) = run[0][0], run[-1][1]
        r.raise_(
            key=f"looping.returned_repeatedly:{last_ep.referral_id}:{last.at}",
            kind="looping",
            rule="looping.returned_repeatedly",
            explanation=(
                f"Returned to the referrer {plural(len(run), 'time')} in "
                f"{plural(days_between(first, last.at), 'day')}: "
                + "; ".join(ended_how(ep, s) for _, (ep, s) in run)
                + "."
            ),
            evidence=[
                Evidence(ep.referral_id, s.at, s.state, s.reason or "") for _, (ep, s) in run
            ],
        )


def _frequent_contact(r: _Raiser, subs: list[tuple[Episode, datetime]]) -> None:
    """Episodes of care (each referral once, however many sessions it holds), not counting
    duplicates and referrals made in error. Unplanned contacts join them with the EHR door."""
    rules = r.rules
    episodes = [(at, ep) for ep, at in subs if outcome(ep) != Outcome.ADMINISTRATIVE]
    for run in runs(
        episodes,
        timedelta(days=rules.frequent_window_days),
        lambda recent: len(recent) >= rules.frequent_contacts,
    ):
        first, (last_at, last_ep) = run[0][0], run[-1]
        names = _counted([service(ep) for _, ep in run])
        r.raise_(
            key=f"looping.frequent_contact:{last_ep.referral_id}:{last_at.isoformat()}",
            kind="looping",
            rule="looping.frequent_contact",
            explanation=(
                f"{plural(len(run), 'episode')} of care in "
                f"{plural(days_between(first, last_at), 'day')} ({day(first)} to "
                f"{day(last_at)}): referrals to {listing(names)}."
            ),
            evidence=[Evidence(ep.referral_id, at.isoformat(), "submitted") for at, ep in run],
        )
    # an episode it counted has since turned out to be a duplicate or made in error, and the
    # run no longer holds: the alert's cause was never there
    live = {
        f"looping.frequent_contact:{run[-1][1].referral_id}:{run[-1][0].isoformat()}"
        for run in runs(
            episodes,
            timedelta(days=rules.frequent_window_days),
            lambda recent: len(recent) >= rules.frequent_contacts,
        )
    }
    administrative = {ep.referral_id for ep, _ in subs if outcome(ep) == Outcome.ADMINISTRATIVE}
    for a in r.state.alerts:
        if (
            a.rule == "looping.frequent_contact"
            and a.status != "resolved"
            and a.key not in live
            and any(e.referral_id in administrative for e in a.evidence)
        ):
            a.status, a.resolved_at = "resolved", r.now.isoformat()
            a.resolution = (
                "an episode it counted was a duplicate or made in error: fewer "
                f"than {rules.frequent_contacts} remain"
            )
            r.change(a, "resolved")


def _counted(names: list[str]) -> list[str]:
    """'MSK physiotherapy (2 referrals)' for a name that appears more than once."""
    out: list[str] = []
    for name in names:
        if name in out or any(o.startswith(f"{name} (") for o in out):
            continue
        n = names.count(name)
        out.append(name if n == 1 else f"{name} ({plural(n, 'referral')})")
    return out


@dataclass(frozen=True)
class Pending:
    """A rule waiting for a moment on event time (a grace, a wait for a next step)."""

    key: str
    due: datetime


def closed_doors(
    state: JourneyState, rules: Rules, now: datetime
) -> tuple[list[list[tuple[datetime, Episode]]], list[Pending]]:
    """Runs of doors closed without treatment by different services within the window, with
    nothing open when the last closed and nothing new submitted within the grace after it;
    and the runs still inside their grace (pending)."""
    subs = submissions(state)
    doors = sorted(
        (
            (ts(end.at), ep)
            for ep in state.episodes
            if (end := ending(ep)) is not None and outcome(ep) == Outcome.NOT_TREATED
        ),
        key=lambda x: (x[0], x[1].referral_id),
    )
    grace = timedelta(days=rules.closed_doors_grace_days)

    def complete(recent: list[tuple[datetime, Episode]]) -> bool:
        last = recent[-1][0]
        return (
            len({ep.service_id for _, ep in recent}) >= rules.closed_doors_min
            and not any(open_at(ep, last) for ep, _ in subs)
            and not any(last < at <= last + grace for _, at in subs)
        )

    found = runs(doors, timedelta(days=rules.closed_doors_window_days), complete)
    raised = [run for run in found if run[-1][0] + grace <= now]
    pending = [
        Pending(_door_key(run), run[-1][0] + grace) for run in found if run[-1][0] + grace > now
    ]
    return raised, pending


def _door_key(run: list[tuple[datetime, Episode]]) -> str:
    return f"looping.closed_doors:{run[-1][1].referral_id}:{run[-1][0].isoformat()}"


def closed_doors_alerts(r: _Raiser) -> None:
    """Judged with the stalls, once the journey's events have settled: a backlog (after an
    outage, the go-live history load) is judged whole, so a referral made within the grace
    that arrives a moment after the closure it follows is seen first."""
    raised, _ = closed_doors(r.state, r.rules, r.now)
    for run in raised:
        first, last = run[0][0], run[-1][0]
        ends = [(ep, ending(ep)) for _, ep in run]
        r.raise_(
            key=_door_key(run),
            kind="looping",
            rule="looping.closed_doors",
            explanation=(
                f"{plural(len({ep.service_id for _, ep in run}), 'service')} "
                f"closed the door without treatment in "
                f"{plural(days_between(first, last), 'day')}, and nothing is "
                f"open: " + "; ".join(ended_how(ep, e) for ep, e in ends if e) + "."
            ),
            evidence=[
                Evidence(ep.referral_id, e.at, e.state, e.reason or "") for ep, e in ends if e
            ],
        )


# --- a closure with no next step ----------------------------------------------------------------


def no_next_step(state: JourneyState, rules: Rules) -> list[tuple[Episode, Step, datetime]]:
    """Referrals closed without treatment after which nothing has happened: no other referral
    open at the time, no referral since, no change to the care plan since. Each with the moment
    its wait ends (the alert is due then; it resolves itself once a next step follows)."""
    subs = submissions(state)
    plan = [ts(p) for p in state.plan_activity]
    out = []
    for ep in state.episodes:
        end = ending(ep)
        if end is None or outcome(ep) != Outcome.NOT_TREATED:
            continue
        closed = ts(end.at)
        # a referral since counts as a next step unless it was a duplicate or made in error
        later = [
            at
            for other, at in subs
            if other is not ep and at > closed and outcome(other) != Outcome.ADMINISTRATIVE
        ]
        if (
            any(other is not ep and open_at(other, closed) for other, _ in subs)
            or later
            or any(p > closed for p in plan)
        ):
            continue
        out.append((ep, end, closed + timedelta(weeks=rules.no_next_step_weeks)))
    return out


def no_next_step_key(ep: Episode, end: Step) -> str:
    return f"stalled.no_next_step:{ep.referral_id}:{end.at}"


def no_next_step_alerts(r: _Raiser) -> set[str]:
    """Raise the waits that have ended; the keys still waiting or raised (the live ones)."""
    live = set()
    for ep, end, due in no_next_step(r.state, r.rules):
        key = no_next_step_key(ep, end)
        live.add(key)
        if due <= r.now:
            r.raise_(
                key=key,
                kind="stalled",
                rule="stalled.no_next_step",
                referral_id=ep.referral_id,
                recipient_orgs=[ep.from_org],
                explanation=(
                    f"{ended_how(ep, end)}, and no new referral or change to "
                    f"the care plan followed within "
                    f"{plural(r.rules.no_next_step_weeks, 'week')} (by "
                    f"{day(due)}). The referrer ({ep.from_org}) and the "
                    f"coordinators should agree the next step with the person."
                ),
                evidence=[Evidence(ep.referral_id, end.at, end.state, end.reason or "")],
            )
    return live


def next_step_taken(state: JourneyState, alert: Alert) -> str:
    """Why a no-next-step alert resolved itself: the next step that followed."""
    end = ts(alert.evidence[0].at) if alert.evidence else datetime.min
    later = [
        (at, ep)
        for ep, at in submissions(state)
        if at > end and outcome(ep) != Outcome.ADMINISTRATIVE
    ]
    if later:
        at, ep = min(later, key=lambda x: x[0])
        return f"a next step followed: referred to {service(ep)} on {day(at)}"
    plan = [p for p in state.plan_activity if ts(p) > end]
    if plan:
        return f"a next step followed: the care plan was updated on {day(plan[0])}"
    return "a next step followed"
