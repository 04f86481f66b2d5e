"""Rules about contacts with care outside referrals (issue #17): A&E, NHS 111, out-of-hours,
crisis team, and GP appointments or admissions the source marks unplanned, as the EHRs report
them through the integration service. Pure and deterministic, like rules_v2.py.

- `looping.frequent_attender`: 4 or more unplanned contacts within 182 days of each other.
- `looping.repeated_ae_pain`: 2 or more A&E attendances for back or neck pain within 90 days
  of each other, with no referral open at the latest.
- `stalled.unplanned_while_waiting`: an A&E or crisis contact while a referral waits
  (submitted, accepted or booked, not yet seen).

One alert per problem: contacts a frequent-attender alert counted raise no repeated-A&E alert,
and a repeated-A&E alert nobody has taken on is folded into the frequent-attender alert that
counts its attendances (the explanation says both). Judged with the stalls, once the journey's
events have settled, so a backlog (the go-live history import) is judged whole; every window
is between the contacts' own times. docs/clinical-safety/alert-rules.md says the same in
words; the hazard log names the tests.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from shared.vocabulary import ALWAYS_UNPLANNED, HAPPENED_STATUSES, ContactKind
from workflows.journeys.rules_v2 import UNTOUCHED, open_at, submissions
from workflows.journeys.state import Alert, ContactEvent, Episode, Evidence, JourneyState, ts
from workflows.journeys.words import (
    contact_did,
    contact_kinds,
    contact_label,
    day,
    days_between,
    plural,
    service,
)

if TYPE_CHECKING:
    from workflows.journeys.rules import Rules, _Raiser

FREQUENT = "looping.frequent_attender"
AE_PAIN = "looping.repeated_ae_pain"
WHILE_WAITING = "stalled.unplanned_while_waiting"
#: the contact rules that count runs of contacts (their alerts are the memory of what counted)
RUN_RULES = (FREQUENT, AE_PAIN)
#: why an alert whose contacts turned out not to count was withdrawn (its cause was never there)
WITHDRAWN = "a contact it counted was cancelled or entered in error"

_HAPPENED = frozenset(s.value for s in HAPPENED_STATUSES)
_ALWAYS_UNPLANNED = frozenset(k.value for k in ALWAYS_UNPLANNED)
_AE = ContactKind.AE_ATTENDANCE.value


# --- what a contact is --------------------------------------------------------------------------


def happened(c: ContactEvent) -> bool:
    """Arrived, in progress or finished: booked, cancelled, did-not-attend and entered-in-error
    contacts never count."""
    return c.status in _HAPPENED


def unplanned(c: ContactEvent, rules: Rules) -> bool:
    """A&E, 111, out-of-hours and crisis contacts whatever the source says (shared/vocabulary.py
    ALWAYS_UNPLANNED), except an A&E attendance whose ECDS attendance category says it was a
    planned follow-up; a GP appointment, admission or outpatient appointment when the source
    marks it unplanned."""
    if c.contact_kind == _AE and c.attendance_category in rules.planned_ae_attendance_categories:
        return False
    return c.contact_kind in _ALWAYS_UNPLANNED or not c.planned


def counted(c: ContactEvent, rules: Rules) -> bool:
    return happened(c) and unplanned(c, rules)


def ae_pain(c: ContactEvent, rules: Rules) -> bool:
    """An A&E attendance whose chief complaint or a diagnosis is back or neck pain."""
    codes = set(rules.ae_pain_codes)
    return (
        c.contact_kind == _AE
        and happened(c)
        and (c.chief_complaint in codes or any(d in codes for d in c.diagnosis_codes))
    )


def at(c: ContactEvent) -> datetime:
    return ts(c.started_at)


def evidence(c: ContactEvent, rules: Rules) -> Evidence:
    pain = " (back or neck pain)" if ae_pain(c, rules) else ""
    return Evidence(
        None,
        c.started_at,
        c.contact_kind,
        f"{contact_label(c.contact_kind, c.planned)} at {c.source_org}{pain}",
        encounter_id=c.encounter_id,
    )


def _held(state: JourneyState) -> dict[str, ContactEvent]:
    return {c.encounter_id: c for c in state.contacts}


# --- runs of contacts ---------------------------------------------------------------------------


def _live(a: Alert) -> bool:
    """Not withdrawn: a withdrawn alert's contacts are free to count again."""
    return not (a.status == "resolved" and (a.resolution or "").startswith(WITHDRAWN))


