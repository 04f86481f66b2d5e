"""Who hears about what: every rule of who gets told, in one place (audiences, not HTTP routes).

Pure and synchronous. The consumer asks `routes_for(event type)` which messages an event owes
and to which audience; the dispatcher later works out the concrete recipients (the referring
user, the receiving service's team, the person, each carer the person allows) and their
channel and format at send time, from the owning services' APIs.

Journey alerts go to the coordinators' inbox (`is_alert_event`); partner organisations get
what their subscriptions ask for, and only events that concern them (`concerns_org`). An alert
addressed to organisations besides the coordinators (`recipient_orgs`: the GP practice and
plan holder of a PHQ-9 item 9 answer, the referrer of a referral closed with no next step)
reaches each one's team inbox, their staff who chose email, and their partner subscriptions;
an escalated safety alert reaches the ICS's duty rota (`alert_routes`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Audience(StrEnum):
    REFERRER = "referrer"  # the user who made the referral (their own preferences)
    RECEIVING_SERVICE = "receiving_service"  # the team of the service referred to
    PERSON = "person"  # the person referred, in the form their communication needs ask for
    CARERS = "carers"  # each carer named on the care plan, where the person consented
    SUBSCRIPTION_OWNER = "subscription_owner"  # a partner whose webhook was disabled
    ALERT_ORGS = "alert_orgs"  # the teams (and staff who chose email) an alert is addressed to
    DUTY_ROTA = "duty_rota"  # the ICS's duty rota: an escalated safety alert


@dataclass(frozen=True)
class Route:
    audience: Audience
    template: str


_R = "uk.waymark.referral."

#: event type -> the messages it owes. Closed-loop referral: the referrer hears the outcome;
#: the receiving service hears of a new referral; the person (and carers they allow) hears
#: when they are booked, missed an appointment, or are discharged.
MESSAGE_ROUTES: Mapping[str, tuple[Route, ...]] = {
    f"{_R}submitted": (Route(Audience.RECEIVING_SERVICE, "referral-received"),),
    f"{_R}accepted": (Route(Audience.REFERRER, "referral-accepted"),),
    f"{_R}rejected": (Route(Audience.REFERRER, "referral-rejected"),),
    f"{_R}returned": (Route(Audience.REFERRER, "referral-returned"),),
    f"{_R}flagged": (Route(Audience.REFERRER, "referral-flagged"),),
    f"{_R}booked": (
        Route(Audience.PERSON, "appointment-booked"),
        Route(Audience.CARERS, "appointment-booked"),
    ),
    f"{_R}did-not-attend": (
        Route(Audience.PERSON, "appointment-missed"),
        Route(Audience.CARERS, "appointment-missed"),
    ),
    f"{_R}discharged": (Route(Audience.PERSON, "discharged"), Route(Audience.CARERS, "discharged")),
}

#: a partner webhook subscription may ask for these event types (referral events only)
SUBSCRIBABLE_PREFIX = _R

ALERT_PREFIX = "uk.waymark.journey.alert."


def routes_for(event_type: str) -> tuple[Route, ...]:
    return MESSAGE_ROUTES.get(event_type, ())


def is_alert_event(event_type: str) -> bool:
    return event_type.startswith(ALERT_PREFIX)


def is_referral_event(event_type: str) -> bool:
    return event_type.startswith(_R)


def message_context(data: Mapping[str, Any]) -> dict[str, Any]:
    """What of an event's data a message may use: codes, states and times (events carry
    nothing personal; names, advice and contact details are fetched at send time)."""
    keep = (
        "referral_id",
        "from_org",
        "to_org",
        "to_service_id",
        "service_category",
        "priority",
        "state",
        "previous_state",
        "transition_reason",
        "appointment_at",
        "flag",
    )
    return {k: data[k] for k in keep if data.get(k) is not None}


def concerns_org(org: str, data: Mapping[str, Any]) -> bool:
    """A referral event concerns the organisation that referred and the one referred to;
    a partner never receives anything else, whatever its subscription says."""
    return org in (data.get("from_org"), data.get("to_org"))


def subscription_matches(
    *,
    org: str,
    event_types: list[str],
    filters: Mapping[str, Any],
    event_type: str,
    data: Mapping[str, Any],
) -> bool:
    """Whether a subscription wants an event. Filters (all optional, all must hold):
    `service_categories`, `priorities`, `role` ("sender": the partner referred;
    "receiver": the partner was referred to)."""
    if not concerns_org(org, data) or event_type not in event_types:
        return False
    cats = filters.get("service_categories")
    if cats and data.get("service_category") not in cats:
        return False
    prios = filters.get("priorities")
    if prios and data.get("priority") not in prios:
        return False
    role = filters.get("role")
    if role == "sender" and data.get("from_org") != org:
        return False
    return not (role == "receiver" and data.get("to_org") != org)


# --- alerts addressed to organisations ----------------------------------------------------------

#: the audiences of alert messages (no referral to fetch: the sender works them out itself)
ALERT_AUDIENCES = frozenset({Audience.ALERT_ORGS.value, Audience.DUTY_ROTA.value})

#: the rules whose escalation (nobody acknowledged it in time) goes to the duty rota
DUTY_ROTA_RULES = frozenset({"safety.phq9_item9"})

#: the alert changes a partner may subscribe to: its lifecycle as an addressee sees it (who a
#: coordinator assigned it to, or a snooze, is the ICS's own business)
SUBSCRIBABLE_ALERT_TYPES = frozenset(
    f"{ALERT_PREFIX}{c}" for c in ("raised", "escalated", "acknowledged", "resolved")
)

#: what an alert's rule means, in words for its addressees (the rule code otherwise)
ALERT_RULE_WORDS: Mapping[str, str] = {
    "safety.phq9_item9": "a PHQ-9 answer says the person has had thoughts of being better off "
    "dead or of hurting themselves (item 9 above 0)",
    "stalled.no_next_step": "a referral ended without treatment and nothing has happened since",
    "stalled.unplanned_while_waiting": "the person needed A&E or the crisis team while waiting "
    "for a referral to your service",
}


def alert_routes(event_type: str, *, rule: str, recipient_orgs: Sequence[str]) -> tuple[Route, ...]:
    """The messages an alert event owes besides the coordinators' inbox: a new alert to its
    addressed organisations; an escalated safety alert to the duty rota."""
    change = event_type.removeprefix(ALERT_PREFIX)
    routes: list[Route] = []
    if change == "raised" and recipient_orgs:
        routes.append(Route(Audience.ALERT_ORGS, "alert-for-organisation"))
    if change == "escalated" and rule in DUTY_ROTA_RULES:
        routes.append(Route(Audience.DUTY_ROTA, "alert-escalated-duty-rota"))
    return tuple(routes)


def alert_message_context(data: Mapping[str, Any]) -> dict[str, Any]:
    """What of an alert event a message may use: codes and ids only."""
    keep = ("alert_id", "kind", "rule", "severity", "status", "recipient_orgs")
    out = {k: data[k] for k in keep if data.get(k) is not None}
    out["rule_words"] = ALERT_RULE_WORDS.get(str(data.get("rule")), str(data.get("rule")))
    return out


def alert_waits_for_quiet_hours(context: Mapping[str, Any]) -> bool:
    """Whether a staff member's quiet hours hold an alert's email. Never for an urgent alert
    (PHQ-9 item 9: contact the person today; hazard log HAZ-057): it goes at once, like its
    inbox item."""
    return context.get("severity") != "urgent"


def alert_subscription_matches(
    *, org: str, event_types: Sequence[str], event_type: str, recipient_orgs: Sequence[str]
) -> bool:
    """Whether a subscription gets an alert event: it asked for the type and the alert is
    addressed to its organisation (referral filters do not apply to alerts)."""
    return (
        event_type in SUBSCRIBABLE_ALERT_TYPES
        and event_type in event_types
        and org in recipient_orgs
    )


def alert_partner_payload(event: Mapping[str, Any]) -> dict[str, Any]:
    """The alert event as a partner receives it: as published, without the coordinator it is
    assigned to (a user of the ICS, not the partner's business)."""
    data = {k: v for k, v in (event.get("data") or {}).items() if k != "assignee"}
    return {**event, "data": data}
