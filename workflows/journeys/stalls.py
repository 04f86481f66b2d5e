"""Stall deadlines: when a referral has waited too long in its state (not triaged, not booked,
not seen within the referral-to-treatment standard, ...), counted in working days where the
standard says so. Pure and deterministic, like rules.py, which raises the alerts.

docs/clinical-safety/alert-rules.md says the same in words.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

from workflows.journeys.rules_v2 import CLOSED
from workflows.journeys.state import Episode, ts
from workflows.journeys.words import day, service

if TYPE_CHECKING:
    from workflows.journeys.rules import Rules


# --- calendar ---------------------------------------------------------------------------------


def add_working_days(start: datetime, days: int, bank_holidays: list[str]) -> datetime:
    """The same time of day `days` working days later (Monday-Friday, not bank holidays)."""
    holidays = {date.fromisoformat(d) for d in bank_holidays}
    current = start
    added = 0
    while added < days:
        current += timedelta(days=1)
        if current.weekday() < 5 and current.date() not in holidays:
            added += 1
    return current


# --- deadlines --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Deadline:
    rule: str
    due: datetime
    referral_id: str
    state_at: str  # when the episode entered the state the deadline is about


def stall_deadlines(ep: Episode, rules: Rules) -> list[Deadline]:
    """Deadlines for the episode's current state (none once it is closed)."""
    cur = ep.current
    if cur.state in CLOSED or cur.state == "draft":
        return []
    entered = ts(cur.at)
    out: list[Deadline] = []
    if cur.state == "submitted":
        minutes = rules.triage_minutes_by_category.get(ep.category)
        days = (
            rules.triage_working_days_urgent
            if ep.priority == "urgent"
            else rules.triage_working_days_routine
        )
        due = (
            entered + timedelta(minutes=minutes)
            if minutes is not None
            else add_working_days(entered, days, rules.bank_holidays)
        )
        out.append(Deadline("stalled.not_triaged", due, ep.referral_id, cur.at))
    elif cur.state == "accepted":
        weeks = rules.booking_weeks_by_category.get(ep.category, rules.booking_weeks_default)
        out.append(
            Deadline("stalled.not_booked", entered + timedelta(weeks=weeks), ep.referral_id, cur.at)
        )
    elif cur.state == "booked":
        when = ts(ep.appointment_at) if ep.appointment_at else entered
        out.append(
            Deadline(
                "stalled.no_outcome",
                add_working_days(
                    max(when, entered), rules.outcome_grace_working_days, rules.bank_holidays
                ),
                ep.referral_id,
                cur.at,
            )
        )
    else:
        # states with no deadline of their own (on hold, did not attend, attended): nothing at
        # all for too long
        out.append(
            Deadline(
                "stalled.no_activity",
                entered + timedelta(weeks=rules.no_activity_weeks),
                ep.referral_id,
                cur.at,
            )
        )
    submitted = ep.submitted_at
    weeks_rtt: int | None = rules.rtt_weeks
    if rules.version >= 2:
        # only where referral to treatment is the service's standard, and only once the
        # referral is triaged: an untriaged one has its not-triaged alert and no second
        weeks_rtt = (
            rules.rtt_weeks_by_category.get(ep.category) if cur.state != "submitted" else None
        )
    if submitted and weeks_rtt and not any(s.state == "attended" for s in ep.steps):
        out.append(
            Deadline(
                "stalled.rtt_breach",
                ts(submitted) + timedelta(weeks=weeks_rtt),
                ep.referral_id,
                submitted,
            )
        )
    return out


def stall_text(rule: str, ep: Episode, d: Deadline, rules: Rules) -> str:
    svc = service(ep)
    since = day(d.state_at)
    weeks_rtt = (
        rules.rtt_weeks_by_category.get(ep.category, rules.rtt_weeks)
        if rules.version >= 2
        else rules.rtt_weeks
    )
    return {
        "stalled.not_triaged": f"Referred to {svc} on {since} and not triaged by {day(d.due)}.",
        "stalled.not_booked": f"Accepted by {svc} on {since} but no appointment booked by "
        f"{day(d.due)}.",
        "stalled.no_outcome": f"Appointment with {svc} "
        f"{'on ' + day(ep.appointment_at) if ep.appointment_at else ''}"
        f" has no outcome recorded.",
        "stalled.no_activity": f"Referral to {svc} has had no activity since {since} "
        f"(it is {ep.current.state.replace('_', ' ')}).",
        "stalled.rtt_breach": f"Referred to {svc} on {since}; not seen within "
        f"{weeks_rtt} weeks (referral to treatment).",
    }[rule].replace("  ", " ")