def scan(
    state: JourneyState,
    rule: str,
    items: list[ContactEvent],
    window_days: int,
    complete: Callable[[list[ContactEvent], datetime], bool],
    taken_elsewhere: frozenset[str] = frozenset(),
) -> list[list[ContactEvent]]:
    """New runs of contacts for `rule`, on event time. Scanning in time order, contact j closes
    a run when `complete` holds for it and the contacts before it that lie within the window
    and after the last run this rule raised (its alerts' latest evidence before j). A contact
    belongs to one run at most: a run holding a contact an alert of the rule (or of
    `taken_elsewhere`) already counted is not new. The rule's alerts are the memory, so dropping
    contacts older than every window changes nothing, and a backlog judged whole or contact
    by contact gives the same runs."""
    window = timedelta(days=window_days)
    mine = [a for a in state.alerts if a.rule == rule and _live(a) and a.evidence]
    taken = {e.encounter_id for a in mine for e in a.evidence if e.encounter_id}
    taken |= taken_elsewhere
    ends = [max(ts(e.at) for e in a.evidence) for a in mine]
    found: list[list[ContactEvent]] = []
    for j, c in enumerate(items):
        tj = at(c)
        floor = max((t for t in ends if t <= tj), default=None)
        recent = [
            x for x in items[: j + 1] if tj - at(x) <= window and (floor is None or at(x) > floor)
        ]
        if complete(recent, tj) and not any(x.encounter_id in taken for x in recent):
            found.append(recent)
            taken |= {x.encounter_id for x in recent}
            ends.append(tj)
    return found


def _run_key(rule: str, run: list[ContactEvent]) -> str:
    return f"{rule}:{run[-1].encounter_id}:{run[-1].started_at}"


def _open_at(state: JourneyState, moment: datetime) -> list[Episode]:
    return [ep for ep in state.episodes if open_at(ep, moment)]


# --- the rules ------------------------------------------------------------------------------------


def judge(r: _Raiser) -> set[str]:
    """Apply the contact rules (with the stalls, once events have settled); the keys of the
    unplanned-while-waiting alerts whose wait goes on (the live ones)."""
    _withdraw(r)
    _frequent_attender(r)
    _repeated_ae_pain(r)
    _fold_into_frequent(r)
    _ae_pain_progressing(r)
    live = _while_waiting(r)
    prune(r.state, r.rules, r.now)
    return live


def _frequent_attender(r: _Raiser) -> None:
    rules, state = r.rules, r.state
    items = [c for c in state.contacts if counted(c, rules)]
    for run in scan(
        state,
        FREQUENT,
        items,
        rules.frequent_attender_window_days,
        lambda recent, _t: len(recent) >= rules.frequent_attender_contacts,
    ):
        first, last = at(run[0]), at(run[-1])
        pain = [c for c in run if ae_pain(c, rules)]
        open_then = _open_at(state, last)
        text = (
            f"{plural(len(run), 'unplanned contact')} in "
            f"{plural(days_between(first, last), 'day')} ({day(first)} to {day(last)}): "
            f"{contact_kinds([(c.contact_kind, c.planned) for c in run])}."
        )
        if pain:
            were = "was an A&E attendance" if len(pain) == 1 else "were A&E attendances"
            text += f" {len(pain)} of them {were} for back or neck pain" + (
                "." if open_then else ", with no referral open."
            )
        if open_then:
            text += f" A referral to {service(open_then[0])} was open at the time."
        r.raise_(
            key=_run_key(FREQUENT, run),
            kind="looping",
            rule=FREQUENT,
            explanation=text,
            evidence=[evidence(c, rules) for c in run],
        )


def _repeated_ae_pain(r: _Raiser) -> None:
    rules, state = r.rules, r.state
    items = [c for c in state.contacts if ae_pain(c, rules)]
    counted_by_frequent = frozenset(
        e.encounter_id
        for a in state.alerts
        if a.rule == FREQUENT and _live(a)
        for e in a.evidence
        if e.encounter_id
    )
    for run in scan(
        state,
        AE_PAIN,
        items,
        rules.ae_pain_window_days,
        lambda recent, t: len(recent) >= rules.ae_pain_attendances and not _open_at(state, t),
        taken_elsewhere=counted_by_frequent,
    ):
        first, last = at(run[0]), at(run[-1])
        r.raise_(
            key=_run_key(AE_PAIN, run),
            kind="looping",
            rule=AE_PAIN,
            explanation=(
                f"{plural(len(run), 'A&E attendance')} for back or neck pain in "
                f"{plural(days_between(first, last), 'day')} ({day(first)} to {day(last)}), "
                f"and no referral was open. A referral (for example to MSK physiotherapy or "
                f"a pain service) may be what they need."
            ),
            evidence=[evidence(c, rules) for c in run],
        )


def _fold_into_frequent(r: _Raiser) -> None:
    """One alert per problem: a repeated-A&E alert nobody has taken on, whose attendances a
    frequent-attender alert also counts, is resolved into it (that alert says both)."""
    frequent = [a for a in r.state.alerts if a.rule == FREQUENT and _live(a)]
    for a in r.state.alerts:
        if a.rule != AE_PAIN or a.status not in UNTOUCHED or a.assignee:
            continue
        mine = {e.encounter_id for e in a.evidence if e.encounter_id}
        into = next(
            (f for f in frequent if mine & {e.encounter_id for e in f.evidence}),
            None,
        )
        if into is None:
            continue
        a.status, a.resolved_at = "resolved", r.now.isoformat()
        a.resolution = (
            f"included in the frequent-attender alert raised on {day(into.raised_at)}, "
            f"which counts the same attendances"
        )
        r.change(a, "resolved")


