"""How the dashboard's pages say things: categories of service, referral states and alert
kinds in words; times, days and lengths of time in UK time; and the coded choices a
coordinator makes on an alert (how long to snooze, why it is resolved).

Pure: no I/O, no clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from shared.vocabulary import STATE_LABELS, category_words

UK = ZoneInfo("Europe/London")


def category_label(code: str) -> str:
    """A lane title: the category of service's label (shared/vocabulary.py)."""
    return category_words(code).label if code else "Unknown"


def state_label(state: str) -> str:
    """What a referral state means for the person (shared/vocabulary.py)."""
    if not state:
        return "Unknown"
    known = STATE_LABELS.get(state)  # type: ignore[call-overload]
    return known if known is not None else state.replace("_", " ").capitalize()


def parse_time(value: Any) -> datetime | None:
    """An ISO 8601 time (naive means UTC), or None when it isn't one."""
    if isinstance(value, datetime):
        when = value
    elif isinstance(value, str):
        try:
            when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            return None
    else:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def day_text(when: datetime, tz: tzinfo = UK) -> str:
    local = when.astimezone(tz)
    return f"{local.day} {local:%b %Y}"


def when_text(when: datetime, tz: tzinfo = UK) -> str:
    local = when.astimezone(tz)
    return f"{local.day} {local:%b %Y, %H:%M}"


def duration_text(delta: timedelta) -> str:
    """'23 days', '1 day', '5 hours', '12 minutes'."""
    seconds = max(0, int(delta.total_seconds()))
    if seconds >= 86400:
        n, unit = seconds // 86400, "day"
    elif seconds >= 3600:
        n, unit = seconds // 3600, "hour"
    else:
        n, unit = max(1, seconds // 60) if seconds else 0, "minute"
    return f"{n} {unit}{'' if n == 1 else 's'}"


def short_duration(delta: timedelta) -> str:
    """'23 d', '5 h', '12 min' (written on segments)."""
    seconds = max(0, int(delta.total_seconds()))
    if seconds >= 86400:
        return f"{seconds // 86400} d"
    if seconds >= 3600:
        return f"{seconds // 3600} h"
    return f"{seconds // 60} min"


# --- alerts ---------------------------------------------------------------------------------

KIND_NAMES = {
    "stalled": "Stalled",
    "looping": "Looping",
    "safety": "Safety",
    "pathway": "Pathway prompt",
}
RULE_NAMES = {
    "stalled.not_triaged": "not triaged in time",
    "stalled.not_booked": "accepted but not booked",
    "stalled.no_outcome": "no outcome after the appointment",
    "stalled.no_activity": "no activity",
    "stalled.rtt_breach": "over 18 weeks from referral to treatment",
    "stalled.no_next_step": "no next step after an ending",
    "looping.re_referral": "referred again after an ending",
    "looping.ping_pong": "back and forth between services",
    "looping.returned_repeatedly": "returned to the referrer repeatedly",
    "looping.frequent_contact": "frequent contact with services",
    "looping.closed_doors": "several services closed without treatment",
    "looping.frequent_attender": "frequent unplanned contacts (A&E, 111, out-of-hours, crisis)",
    "looping.repeated_ae_pain": "repeated A&E for back or neck pain, no referral open",
    "stalled.unplanned_while_waiting": "A&E or crisis care while waiting for a referral",
    "safety.phq9_item9": "PHQ-9 item 9 answered above 0",
    "safety.high_risk_band": "high-risk screening result",
    "pathway.start_back_high": "STarT Back high risk: physiotherapy with psychological support",
    "pathway.severe_mood": "severe depression or anxiety score, no mental health referral",
}
STATUS_NAMES = {
    "open": "open",
    "acknowledged": "acknowledged",
    "escalated": "escalated",
    "snoozed": "snoozed",
    "progressing": "progressing",
    "resolved": "resolved",
}
#: what a status means, where its name alone doesn't say (beside its filter and its tag)
STATUS_HINTS = {
    "progressing": "the cause has gone: the person has since been accepted and "
    "seen; off the worklist until resolved"
}
#: how long a coordinator may snooze an alert for (the inbox allows at most 30 days)
SNOOZE_CHOICES: dict[str, tuple[str, timedelta]] = {
    "4h": ("4 hours", timedelta(hours=4)),
    "1d": ("1 day", timedelta(days=1)),
    "3d": ("3 days", timedelta(days=3)),
    "7d": ("1 week", timedelta(days=7)),
    "14d": ("2 weeks", timedelta(days=14)),
    "28d": ("4 weeks", timedelta(days=28)),
}
#: the coded reasons for resolving an alert (events carry codes, never free text)
RESOLUTIONS: dict[str, str] = {
    "contacted-person": "Contacted the person",
    "referral-progressed": "The referral has moved on",
    "signposted": "Signposted to another service",
    "referred-elsewhere": "Referred to a more suitable service",
    "duplicate": "Duplicate of another alert",
    "no-action-needed": "No action needed",
}
FLASH_MESSAGES = {
    "acknowledge": "Alert acknowledged.",
    "assign": "Alert assigned.",
    "snooze": "Alert snoozed.",
    "resolve": "Alert resolved.",
}
