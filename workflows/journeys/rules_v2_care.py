"""Version 2's rules about the care that follows (issue #15): screening results that need a
pathway (STarT Back high, severe PHQ-9 or GAD-7 with no mental health referral open, PHQ-9
item 9), and looping alerts or prompts whose cause has gone, which move to "progressing".
Pure and deterministic, like rules_v2.py, whose helpers it uses.

docs/clinical-safety/alert-rules.md says the same in words.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from shared.vocabulary import (
    RISK_SEVERITY,
    Instrument,
    band_words,
    instrument_of,
    is_high_risk,
)
from workflows.journeys.rules_v2 import UNTOUCHED, open_at, submissions
from workflows.journeys.state import Alert, Evidence, JourneyState, ts
from workflows.journeys.words import category, day, listing, service

if TYPE_CHECKING:
    from workflows.journeys.rules import Rules, _Raiser


# --- screening --------------------------------------------------------------------------------


def screening(r: _Raiser) -> None:
    rules, state = r.rules, r.state
    for a in state.assessments:
        inst = instrument_of(a.instrument)
        when = ts(a.occurred_at)
        item9 = a.item9 is not None and a.item9 > rules.phq9_item9_above
        if inst == Instrument.PHQ9 and (a.safety_flag or item9):
            answer = f"answered {a.item9}" if a.item9 is not None else "answered above 0"
            r.raise_(
                key=f"safety.phq9_item9:{a.assessment_id}",
                kind="safety",
                rule="safety.phq9_item9",
                recipient_orgs=[
                    o for o in dict.fromkeys((a.registered_practice, a.holder_org)) if o
                ],
                explanation=(
                    f"PHQ-9 on {day(when)}: item 9 (thoughts of being better "
                    f"off dead or of hurting themselves) was answered above 0. "
                    f"Contact the person today; their crisis plan is on their "
                    f"care plan."
                ),
                evidence=[
                    Evidence(
                        None, a.occurred_at, "assessed", f"PHQ-9 {a.assessment_id}: item 9 {answer}"
                    )
                ],
            )
        if inst is None or not is_high_risk(a.instrument, a.band):
            continue
        words = band_words(a.instrument, a.band)
        if inst == Instrument.START_BACK:
            physio = [
                ep
                for ep in state.episodes
                if ep.category in rules.physiotherapy_categories and open_at(ep, when)
            ]
            now_open = (
                f"A referral to {service(physio[0])} is open (since "
                f"{day(physio[0].submitted_at or when)}): check it offers that support."
                if physio
                else "No physiotherapy referral is open."
            )
            r.raise_(
                key=f"pathway.start_back_high:{a.assessment_id}",
                kind="pathway",
                rule="pathway.start_back_high",
                explanation=(
                    f"STarT Back on {day(when)} is in the {words} band (score "
                    f"{a.total}). Stratified care suggests physiotherapy with "
                    f"psychologically informed support. {now_open}"
                ),
                evidence=[
                    Evidence(
                        None,
                        a.occurred_at,
                        "assessed",
                        f"{a.instrument} {a.assessment_id} band={a.band}",
                    )
                ],
            )
        elif not any(
            ep.category in rules.mental_health_categories and open_at(ep, when)
            for ep in state.episodes
        ):
            kinds = listing([category(c) for c in rules.mental_health_categories]).replace(
                " and ", " or "
            )
            r.raise_(
                key=f"pathway.severe_mood:{a.assessment_id}",
                kind="pathway",
                rule="pathway.severe_mood",
                explanation=(
                    f"{a.instrument} on {day(when)} is in the {words} band (score "
                    f"{a.total}), and no mental health referral ({kinds}) is "
                    f"open."
                ),
                evidence=[
                    Evidence(
                        None,
                        a.occurred_at,
                        "assessed",
                        f"{a.instrument} {a.assessment_id} band={a.band}",
                    )
                ],
            )


def severities_agree(rules: Rules) -> list[str]:
    """Rules whose configured severity differs from the care plan's for the same result."""
    wanted = {
        "safety.phq9_item9": RISK_SEVERITY["phq9_item9"],
        "pathway.start_back_high": RISK_SEVERITY["high_risk_band"],
        "pathway.severe_mood": RISK_SEVERITY["high_risk_band"],
    }
    return [rule for rule, sev in wanted.items() if rules.severity.get(rule) != sev]


# --- progressing ------------------------------------------------------------------------------

#: looping alerts that do not progress on "accepted and seen": frequent contact and frequent
#: attendance never progress (a pattern being seen does not end); repeated A&E for pain
#: progresses on its own terms (rules_contacts.py)
OWN_PROGRESS = frozenset(
    {"looping.frequent_contact", "looping.frequent_attender", "looping.repeated_ae_pain"}
)


def progressing(r: _Raiser) -> None:
    """A looping alert or pathway prompt nobody has taken on, whose cause has gone, leaves the
    action worklist as "progressing": after a bounce (re-referral, ping-pong, returns, closed
    doors) the person has since been accepted and seen on a referral made at or after the
    alert's latest evidence; after a pathway prompt, a referral to that pathway has been
    accepted. Frequent contact is a pattern being seen does not end, so it never progresses."""
    for a in r.state.alerts:
        if (
            a.status not in UNTOUCHED
            or a.assignee
            or a.kind not in ("looping", "pathway")
            or a.rule in OWN_PROGRESS
        ):
            continue
        since = max((ts(e.at) for e in a.evidence), default=None)
        if since is None:
            continue
        note = (
            _seen_since(r.state, since)
            if a.kind == "looping"
            else _accepted_since(r.state, r.rules, a, since)
        )
        if note is None:
            continue
        at, text = note
        a.status, a.progressing_at, a.progress = "progressing", at, text
        r.change(a, "progressing")


def _seen_since(state: JourneyState, since: datetime) -> tuple[str, str] | None:
    """The first attendance, after `since`, on a referral made at or after it (an older
    referral running in parallel is not the way out of this loop)."""
    seen = [
        (ts(s.at), ep)
        for ep, sub in submissions(state)
        if sub >= since
        for s in ep.steps
        if s.state == "attended" and ts(s.at) > since
    ]
    if not seen:
        return None
    at, ep = min(seen, key=lambda x: (x[0], x[1].referral_id))
    return at.isoformat(), f"accepted and seen by {service(ep)} on {day(at)}"


def _accepted_since(
    state: JourneyState, rules: Rules, alert: Alert, since: datetime
) -> tuple[str, str] | None:
    cats = (
        rules.physiotherapy_categories
        if alert.rule == "pathway.start_back_high"
        else rules.mental_health_categories
    )
    accepted = [
        (ts(s.at), ep)
        for ep, sub in submissions(state)
        if ep.category in cats and sub > since
        for s in ep.steps
        if s.state == "accepted"
    ]
    if not accepted:
        return None
    at, ep = min(accepted, key=lambda x: (x[0], x[1].referral_id))
    return at.isoformat(), f"referred to and accepted by {service(ep)} on {day(at)}"
