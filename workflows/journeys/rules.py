"""The journey rules, pure and deterministic: no I/O, no clock (time is passed in), so the
workflow can run them and tests can check them with plain unit tests.

- `apply_*` fold an event into the journey state (dedupe by event id, tolerate out-of-order).
- `evaluate` returns the alert changes due at `now`: stalls past their deadline, loops,
  safety flags, escalations, snoozes ending, stall alerts whose referral has moved on.
- `next_wake` is the earliest future moment `evaluate` could say something new.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from workflows.journeys import rules_contacts, rules_v1, rules_v2, rules_v2_care
from workflows.journeys.stalls import stall_deadlines, stall_text
from workflows.journeys.state import (
    Alert,
    AlertAction,
    AlertChange,
    AssessmentEvent,
    ContactEvent,
    Episode,
    Evidence,
    JourneyEvent,
    JourneyState,
    PlanActivity,
    Step,
    ts,
)

DEFAULT_RULES_FILE = Path(__file__).with_name("rules.toml")
SEEN_WINDOW = 5000


@dataclass(frozen=True)
class Rules:
    settle_seconds: int = 60
    triage_working_days_routine: int = 10
    triage_working_days_urgent: int = 2
    booking_weeks_default: int = 6
    booking_weeks_by_category: dict[str, int] = field(default_factory=dict)
    triage_minutes_by_category: dict[str, int] = field(default_factory=dict)
    outcome_grace_working_days: int = 2
    no_activity_weeks: int = 6
    rtt_weeks: int = 18
    rereferral_window_days: int = 182
    ping_pong_window_days: int = 182
    returned_times: int = 2
    returned_window_days: int = 182
    frequent_contacts: int = 4
    frequent_window_days: int = 182
    phq9_item9_above: int = 0
    # journeys started before the one vocabulary judged bands by this list, which named a band
    # no instrument produces (`high_risk`); their recorded histories still replay with it
    high_risk_bands: list[str] = field(default_factory=lambda: ["severe", "high_risk"])
    # since: each instrument's own high-risk bands (shared/vocabulary.py), the same definition
    # the care plans service flags with; the workflow turns it on under workflow.patched
    bands_from_vocabulary: bool = False
    escalation_hours: dict[str, int] = field(
        default_factory=lambda: {"urgent": 1, "high": 24, "medium": 72}
    )
    severity: dict[str, str] = field(default_factory=dict)
    bank_holidays: list[str] = field(default_factory=list)
    # version 2 (issue #15): closure reasons decide, windows on event time. The defaults are
    # version 1's, so a journey recorded before it replays unchanged; the workflow turns
    # version 2 on under workflow.patched("alert-rules-v2").
    version: int = 1
    rtt_weeks_by_category: dict[str, int] = field(default_factory=dict)
    closed_doors_min: int = 2
    closed_doors_window_days: int = 90
    closed_doors_grace_days: int = 14
    no_next_step_weeks: int = 8
    physiotherapy_categories: list[str] = field(default_factory=list)
    mental_health_categories: list[str] = field(default_factory=list)
    # contacts with care outside referrals (issue #17, rules_contacts.py): off for journeys
    # recorded before them; the workflow turns them on under workflow.patched("contact-rules").
    # The defaults are rules.toml's, for histories whose recorded rules predate these fields.
    contact_rules: bool = False
    planned_ae_attendance_categories: list[str] = field(default_factory=lambda: ["4"])
    contacts_keep_days: int = 548
    frequent_attender_contacts: int = 4
    frequent_attender_window_days: int = 182
    while_waiting_kinds: list[str] = field(default_factory=lambda: ["ae_attendance", "crisis_team"])
    waiting_states: list[str] = field(default_factory=lambda: ["submitted", "accepted", "booked"])
    ae_pain_attendances: int = 2
    ae_pain_window_days: int = 90
    ae_pain_codes: list[str] = field(
        default_factory=lambda: ["279039007", "161891005", "81680005", "23056005"]
    )


def load_rules(*paths: Path) -> Rules:
    """The rules in `paths` (default: rules.toml). A later file overrides an earlier one key by
    key, table by table, so a local policy file given after rules.toml holds only what it
    changes."""
    raw: dict[str, Any] = {}
    for path in paths or (DEFAULT_RULES_FILE,):
        _merge(raw, tomllib.loads(path.read_text()))
    rules = _rules(raw)
    unknown = sorted(r for r, sev in rules.severity.items() if sev not in rules.escalation_hours)
    if unknown:
        raise ValueError(
            f"rules: severity of {', '.join(unknown)} is not one of "
            f"{', '.join(rules.escalation_hours)}"
        )
    disagree = rules_v2_care.severities_agree(rules)
    if disagree:
        raise ValueError(
            f"rules: severity of {', '.join(disagree)} differs from the care "
            f"plan's for the same result (shared/vocabulary.py RISK_SEVERITY)"
        )
    return rules


def _rules(raw: dict[str, Any]) -> Rules:
    st, lp, sf, esc = raw["stall"], raw["loop"], raw["safety"], raw["escalation"]
    ct = raw["contacts"]
    return Rules(
        settle_seconds=st["settle_seconds"],
        triage_working_days_routine=st["triage_working_days_routine"],
        triage_working_days_urgent=st["triage_working_days_urgent"],
        booking_weeks_default=st["booking_weeks_default"],
        booking_weeks_by_category=dict(st.get("booking_weeks_by_category", {})),
        triage_minutes_by_category=dict(st.get("triage_minutes_by_category", {})),
        outcome_grace_working_days=st["outcome"]["grace_working_days"],
        no_activity_weeks=st["activity"]["no_activity_weeks"],
        rtt_weeks=st["rtt"]["weeks"],
        rereferral_window_days=lp["rereferral_window_days"],
        ping_pong_window_days=lp["ping_pong_window_days"],
        returned_times=lp["returned_times"],
        returned_window_days=lp["returned_window_days"],
        frequent_contacts=lp["frequent_contacts"],
        frequent_window_days=lp["frequent_window_days"],
        phq9_item9_above=sf["phq9_item9_above"],
        escalation_hours={
            "urgent": esc["urgent_hours"],
            "high": esc["high_hours"],
            "medium": esc["medium_hours"],
        },
        severity=dict(raw["severity"]),
        bank_holidays=list(raw["calendar"]["bank_holidays"]),
        rtt_weeks_by_category=dict(st["rtt"].get("weeks_by_category", {})),
        closed_doors_min=lp["closed_doors"]["services"],
        closed_doors_window_days=lp["closed_doors"]["window_days"],
        closed_doors_grace_days=lp["closed_doors"]["grace_days"],
        no_next_step_weeks=st["no_next_step"]["weeks"],
        physiotherapy_categories=list(raw["pathway"]["physiotherapy_categories"]),
        mental_health_categories=list(raw["pathway"]["mental_health_categories"]),
        planned_ae_attendance_categories=list(ct["planned_ae_attendance_categories"]),
        contacts_keep_days=ct["keep_days"],
        frequent_attender_contacts=ct["frequent_attender"]["contacts"],
        frequent_attender_window_days=ct["frequent_attender"]["window_days"],
        while_waiting_kinds=list(ct["unplanned_while_waiting"]["kinds"]),
        waiting_states=list(ct["unplanned_while_waiting"]["waiting_states"]),
        ae_pain_attendances=ct["repeated_ae_pain"]["attendances"],
        ae_pain_window_days=ct["repeated_ae_pain"]["window_days"],
        ae_pain_codes=list(ct["repeated_ae_pain"]["codes"]),
    )


def _merge(into: dict[str, Any], other: dict[str, Any]) -> None:
    for key, value in other.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


# --- folding events into the state ----------------------------------------------------------


def _seen(state: JourneyState, event_id: str) -> bool:
    if event_id in state.seen_event_ids:
        state.duplicates_ignored += 1
        return True
    state.seen_event_ids.append(event_id)
    if len(state.seen_event_ids) > SEEN_WINDOW:
        del state.seen_event_ids[0]
    state.events_applied += 1
    return False


def episode(state: JourneyState, referral_id: str) -> Episode | None:
    return next((e for e in state.episodes if e.referral_id == referral_id), None)


def apply_referral_event(state: JourneyState, ev: JourneyEvent) -> bool:
    """Fold a referral event in; False if it was a duplicate."""
    if _seen(state, ev.event_id):
        return False
    if ev.event_type.endswith(".flagged"):
        return True  # a flag for the referrer: no state changes, not even a new episode
    ep = episode(state, ev.referral_id)
    if ep is None:
        ep = Episode(
            referral_id=ev.referral_id,
            service_id=ev.to_service_id,
            category=ev.service_category,
            to_org=ev.to_org,
            from_org=ev.from_org,
            priority=ev.priority,
            referred_from=ev.referred_from,
            service_name=ev.service_name,
        )
        state.episodes.append(ep)
        state.episodes.sort(
            key=lambda e: (e.steps[0].at if e.steps else ev.occurred_at, e.referral_id)
        )
    step = Step(
        state=ev.state,
        at=ev.occurred_at,
        event_id=ev.event_id,
        event_type=ev.event_type,
        reason=ev.transition_reason,
    )
    # events may arrive out of order: keep the steps in time order; the latest is current
    # (a stable sort: events with the same time keep their arrival order)
    ep.steps.append(step)
    ep.steps.sort(key=lambda s: ts(s.at))
    if ev.appointment_at and ep.current is step:
        ep.appointment_at = ev.appointment_at
    ep.priority = ev.priority
    ep.service_name = ev.service_name or ep.service_name
    state.episodes.sort(key=lambda e: (ts(e.steps[0].at), e.referral_id))
    return True


def apply_assessment(state: JourneyState, ev: AssessmentEvent) -> bool:
    if _seen(state, ev.event_id):
        return False
    state.assessments.append(ev)
    return True


def apply_plan_activity(state: JourneyState, ev: PlanActivity) -> bool:
    """A change to the care plan: a next step (version 2's `stalled.no_next_step`)."""
    if _seen(state, ev.event_id):
        return False
    state.plan_activity.append(ev.occurred_at)
    state.plan_activity.sort(key=ts)
    return True


def apply_contact(state: JourneyState, ev: ContactEvent) -> bool:
    """A contact with care, or a change to one; False if it was a duplicate or an older
    revision of an encounter than the one held (revisions may arrive out of order)."""
    if _seen(state, ev.event_id):
        return False
    held = next((c for c in state.contacts if c.encounter_id == ev.encounter_id), None)
    if held is not None:
        if held.revision >= ev.revision:
            return False
        state.contacts.remove(held)
    state.contacts.append(ev)
    state.contacts.sort(key=lambda c: (ts(c.started_at), c.encounter_id))
    return True


def apply_action(state: JourneyState, action: AlertAction) -> list[AlertChange]:
    """A coordinator's action; the changes to persist."""
    if _seen(state, action.event_id):
        return []
    alert = next((a for a in state.alerts if a.alert_id == action.alert_id), None)
    if alert is None or alert.status == "resolved":
        return []
    if action.action == "acknowledge" and alert.status in (
        "open",
        "escalated",
        "snoozed",
        "progressing",
    ):
        alert.status, alert.acknowledged_at = "acknowledged", action.occurred_at
        alert.assignee = alert.assignee or action.actor
        change = "acknowledged"
    elif action.action == "assign" and action.assignee:
        alert.assignee = action.assignee
        change = "assigned"
    elif action.action == "resolve":
        alert.status, alert.resolved_at = "resolved", action.occurred_at
        alert.resolution = action.reason or f"resolved by {action.actor}"
        change = "resolved"
    elif action.action == "snooze" and action.until:
        alert.status, alert.snoozed_until = "snoozed", action.until
        change = "snoozed"
    else:
        return []
    alert.seq += 1
    return [AlertChange(state.patient_id, change, alert, action.occurred_at)]


# --- evaluation -------------------------------------------------------------------------------


class _Raiser:
    def __init__(self, state: JourneyState, rules: Rules, now: datetime) -> None:
        self.state, self.rules, self.now = state, rules, now
        self.changes: list[AlertChange] = []

    def exists(self, key: str) -> bool:
        return any(a.key == key for a in self.state.alerts)

    def open_rule(self, rule: str) -> bool:
        return any(a.rule == rule and a.status != "resolved" for a in self.state.alerts)

    def raise_(
        self,
        *,
        key: str,
        kind: str,
        rule: str,
        explanation: str,
        evidence: list[Evidence],
        referral_id: str | None = None,
        recipient_orgs: list[str] | None = None,
    ) -> None:
        if self.exists(key):
            return
        alert = Alert(
            alert_id=f"{self.state.patient_id}:{key}",
            key=key,
            kind=kind,
            rule=rule,
            severity=self.rules.severity.get(rule, "medium"),
            explanation=explanation,
            evidence=evidence,
            status="open",
            raised_at=self.now.isoformat(),
            referral_id=referral_id,
            recipient_orgs=list(recipient_orgs or []),
        )
        self.state.alerts.append(alert)
        self.changes.append(
            AlertChange(self.state.patient_id, "raised", alert, self.now.isoformat())
        )

    def change(self, alert: Alert, change: str) -> None:
        alert.seq += 1
        self.changes.append(AlertChange(self.state.patient_id, change, alert, self.now.isoformat()))


def evaluate(
    state: JourneyState, rules: Rules, now: datetime, *, stalls: bool = True
) -> list[AlertChange]:
    """The alert changes due at `now`; `stalls=False` leaves stalls for later (settling)."""
    r = _Raiser(state, rules, now)
    if stalls:
        _stalls(r)
    if rules.version >= 2:
        rules_v2.loops(r)
        rules_v2_care.screening(r)
        rules_v2_care.progressing(r)
    else:  # a journey recorded before version 2, replaying
        rules_v1.loops(r)
        rules_v1.safety(r)
    _escalations(r)
    return r.changes


def _stalls(r: _Raiser) -> None:
    live: set[str] = set()
    for ep in r.state.episodes:
        for d in stall_deadlines(ep, r.rules):
            key = f"{d.rule}:{d.referral_id}:{d.state_at}"
            live.add(key)
            if d.due <= r.now:
                r.raise_(
                    key=key,
                    kind="stalled",
                    rule=d.rule,
                    explanation=stall_text(d.rule, ep, d, r.rules),
                    referral_id=ep.referral_id,
                    evidence=[
                        Evidence(
                            ep.referral_id,
                            d.state_at,
                            ep.current.state,
                            f"deadline {d.due.isoformat()}",
                        )
                    ],
                )
    if r.rules.version >= 2:
        live |= rules_v2.no_next_step_alerts(r)
        rules_v2.closed_doors_alerts(r)
    if r.rules.contact_rules:
        live |= rules_contacts.judge(r)
    # a stall alert closes itself when its referral moves on
    for a in r.state.alerts:
        if a.kind == "stalled" and a.status != "resolved" and a.key not in live:
            if a.rule == "stalled.no_next_step":
                a.resolution = rules_v2.next_step_taken(r.state, a)
            elif a.rule == rules_contacts.WHILE_WAITING:
                a.resolution = rules_contacts.while_waiting_over(r.state, r.rules, a)
            else:
                moved = episode(r.state, a.referral_id or "")
                now_state = moved.current.state.replace("_", " ") if moved else "closed"
                a.resolution = f"the referral moved on (now {now_state})"
            a.status, a.resolved_at = "resolved", r.now.isoformat()
            r.change(a, "resolved")


def _escalations(r: _Raiser) -> None:
    for a in r.state.alerts:
        if a.status == "snoozed" and a.snoozed_until and ts(a.snoozed_until) <= r.now:
            a.status, a.snoozed_until = "open", None
            a.raised_at = r.now.isoformat()  # the escalation clock starts again
            r.change(a, "reopened")
        if a.status == "open" and escalation_due(a, r.rules) <= r.now:
            a.status, a.escalated_at = "escalated", r.now.isoformat()
            r.change(a, "escalated")


def escalation_due(alert: Alert, rules: Rules) -> datetime:
    return ts(alert.raised_at) + timedelta(hours=rules.escalation_hours.get(alert.severity, 72))


def next_wake(state: JourneyState, rules: Rules, now: datetime) -> datetime | None:
    """The earliest future moment at which `evaluate` may have something new to say."""
    times: list[datetime] = []
    for ep in state.episodes:
        for d in stall_deadlines(ep, rules):
            key = f"{d.rule}:{d.referral_id}:{d.state_at}"
            if d.due > now and not any(a.key == key for a in state.alerts):
                times.append(d.due)
    if rules.version >= 2:
        times += [
            due
            for ep, end, due in rules_v2.no_next_step(state, rules)
            if not any(a.key == rules_v2.no_next_step_key(ep, end) for a in state.alerts)
        ]
        times += [p.due for p in rules_v2.closed_doors(state, rules, now)[1]]
    for a in state.alerts:
        if a.status == "open":
            times.append(escalation_due(a, rules))
        elif a.status == "snoozed" and a.snoozed_until:
            times.append(ts(a.snoozed_until))
    future = [t for t in times if t > now]
    return min(future) if future else None
