"""The journey rules as journeys started before version 2 (issue #15) recorded them: their
histories replay with exactly these loop and safety decisions. New journeys run
workflows/journeys/rules_v2.py. Nothing here changes; it is kept for replay."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from shared.vocabulary import band_words, is_high_risk
from workflows.journeys.state import Episode, Evidence, Step, ts
from workflows.journeys.words import category as _cat

if TYPE_CHECKING:
    from workflows.journeys.rules import _Raiser

ENDED_BY_SERVICE = {"rejected", "returned", "discharged"}  # what made a re-referral a loop


def _day(value: str) -> str:
    return ts(value).strftime("%-d %B %Y")


def _closures(ep: Episode) -> list[Step]:
    return [s for s in ep.steps if s.state in ENDED_BY_SERVICE]


def loops(r: _Raiser) -> None:
    rules = r.rules
    submitted = [(ep, ts(ep.submitted_at)) for ep in r.state.episodes if ep.submitted_at]
    submitted.sort(key=lambda x: (x[1], x[0].referral_id))
    # re-referral to a service / category that ended with the person within the window
    for ep, at in submitted:
        for prev, _ in submitted:
            if prev is ep:
                continue
            for closing in _closures(prev):
                gap = at - ts(closing.at)
                same = prev.service_id == ep.service_id or prev.category == ep.category
                if same and timedelta(0) <= gap <= timedelta(days=rules.rereferral_window_days):
                    verb = {
                        "rejected": "did not accept",
                        "returned": "returned",
                        "discharged": "discharged",
                    }[closing.state]
                    r.raise_(
                        key=f"looping.re_referral:{ep.referral_id}",
                        kind="looping",
                        rule="looping.re_referral",
                        referral_id=ep.referral_id,
                        explanation=(
                            f"Referred again to {_cat(ep.category)} on "
                            f"{_day(at.isoformat())}, {gap.days} days after it "
                            f"{verb} them on "
                            f"{_day(closing.at)}."
                        ),
                        evidence=[
                            Evidence(prev.referral_id, closing.at, closing.state),
                            Evidence(ep.referral_id, at.isoformat(), "submitted"),
                        ],
                    )
    # ping-pong A -> B -> A between categories
    cats = [(ep, at) for ep, at in submitted]
    for i in range(len(cats) - 2):
        (a, ta), (b, _tb), (c, tc) = cats[i], cats[i + 1], cats[i + 2]
        if a.category == c.category != b.category and tc - ta <= timedelta(
            days=rules.ping_pong_window_days
        ):
            r.raise_(
                key=f"looping.ping_pong:{c.referral_id}",
                kind="looping",
                rule="looping.ping_pong",
                referral_id=c.referral_id,
                explanation=(
                    f"Went from {_cat(a.category)} to {_cat(b.category)} and back "
                    f"to {_cat(c.category)} between {_day(ta.isoformat())} and "
                    f"{_day(tc.isoformat())}."
                ),
                evidence=[
                    Evidence(x.referral_id, t.isoformat(), "submitted")
                    for x, t in (cats[i], cats[i + 1], cats[i + 2])
                ],
            )
    # returned to the referrer repeatedly
    window = timedelta(days=rules.returned_window_days)
    returns = [
        (ep, s)
        for ep in r.state.episodes
        for s in ep.steps
        if s.state == "returned" and r.now - ts(s.at) <= window
    ]
    if len(returns) >= rules.returned_times and not r.open_rule("looping.returned_repeatedly"):
        services = sorted({_cat(ep.category) for ep, _ in returns})
        # the condition is "these returns": keyed by the newest, so a fresh run of returns
        # after a resolved alert raises again, and the same run never does
        newest_ep, newest = max(returns, key=lambda x: ts(x[1].at))
        r.raise_(
            key=f"looping.returned_repeatedly:{newest_ep.referral_id}:{newest.at}",
            kind="looping",
            rule="looping.returned_repeatedly",
            explanation=(
                f"Returned to the referrer {len(returns)} times in "
                f"{rules.returned_window_days // 30} months "
                f"(by {', '.join(services)})."
            ),
            evidence=[Evidence(ep.referral_id, s.at, s.state, s.reason or "") for ep, s in returns],
        )
    # frequent contact across services
    window = timedelta(days=rules.frequent_window_days)
    contacts = [
        (ep, s)
        for ep in r.state.episodes
        for s in ep.steps
        if s.state in ("submitted", "attended") and r.now - ts(s.at) <= window
    ]
    if len(contacts) >= rules.frequent_contacts and not r.open_rule("looping.frequent_contact"):
        n_ref = sum(1 for _, s in contacts if s.state == "submitted")
        n_att = len(contacts) - n_ref
        newest_ep, newest = max(contacts, key=lambda x: ts(x[1].at))
        r.raise_(
            key=f"looping.frequent_contact:{newest_ep.referral_id}:{newest.at}",
            kind="looping",
            rule="looping.frequent_contact",
            explanation=(
                f"{len(contacts)} contacts in {rules.frequent_window_days // 30} "
                f"months across {len({ep.category for ep, _ in contacts})} "
                f"services ({n_ref} referrals, {n_att} attendances)."
            ),
            evidence=[Evidence(ep.referral_id, s.at, s.state) for ep, s in contacts],
        )


def safety(r: _Raiser) -> None:
    for a in r.state.assessments:
        item9_above = a.item9 is not None and a.item9 > r.rules.phq9_item9_above
        if a.instrument.upper() == "PHQ-9" and (a.safety_flag or item9_above):
            r.raise_(
                key=f"safety.phq9_item9:{a.assessment_id}",
                kind="safety",
                rule="safety.phq9_item9",
                explanation=(
                    f"PHQ-9 on {_day(a.occurred_at)}: item 9 (thoughts of being "
                    f"better off dead or of self-harm) was answered above 0. "
                    f"Contact the person today."
                ),
                evidence=[
                    Evidence(
                        None,
                        a.occurred_at,
                        "assessed",
                        f"{a.instrument} {a.assessment_id} item9={a.item9}",
                    )
                ],
            )
        if r.rules.bands_from_vocabulary:
            high_risk, words = is_high_risk(a.instrument, a.band), band_words(a.instrument, a.band)
        else:  # a journey started before the one vocabulary, replaying
            high_risk, words = a.band in r.rules.high_risk_bands, a.band.replace("_", " ")
        if high_risk:
            r.raise_(
                key=f"safety.high_risk_band:{a.assessment_id}",
                kind="safety",
                rule="safety.high_risk_band",
                explanation=(
                    f"{a.instrument} on {_day(a.occurred_at)} is in the "
                    f"{words} band (score {a.total})."
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