def _ae_pain_progressing(r: _Raiser) -> None:
    """A repeated-A&E alert nobody has taken on moves to progressing once a referral made at or
    after its latest attendance has been accepted (a submission alone may be turned down)."""
    for a in r.state.alerts:
        if a.rule != AE_PAIN or a.status not in UNTOUCHED or a.assignee or not a.evidence:
            continue
        since = max(ts(e.at) for e in a.evidence)
        accepted = [
            (ts(s.at), ep, sub)
            for ep, sub in submissions(r.state)
            if sub >= since
            for s in ep.steps
            if s.state == "accepted"
        ]
        if not accepted:
            continue
        when, ep, sub = min(accepted, key=lambda x: (x[0], x[1].referral_id))
        a.status, a.progressing_at = "progressing", when.isoformat()
        a.progress = f"referred to {service(ep)} on {day(sub)}, accepted on {day(when)}"
        r.change(a, "progressing")


def _withdraw(r: _Raiser) -> None:
    """A run whose contacts have since been cancelled or entered in error, so that fewer than
    the threshold remain, was never a run: its alert resolves itself saying so. A contact no
    longer held (dropped as older than every window) still counts."""
    held = _held(r.state)
    rules = r.rules
    for a in r.state.alerts:
        if a.rule not in RUN_RULES or a.status == "resolved":
            continue
        need, still = (
            (rules.frequent_attender_contacts, lambda c: counted(c, rules))
            if a.rule == FREQUENT
            else (rules.ae_pain_attendances, lambda c: ae_pain(c, rules))
        )
        ids = [e.encounter_id for e in a.evidence if e.encounter_id]
        left = [i for i in ids if i not in held or still(held[i])]
        if len(left) >= need:
            continue
        a.status, a.resolved_at = "resolved", r.now.isoformat()
        a.resolution = f"{WITHDRAWN}: fewer than {need} remain"
        r.change(a, "resolved")


# --- unplanned care while waiting -----------------------------------------------------------------


def _waiting_at(ep: Episode, moment: datetime, rules: Rules) -> bool:
    """Submitted, accepted or booked at `moment`, and not yet seen."""
    before = [s for s in ep.steps if ts(s.at) <= moment]
    return (
        bool(before)
        and before[-1].state in rules.waiting_states
        and not any(s.state == "attended" for s in before)
    )


def waiting_now(ep: Episode, rules: Rules) -> bool:
    return (
        bool(ep.steps)
        and ep.current.state in rules.waiting_states
        and not any(s.state == "attended" for s in ep.steps)
    )


def while_waiting_key(ep: Episode) -> str:
    return f"{WHILE_WAITING}:{ep.referral_id}"


def _while_waiting(r: _Raiser) -> set[str]:
    rules, state = r.rules, r.state
    kinds = set(rules.while_waiting_kinds)
    contacts = [c for c in state.contacts if happened(c) and c.contact_kind in kinds]
    held = _held(state)
    live: set[str] = set()
    for ep in state.episodes:
        if not waiting_now(ep, rules):
            continue  # a wait already over is not failing the person now (as a stall)
        key = while_waiting_key(ep)
        during = [c for c in contacts if _waiting_at(ep, at(c), rules)]
        raised = next((a for a in state.alerts if a.key == key), None)
        if raised is not None and not during:
            # its contacts no longer held (dropped as old): the alert stands while the wait does
            if all(e.encounter_id not in held for e in raised.evidence if e.encounter_id):
                live.add(key)
            continue
        if not during:
            continue
        live.add(key)
        first = during[0]
        then = next(s for s in reversed(ep.steps) if ts(s.at) <= at(first))
        more = len(during) - 1
        r.raise_(
            key=key,
            kind="stalled",
            rule=WHILE_WAITING,
            referral_id=ep.referral_id,
            recipient_orgs=[ep.to_org],
            explanation=(
                f"{contact_did(first.contact_kind)} on {day(at(first))} while waiting for "
                f"{service(ep)} (referred on {day(ep.submitted_at or then.at)}, "
                f"{then.state.replace('_', ' ')} then, not yet seen)"
                + (f", and {plural(more, 'time')} more since" if more else "")
                + f". The wait may be failing them: {ep.to_org} and the coordinators should "
                f"check how soon they can be seen."
            ),
            evidence=[Evidence(ep.referral_id, then.at, then.state)]
            + [evidence(c, rules) for c in during],
        )
    return live


def while_waiting_over(state: JourneyState, rules: Rules, alert: Alert) -> str:
    """Why an unplanned-while-waiting alert resolved itself."""
    ep = next((e for e in state.episodes if e.referral_id == alert.referral_id), None)
    if ep is not None and ep.steps and not waiting_now(ep, rules):
        return f"the wait is over: the referral is now {ep.current.state.replace('_', ' ')}"
    return f"the wait is over, or {WITHDRAWN}"


# --- memory -------------------------------------------------------------------------------------


def prune(state: JourneyState, rules: Rules, now: datetime) -> None:
    """Drop contacts that happened more than `keep_days` before now, once judged: far outside
    every window of these rules, and the alerts keep what they counted."""
    keep_from = now - timedelta(days=rules.contacts_keep_days)
    state.contacts = [c for c in state.contacts if at(c) >= keep_from]
