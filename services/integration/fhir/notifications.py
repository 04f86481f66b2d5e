"""A topic-based Subscription notification, as the subscriptions backport IG shapes it
(http://hl7.org/fhir/uv/subscriptions-backport): a `history` Bundle whose first entry is the
subscription's status (R4: a Parameters resource of profile backport-subscription-status-r4;
R4B: a SubscriptionStatus resource), followed by the focus resources when the subscription's
payload is `full-resource`. Pure: no I/O."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from services.integration.fhir.validation import FhirInvalid, Issue

NOTIFICATION_TYPES = ("handshake", "heartbeat", "event-notification", "query-status", "query-event")
SUBSCRIPTION_STATUSES = ("requested", "active", "error", "off", "entered-in-error")


@dataclass(frozen=True)
class Notification:
    subscription: str
    topic: str | None
    status: str
    type: str
    events_since_start: str | None
    # (event number, focus reference) of each notification-event
    events: list[tuple[str | None, str | None]] = field(default_factory=list)


def _value(param: Mapping[str, Any]) -> Any:
    for k, v in param.items():
        if k.startswith("value"):
            return v
    return None


def _from_parameters(p: Mapping[str, Any]) -> Notification:
    values: dict[str, Any] = {}
    events: list[tuple[str | None, str | None]] = []
    for param in p.get("parameter") or []:
        name = param.get("name")
        if name == "notification-event":
            parts = {q.get("name"): _value(q) for q in param.get("part") or []}
            focus = parts.get("focus")
            events.append((parts.get("event-number"), focus.get("reference") if focus else None))
        elif name not in values:
            values[name] = _value(param)
    subscription = values.get("subscription")
    return Notification(
        subscription=(subscription or {}).get("reference", "")
        if isinstance(subscription, Mapping)
        else "",
        topic=values.get("topic"),
        status=values.get("status") or "",
        type=values.get("type") or "",
        events_since_start=values.get("events-since-subscription-start"),
        events=events,
    )


def _from_subscription_status(s: Mapping[str, Any]) -> Notification:
    return Notification(
        subscription=(s.get("subscription") or {}).get("reference", ""),
        topic=s.get("topic"),
        status=s.get("status") or "",
        type=s.get("type") or "",
        events_since_start=s.get("eventsSinceSubscriptionStart"),
        events=[
            (e.get("eventNumber"), (e.get("focus") or {}).get("reference"))
            for e in s.get("notificationEvent") or []
        ],
    )


def notification(bundle: Mapping[str, Any]) -> Notification:
    """The notification's status, or FhirInvalid saying what is not a notification's shape."""
    path = "Bundle.entry[0].resource"
    if bundle.get("type") != "history":
        raise FhirInvalid(
            "a Subscription notification is a Bundle of type 'history'",
            [Issue("Bundle.type", f"expected 'history', not {bundle.get('type')!r}")],
        )
    entries = bundle.get("entry") or []
    first = entries[0].get("resource") if entries else None
    if not isinstance(first, Mapping) or first.get("resourceType") not in (
        "Parameters",
        "SubscriptionStatus",
    ):
        raise FhirInvalid(
            "the first entry of a notification is its SubscriptionStatus (R4: Parameters)",
            [Issue(path, "expected a Parameters (backport-subscription-status-r4) resource")],
        )
    if first["resourceType"] == "Parameters":
        found = _from_parameters(first)
    else:
        found = _from_subscription_status(first)
    problems = []
    if not found.subscription:
        problems.append(Issue(f"{path}.parameter", "the 'subscription' reference is required"))
    if found.status not in SUBSCRIPTION_STATUSES:
        problems.append(
            Issue(f"{path}.parameter", f"status {found.status!r} is not a subscription status")
        )
    if found.type not in NOTIFICATION_TYPES:
        problems.append(
            Issue(f"{path}.parameter", f"type {found.type!r} is not a notification type")
        )
    if problems:
        raise FhirInvalid("not a valid SubscriptionStatus: " + problems[0].message, problems)
    return found
